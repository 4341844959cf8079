"""The compiled helper's own argument checks (``rot180.functional._directc``).

Its functions take keyword arguments and read every size from the arrays' shapes; here: that
shapes which do not agree, wrong dtypes, layouts and ranges are refused with an error that
names the argument, and that sizes whose products would wrap around a 64-bit ``Py_ssize_t``
(huge strides, bands, steps, offsets) are refused before anything is allocated or touched.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import rot180.functional._direct as D

pytestmark = pytest.mark.skipif(not D.available(),
                                reason="the compiled helper is not built or switched off")

L = D.LANES


def _call():
    """A valid correlate call (5x5 input, 3x3 kernel, 3x3 output) and its arrays."""
    x = np.zeros((1, 1, 1, 5, 5, L), np.float32)
    w = np.zeros((1, 1, 1, 3, 3), np.float32)
    out = np.zeros((1, 1, 1, 3, 3, L), np.float32)
    return x, w, out


def test_a_valid_call_computes() -> None:
    x, w, out = _call()
    x[...] = 1
    w[...] = 2
    bias = np.full((1, 1), 0.5, np.float32)
    D._directc.correlate(x, w, out, bias, stride=(1, 1), dilation=(1, 1))
    np.testing.assert_array_equal(out, 18.5)
    D._directc.correlate(x, w, out, stride=(1, 1), dilation=(1, 1), live_rows=(0, 1),
                         live_cols=(0, 5))          # only row 0 non-zero: one kernel row
    np.testing.assert_array_equal(out[0, 0, 0, 0], 6)
    np.testing.assert_array_equal(out[0, 0, 0, 1:], 0)
    # An empty kernel: the bias alone, for any output size.
    wide = np.zeros((1, 1, 1, 7, 9, L), np.float32)
    D._directc.correlate(x, np.zeros((1, 1, 1, 0, 3), np.float32), wide, bias, stride=(1, 1),
                         dilation=(1, 1))
    np.testing.assert_array_equal(wide, 0.5)


@pytest.mark.parametrize(("change", "error", "match"), [
    ({"w": np.zeros((1, 1, 1, 5, 5), np.float32)}, ValueError,
     r"correlate: the windows reach row 6 and column 6, outside x's 5 x 5"),
    ({"w": np.zeros((1, 1, 2, 3, 3), np.float32)}, ValueError,
     r"correlate: w has C = 2 \(axis 2\), expected 1 as in x"),
    ({"w": np.zeros((2, 1, 1, 3, 3), np.float32)}, ValueError, r"w has G = 2 \(axis 0\)"),
    ({"out": np.zeros((1, 1, 2, 3, 3, L), np.float32)}, ValueError,
     r"out has M = 2 \(axis 2\), expected 1 as in w"),
    ({"out": np.zeros((2, 1, 1, 3, 3, L), np.float32)}, ValueError, r"out has NB = 2"),
    ({"x": np.zeros((1, 1, 1, 5, 5, 8), np.float32)}, ValueError,
     r"x has the lanes = 8 \(axis 5\), expected 16 as in LANES"),
    ({"x": np.zeros((1, 1, 5, 5, L), np.float32)}, ValueError,
     r"x must have 6 axes \(NB, G, C, H, W, 16\), got 5"),
    ({"w": np.zeros((1, 1, 1, 3, 3))}, TypeError,
     r"correlate: w must be float32, got format 'd' \(all arrays of a call have one dtype\)"),
    ({"x": np.zeros((1, 1, 1, 5, 5, L), np.int32)}, TypeError,
     r"x must be float32 or float64, got format 'i'"),
    ({"x": [1.0]}, TypeError, r"x must be a float32 or float64 array, got list"),
    ({"out": np.zeros((1, 1, 1, 3, 6, L), np.float32)[:, :, :, :, ::2]}, ValueError,
     r"out must be C-contiguous"),
    ({"bias": np.zeros((1, 2), np.float32)}, ValueError, r"bias has M = 2 \(axis 1\)"),
    ({"bias": np.zeros(1, np.float32)}, ValueError, r"bias must have 2 axes \(G, M\)"),
    ({"stride": (2, 1)}, ValueError, r"the windows reach row 6 and column 4"),
    ({"stride": (0, 1)}, ValueError, r"stride= must be ints >= 1, got \(0, 1\)"),
    ({"stride": (1,)}, TypeError, r"stride= must be a pair of ints, got \(1,\)"),
    ({"stride": (1.0, 1)}, TypeError, r"stride= must be a pair of ints"),
    ({"dilation": None}, TypeError, r"dilation= must be a pair of ints, got None"),
    ({"live_rows": (0, 6)}, ValueError, r"live_rows \(0, 6\) and live_cols \(0, 5\) must be"),
    ({"live_cols": (3, 2)}, ValueError, r"live_cols \(3, 2\)"),
    # A sub-pixel phase's placement: windows from origin, outputs into a larger out.
    ({"origin": (1, 0)}, ValueError, r"the windows reach row 5 and column 4, outside x's 5 x 5"),
    ({"origin": (-1, 0)}, ValueError, r"origin= must be ints >= 0, got \(-1, 0\)"),
    ({"outputs": (4, 3)}, ValueError, r"the windows reach row 5 and column 4"),
    ({"out_step": (2, 1)}, ValueError,
     r"the outputs reach row 4 and column 2, outside out's 3 x 3 \(check outputs"),
    ({"out_step": (0, 1)}, ValueError, r"out_step= must be ints >= 1, got \(0, 1\)"),
    ({"out_first": (0, 1)}, ValueError, r"the outputs reach row 2 and column 3"),
    ({"outputs": (1,)}, TypeError, r"outputs= must be a pair of ints"),
])
def test_correlate_refuses_arguments_that_do_not_agree(change, error, match) -> None:
    x, w, out = _call()
    args = {"x": x, "w": w, "out": out, "bias": None, "stride": (1, 1), "dilation": (1, 1),
            **change}
    with pytest.raises(error, match=match):
        D._directc.correlate(**args)


def test_a_phase_reads_from_its_origin_and_writes_its_own_rows_and_columns() -> None:
    """origin, outputs, out_step and out_first against the sums written out; the rest of out
    is left as it was."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 2, 9, 10, L)).astype(np.float32)
    w = rng.standard_normal((1, 3, 2, 2, 3)).astype(np.float32)
    out = np.full((1, 1, 3, 8, 9, L), 7.0, np.float32)
    D._directc.correlate(x, w, out, None, stride=(2, 1), dilation=(1, 2), origin=(1, 2),
                         outputs=(3, 3), out_step=(2, 3), out_first=(1, 2))
    want = np.full(out.shape, 7.0)
    for y in range(3):
        for q in range(3):
            win = x[0, 0, :, 1 + 2 * y:3 + 2 * y, 2 + q:7 + q:2]     # (C, 2, 3, lanes)
            want[0, 0, :, 1 + 2 * y, 2 + 3 * q] = np.einsum("mckt,cktl->ml", w[0], win)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_stride_and_dilation_are_required_keywords() -> None:
    x, w, out = _call()
    with pytest.raises(TypeError, match=r"stride= is required \(a pair of ints\)"):
        D._directc.correlate(x, w, out, dilation=(1, 1))
    with pytest.raises(TypeError):
        D._directc.correlate(x, w, out, None, (1, 1), (1, 1))     # keyword-only
    with pytest.raises(ValueError, match=r"out must be writable"):
        out.flags.writeable = False
        D._directc.correlate(x, w, out, stride=(1, 1), dilation=(1, 1))


def test_correlate_kernel_checks_its_arrays() -> None:
    x, w, dz = _call()
    D._directc.correlate_kernel(x, dz, w, stride=(1, 1), dilation=(1, 1))
    with pytest.raises(ValueError, match=r"correlate_kernel: dz has M = 2 \(axis 2\), "
                                         r"expected 1 as in dw"):
        D._directc.correlate_kernel(x, np.zeros((1, 1, 2, 3, 3, L), np.float32), w,
                                    stride=(1, 1), dilation=(1, 1))
    with pytest.raises(ValueError, match=r"dw must be writable"):
        w.flags.writeable = False
        D._directc.correlate_kernel(x, dz, w, stride=(1, 1), dilation=(1, 1))
    with pytest.raises(ValueError, match=r"correlate_kernel: channels_per_pass must be >= 0, "
                                         r"got -1"):
        D._directc.correlate_kernel(x, dz, np.zeros_like(w), stride=(1, 1), dilation=(1, 1),
                                    channels_per_pass=-1)


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_bits_do_not_depend_on_the_column_chunks(narrow, dtype) -> None:
    """A row's output columns run in chunks sized to the L2 cache (0, the default, chooses;
    24 and a whole row force either side): each output is one tile's sum in the same order
    whatever the chunks (the tiles at a chunk's end are narrower), so the bits are equal,
    and the sums are the correlation's."""
    rng = np.random.default_rng(4)
    C, M, OW = 5, 11, 101                       # chunks of 24, 48 leave remainders
    x = rng.standard_normal((1, 1, C, 3, 2 * (OW - 1) + 2 + 1, L)).astype(dtype)
    w = rng.standard_normal((1, M, C, 2, 2)).astype(dtype)
    got = {}
    for cq in (0, 1, 24, 48, OW, 10 * OW):
        out = np.full((1, 1, M, 2, OW, L), np.nan, dtype)
        D._directc.correlate(x, w, out, stride=(1, 2), dilation=(1, 2), narrow=narrow,
                             columns_per_chunk=cq)
        got[cq] = out
    for cq, out in got.items():
        assert np.array_equal(out, got[OW]), cq
    ref = np.zeros((M, 2, OW, L))
    for ty in range(2):
        for tx in range(2):
            xs = x[0, 0, :, ty:ty + 2, 2 * tx:2 * tx + 2 * (OW - 1) + 1:2].astype(np.float64)
            ref += np.einsum("oc,cyql->oyql", w[0, :, :, ty, tx].astype(np.float64), xs)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[0][0, 0], ref, rtol=tol, atol=tol * np.abs(ref).max())
    with pytest.raises(ValueError, match=r"correlate: columns_per_chunk must be >= 0, got -1"):
        D._directc.correlate(x, w, got[0], stride=(1, 2), dilation=(1, 2),
                             columns_per_chunk=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_reads_the_kernel_through_its_strides(dtype) -> None:
    """w may be any strided view (an input gradient's kernel is rot180(w) with its channel
    axes swapped: negative and crossed strides, a sub-pixel phase's taps a stepped slice): the
    helper packs it as it reads it, with the bits of its contiguous copy; a stride that is not
    whole elements is refused."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 2, 9, 7, 8, L)).astype(dtype)
    base = rng.standard_normal((2, 9, 11, 5, 4)).astype(dtype)          # (G, C, M, KH, KW)
    views = [base[:, :, :, ::-1, ::-1].swapaxes(1, 2),                  # rot180, swapped
             base[:, :, :, 1::2, ::-3].swapaxes(1, 2),                  # a phase's taps
             np.broadcast_to(base[:1, :, :1, :1, :1].swapaxes(1, 2), (2, 1, 9, 1, 1))]
    for v in views:
        assert not v.flags.c_contiguous
        M, KH, KW = v.shape[1], v.shape[3], v.shape[4]
        outs = []
        for w in (v, np.ascontiguousarray(v)):
            out = np.full((1, 2, M, 7 - KH + 1, 8 - KW + 1, L), np.nan, dtype)
            D._directc.correlate(x, w, out, stride=(1, 1), dilation=(1, 1))
            outs.append(out)
        assert np.array_equal(outs[0], outs[1])
        assert not np.isnan(outs[0]).any()
    raw = np.zeros(1024, np.uint8)
    odd = np.lib.stride_tricks.as_strided(raw[:4].view(np.float32), (1, 1, 9, 1, 2),
                                          (0, 0, 8, 0, 6), writeable=False)
    with pytest.raises(ValueError, match=r"correlate: w's strides must be whole elements, "
                                         r"got 6 bytes on axis 4"):
        D._directc.correlate(x[:, :1].astype(np.float32), odd,
                             np.zeros((1, 1, 1, 7, 7, L), np.float32), stride=(1, 1),
                             dilation=(1, 1))


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_bits_do_not_depend_on_the_channel_passes(narrow, dtype) -> None:
    """The forward's input channels run in passes sized to the L2 cache (0, the default,
    chooses; 1 and C force either side): a later pass starts from the sums the earlier ones
    stored, so each output is the same sum in the same order and the bits are equal, with the
    bias, padding rows and columns whose taps are skipped, and outputs placed as a sub-pixel
    phase's (the rest of out untouched)."""
    rng = np.random.default_rng(5)
    C, M = 37, 11                               # passes of 1, 16 and 32 leave remainders
    x = rng.standard_normal((2, 1, C, 9, 12, L)).astype(dtype)
    x[:, :, :, :1] = x[:, :, :, -2:] = x[:, :, :, :, :2] = 0     # padding: live rows 1:7, cols 2:12
    w = rng.standard_normal((1, M, C, 3, 2)).astype(dtype)
    bias = rng.standard_normal((1, M)).astype(dtype)
    got = {}
    for cf in (0, 1, 16, 32, C, 10 * C):
        out = np.full((2, 1, M, 9, 11, L), np.nan, dtype)
        D._directc.correlate(x, w, out, bias, stride=(2, 1), dilation=(1, 3), narrow=narrow,
                             live_rows=(1, 7), live_cols=(2, 12), outputs=(3, 9),
                             out_step=(3, 1), out_first=(1, 2), channels_per_pass=cf)
        got[cf] = out
    for cf, out in got.items():
        assert np.array_equal(out, got[C], equal_nan=True), cf
    placed = got[0][:, :, :, 1:9:3, 2:11]
    ref = np.broadcast_to(bias[0][None, :, None, None, None], (2, M, 3, 9, L)).astype(np.float64)
    for ty in range(3):
        for tx in range(2):
            xs = x[:, 0, :, ty:ty + 5:2, 3 * tx:3 * tx + 9].astype(np.float64)
            ref = ref + np.einsum("oc,ncyql->noyql", w[0, :, :, ty, tx].astype(np.float64), xs)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(placed[:, 0], ref, rtol=tol, atol=tol * np.abs(ref).max())
    rest = got[0].copy()
    rest[:, :, :, 1:9:3, 2:11] = np.nan
    assert np.isnan(rest).all()
    empty = np.full((1, 1, M, 2, 3, L), np.nan, dtype)         # no input channels: the bias
    D._directc.correlate(np.zeros((1, 1, 0, 4, 4, L), dtype), np.zeros((1, M, 0, 3, 2), dtype),
                         empty, bias, stride=(1, 1), dilation=(1, 1), channels_per_pass=4)
    np.testing.assert_array_equal(empty, np.broadcast_to(bias[0][None, None, :, None, None, None],
                                                         empty.shape))
    with pytest.raises(ValueError, match=r"correlate: channels_per_pass must be >= 0, got -1"):
        D._directc.correlate(x, w, got[0], stride=(2, 1), dilation=(1, 3), outputs=(3, 9),
                             channels_per_pass=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_gradient_of_no_positions_is_zero(dtype) -> None:
    """The first chunk of positions writes the partial sums (no zeroing first): with no
    positions at all (an empty delta) there is no chunk, and the gradient is zero, not what the
    buffers held."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 1, 20, 4, 5, L)).astype(dtype)
    for oh, ow in ((0, 3), (2, 0)):
        dw = np.full((1, 9, 20, 3, 2), np.nan, dtype)
        D._directc.correlate_kernel(x, np.zeros((1, 1, 9, oh, ow, L), dtype), dw,
                                    stride=(1, 1), dilation=(1, 1))
        assert not np.signbit(dw).any() and not dw.any()


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("kernel", [(7, 1), (5, 2), (1, 7), (2, 5), (3, 3)])
def test_kernel_gradient_tiles_rows_or_columns_of_taps(narrow, kernel) -> None:
    """The kernel gradient's tiles take neighbouring taps along a kernel row, or down a kernel
    column where the rows are narrower than a tile and the columns longer (7 x 1 and 5 x 2,
    with either tile width; 1 x 7, 2 x 5 and 3 x 3 run along rows): every weight is its own
    sum, with strides and dilations."""
    rng = np.random.default_rng(8)
    (KH, KW), (sh, sw), (dh, dw) = kernel, (2, 1), (1, 2)
    C, M, OH, OW = 3, 11, 4, 5
    x = rng.standard_normal((1, 1, C, (OH - 1) * sh + (KH - 1) * dh + 1,
                             (OW - 1) * sw + (KW - 1) * dw + 1, L))
    dz = rng.standard_normal((1, 1, M, OH, OW, L))
    dw_ = np.full((1, M, C, KH, KW), np.nan)
    D._directc.correlate_kernel(x, dz, dw_, stride=(sh, sw), dilation=(dh, dw), narrow=narrow)
    ref = np.empty((M, C, KH, KW))
    for ty in range(KH):
        for tx in range(KW):
            xs = x[0, 0, :, ty * dh:ty * dh + (OH - 1) * sh + 1:sh,
                   tx * dw:tx * dw + (OW - 1) * sw + 1:sw]
            ref[:, :, ty, tx] = np.einsum("oyql,cyql->oc", dz[0, 0], xs)
    np.testing.assert_allclose(dw_[0], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_gradient_bits_do_not_depend_on_the_channel_passes(narrow, dtype) -> None:
    """The kernel gradient's input channels run in passes sized to the L2 cache (0, the
    default, chooses; 1 and C force either side): each weight's sum is the same sum in the
    same order whatever the passes, so the bits are equal."""
    rng = np.random.default_rng(3)
    C, M = 70, 13                               # passes of 1, 32 and 64 leave remainders
    x = rng.standard_normal((2, 1, C, 9, 9, L)).astype(dtype)
    dz = rng.standard_normal((2, 1, M, 7, 3, L)).astype(dtype)
    got = {}
    for cb in (0, 1, 7, 32, 64, C, 10 * C):
        dw = np.full((1, M, C, 3, 2), np.nan, dtype)
        D._directc.correlate_kernel(x, dz, dw, stride=(1, 3), dilation=(1, 2), narrow=narrow,
                                    channels_per_pass=cb)
        got[cb] = dw
    for cb, dw in got.items():
        assert np.array_equal(dw, got[C]), cb
    # and the sums themselves: dw[o, c, ty, tx] = sum dz[n, o, y, q, l] x[n, c, y + ty, 3q + 2tx, l]
    ref = np.zeros((M, C, 3, 2))
    for ty in range(3):
        for tx in range(2):
            xs = x[:, 0, :, ty:ty + 7, 2 * tx:2 * tx + 7:3].astype(np.float64)
            ref[:, :, ty, tx] = np.einsum("noyql,ncyql->oc", dz[:, 0].astype(np.float64), xs)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got[0][0], ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_packing_checks_its_arrays_and_ranges() -> None:
    src = np.zeros((2, 1, 5, 5), np.float32)
    dst = np.zeros((1, 1, 5, 5, L), np.float32)
    D._directc.pack_padded(src, dst, bands=8, step=0)
    with pytest.raises(ValueError, match=r"pack_padded: blocks 0:3 of dst are past the 2 "
                                         r"blocks of 16 that 2 samples x 9 bands fill"):
        D._directc.pack_padded(src, np.zeros((3, 1, 5, 5, L), np.float32), bands=9, step=1)
    with pytest.raises(ValueError, match=r"blocks 1:2 of dst are past the 1 blocks"):
        D._directc.pack_padded(src, dst, first_block=1)
    with pytest.raises(ValueError, match=r"dst has Wp = 5 columns, fewer than left \+ W = "
                                         r"1 \+ 5"):
        D._directc.pack_padded(src, dst, left=1)
    with pytest.raises(ValueError, match=r"dst has CH = 1 \(axis 1\), expected 2 as in src"):
        D._directc.pack_padded(np.zeros((2, 2, 5, 5), np.float32), dst)
    with pytest.raises(ValueError, match=r"bands must be >= 1, got 0"):
        D._directc.pack_padded(src, dst, bands=0)
    with pytest.raises(ValueError, match=r"top must be >= 0, got -1"):
        D._directc.pack_padded(src, dst, top=-1)
    res = np.zeros((1, 1, 1, L), np.float32)
    with pytest.raises(ValueError, match=r"unpack_bands: 2 bands of R = 1 rows cover 2 of "
                                         r"dst's OH = 3"):
        D._directc.unpack_bands(res, np.zeros((1, 1, 3), np.float32), bands=2)
    with pytest.raises(TypeError, match=r"dst must be float32, got format 'd'"):
        D._directc.unpack_bands(res, np.zeros((1, 1, 1)))


# --- sizes whose products overflow --------------------------------------------------------------

# Each call gives tiny arrays and one claimed size (a step, a band count, an offset) whose
# arithmetic wraps around a 64-bit Py_ssize_t (to a negative number, or to a small one that
# would pass the range checks), so unchecked arithmetic would run the loops outside the arrays.
# Run in a subprocess: a crash fails the test instead of ending pytest.
_SETUP = ("import numpy as np\nimport rot180.functional._direct as D\nC = D._directc\n"
          "def z(*s): return np.zeros(s, np.float32)\n")
WRAPPING = {
    # (OH - 1) * sh = 2 * 2**62 wraps negative: "inside" a 5-row input
    "correlate stride": "C.correlate(z(1, 1, 1, 5, 5, 16), z(1, 1, 1, 1, 1), "
                        f"z(1, 1, 1, 3, 1, 16), stride=({2**62}, 1), dilation=(1, 1))",
    # an empty kernel reads nothing, but the loops still form (OW - 1) * sw
    "correlate empty kernel": "C.correlate(z(1, 1, 1, 5, 5, 16), z(1, 1, 1, 1, 0), "
                              f"z(1, 1, 1, 1, 3, 16), stride=(1, {2**62}), dilation=(1, 1))",
    "correlate dilation": "C.correlate(z(1, 1, 1, 5, 5, 16), z(1, 1, 1, 1, 3), "
                          f"z(1, 1, 1, 1, 1, 16), stride=(1, 1), dilation=(1, {2**62}))",
    "correlate_kernel stride": "C.correlate_kernel(z(1, 1, 1, 5, 5, 16), z(1, 1, 1, 3, 1, 16), "
                               f"z(1, 1, 1, 1, 1), stride=({2**62}, 1), dilation=(1, 1))",
    "correlate stride too big": "C.correlate(z(1, 1, 1, 5, 5, 16), z(1, 1, 1, 1, 1), "
                                f"z(1, 1, 1, 3, 1, 16), stride=({2**64}, 1), dilation=(1, 1))",
    # 8 C KH KW partial-sum vectors of 128 bytes: 2**56 * 8 * 128 bytes overflow (empty arrays)
    "correlate_kernel partial sums": f"C.correlate_kernel(z(0, 1, {2**56}, 1, 1, 16), "
                                     f"z(0, 1, 0, 1, 1, 16), z(1, 0, {2**56}, 1, 1), "
                                     "stride=(1, 1), dilation=(1, 1))",
    # samples x bands: 4 * 2**62 wraps to 0 blocks, first_block + blocks wraps negative
    "pack_padded bands": f"C.pack_padded(z(4, 1, 1, 1), z(1, 1, 1, 1, 16), bands={2**62})",
    "pack_padded first_block": f"C.pack_padded(z(16, 1, 1, 1), z(1, 1, 1, 1, 16), "
                               f"first_block={2**63 - 1})",
    # the last band's rows (S - 1) * step + Hp overflow
    "pack_padded step": f"C.pack_padded(z(1, 1, 1, 1), z(1, 1, 2, 1, 16), bands=2, "
                        f"step={2**63 - 1})",
    # left + W overflows
    "pack_padded left": f"C.pack_padded(z(1, 1, 1, 2), z(1, 1, 1, 1, 16), left={2**63 - 1})",
    # bands x R: 2**62 * 4 wraps to 0 >= OH... and the blocks of 1 sample x 2**62 bands
    "unpack_bands bands": f"C.unpack_bands(z(1, 1, 4, 16), z(1, 1, 1), bands={2**62})",
    "unpack_bands first_block": f"C.unpack_bands(z(1, 1, 1, 16), z(1, 1, 1), "
                                f"first_block={2**63 - 1})",
}


def test_huge_claimed_sizes_are_refused_in_process_without_allocating() -> None:
    """The checks run before any buffer is touched or allocated (tracemalloc: the peak of the
    calls stays under a few KiB), and quickly: one call each."""
    namespace: dict = {}
    exec(_SETUP, namespace)                     # noqa: S102  (the fixed text above)
    tracemalloc.start()
    try:
        for name, call in WRAPPING.items():    # (its arrays are tiny or empty)
            before = tracemalloc.get_traced_memory()[1]
            with pytest.raises((OverflowError, ValueError)):
                eval(call, namespace)           # noqa: S307  (the fixed text above)
            assert tracemalloc.get_traced_memory()[1] - before < 2**16, name
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("call", list(WRAPPING.values()), ids=list(WRAPPING))
def test_the_helper_refuses_sizes_whose_products_overflow(call) -> None:
    code = (_SETUP + f"try:\n    {call}\nexcept (OverflowError, ValueError) as e:\n"
            "    print(type(e).__name__, e)\nelse:\n    print('accepted')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, f"crashed ({run.returncode}): {run.stderr[-500:]}"
    assert run.stdout.startswith(("OverflowError", "ValueError")), run.stdout
