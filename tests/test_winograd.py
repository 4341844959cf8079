"""The ``winograd`` realisation (``rot180.functional._winograd``, ``_winogradc.c``): F(2x2, 3x3).

Forced against the direct-loop oracles over a seeded family of shapes (batch 1..20, channels,
odd sizes, padding incl. asymmetric and negative, groups, float32 and float64, non-contiguous
inputs, bias; strided and dilated calls, which it does not take, still right), the compiled
transforms against the NumPy ones (the same bits), the accuracy of float32 against float64,
both sides of every threshold of ``prefer`` (each a Tuning field, moved to flip the choice;
the chunk size too), the helper switched off, threads, non-finite data
and the C functions' argument checks.
"""

from __future__ import annotations

import numpy as np
import pytest

import rot180.functional._winograd as WG
from rot180.functional import conv, conv_grad_input, conv_grad_weight, plan
from rot180.functional._forward import run
from rot180.functional._plan import make
from rot180.functional._realisation import Problem
from rot180.functional._tuning import get_tuning, tuning
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

needs_helper = pytest.mark.skipif(not WG.built(), reason="_winogradc is not built")
OFF = {"winograd_fused_max_channels": 0}    # _prefer's second row (the compiled products) off


def _cases(n: int, seed: int) -> list[tuple]:
    """(batch, C_in, C_out, groups, (H, W), padding, stride, dilation, dtype, bias, layout)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        g = int(rng.choice([1, 1, 1, 2, 3]))
        c, m = g * int(rng.integers(1, 7)), g * int(rng.integers(1, 7))
        size = tuple(int(v) for v in rng.integers(1, 14, 2))
        kind = i % 4
        if kind == 0:
            padding = int(rng.integers(0, 4))
        elif kind == 1:
            padding = [tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(2)]
        elif kind == 2:
            padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        else:
            padding = "same"
        stride = 2 if i % 11 == 5 else 1
        dilation = 2 if i % 13 == 7 else 1
        size = tuple(max(s, 3 * dilation) for s in size)      # at least the kernel's span
        dtype = np.float32 if i % 3 == 0 else np.float64
        out.append((int(rng.integers(1, 21)), c, m, g, size, padding, stride, dilation, dtype,
                    bool(i % 2), ("plain", "transposed", "sliced")[i % 3]))
    return out


def _arrays(rng, b, c, m, g, size, dtype, bias, layout):
    x = rng.standard_normal((b, c, *size)).astype(dtype)
    if layout == "transposed":                  # non-contiguous: a swapped copy's view
        x = np.ascontiguousarray(x.swapaxes(2, 3)).swapaxes(2, 3)
    elif layout == "sliced":                    # every other sample of a larger batch
        x = np.repeat(x, 2, axis=0)[::2]
    w = rng.standard_normal((m, c // g, 3, 3)).astype(dtype)
    return x, w, (rng.standard_normal(m).astype(dtype) if bias else None)


@pytest.mark.parametrize("helper", [True, False])
@pytest.mark.parametrize("case", _cases(48, 13), ids=str)
def test_forced_matches_the_direct_loops(case, helper) -> None:
    if helper and not WG.built():
        pytest.skip("_winogradc is not built")
    b, c, m, g, size, padding, stride, dilation, dtype, bias, layout = case
    rng = np.random.default_rng(1)
    x, w, bb = _arrays(rng, b, c, m, g, size, dtype, bias, layout)
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": g}
    if padding == "same" and stride != 1:
        kw["padding"] = 1
    want = conv_direct(x, w, bb, **kw)
    dz = rng.standard_normal(want.shape).astype(dtype)
    with tuning(force="winograd", helper=helper):
        lp = plan(x, w, **kw)
        got = (conv(x, w, bb, **kw), conv_grad_input(dz, w, x.shape, **kw),
               conv_grad_weight(x, dz, w.shape, **kw))
    refs = (want, conv_grad_input_direct(dz, w, x.shape, **kw),
            conv_grad_weight_direct(x, dz, w.shape, **kw))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for got_, ref in zip(got, refs, strict=True):
        assert got_.dtype == dtype
        scale = max(1.0, float(np.abs(ref).max(initial=0)))
        np.testing.assert_allclose(got_, ref, rtol=0, atol=tol * scale)
    # It computes every 3x3 stride-1 forward pass it is forced on (the trim of a wide padding
    # aside, which may shrink the kernel).
    if stride == 1 and dilation == 1 and lp.forward.step == "run":
        assert [leaf.realisation for leaf in lp.forward.leaves()] == ["winograd"], str(lp)


@needs_helper
def test_the_input_gradient_runs_through_it() -> None:
    """A stride-1 input gradient is one forward correlation of the padded delta with the
    rotated kernel: the same leaf, also by the rule's own choice. (A batch whose expanded input
    fits one chunk is folded into the rows first, which it does not take: batch 8 here.)"""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 128, 14, 14)).astype(np.float32)
    w = rng.standard_normal((128, 128, 3, 3)).astype(np.float32)
    dz = rng.standard_normal((8, 128, 14, 14)).astype(np.float32)
    with tuning(force=None, helper=True):      # the rule's own choice
        lp = plan(x, w, padding=1)
        got = conv_grad_input(dz, w, x.shape, padding=1)
    assert lp.grad_input.step == "padded", str(lp)
    assert [leaf.realisation for leaf in lp.grad_input.leaves()] == ["winograd"], str(lp)
    ref = conv_grad_input_direct(dz.astype(np.float64), w.astype(np.float64), x.shape, padding=1)
    assert np.abs(got - ref).max() <= 5e-6 * np.abs(ref).max()


@needs_helper
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_and_numpy_transforms_give_the_same_bits(dtype) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 9, 11)).astype(dtype)[:, :, ::-1]     # flipped rows
    for top, left, bottom, right in ((1, 1, 1, 1), (0, 2, 1, 0), (-1, 1, 2, -2), (2, 2, 2, 2)):
        OH, OW = 9 + top + bottom - 2, 11 + left + right - 2
        TH, TW = WG.tiles((OH, OW))
        for r0, r1 in ((0, 3 * TH), (1, 3 * TH - 1), (TH - 1, TH + 2)):
            v1 = np.full((16, 5, (r1 - r0) * TW), np.nan, dtype)
            v2 = v1.copy()
            WG._winogradc.input_tiles(x, v1, top=top, left=left, bottom=bottom, right=right,
                                      first_row=r0)
            WG.input_tiles(x, v2, top, left, bottom, right, r0)
            np.testing.assert_array_equal(v1, v2)
            m = rng.standard_normal((16, 4, (r1 - r0) * TW)).astype(dtype)
            bias = rng.standard_normal(8).astype(dtype)[::2]
            o1 = np.full((3, 4, OH, OW), np.nan, dtype)
            o2 = o1.copy()
            WG._winogradc.output_tiles(m, o1, bias, first_row=r0)
            WG.output_tiles(m, o2, bias, r0)
            np.testing.assert_array_equal(o1, o2)
    w = rng.standard_normal((6, 4, 3, 3)).astype(dtype).transpose(1, 0, 2, 3)[..., ::-1]
    u1, u2 = np.empty((16, 4, 6), dtype), np.empty((16, 4, 6), dtype)
    WG._winogradc.kernel_tiles(w, u1)
    WG.kernel_tiles(w, u2)
    np.testing.assert_array_equal(u1, u2)
    # rotated: the transform of the kernel rotated by 180 degrees, by permuting the cells
    WG._winogradc.kernel_tiles(w, u1, rotated=True)
    WG.kernel_tiles(w, u2, rotated=True)
    np.testing.assert_array_equal(u1, u2)
    WG.kernel_tiles(np.ascontiguousarray(w[..., ::-1, ::-1]), u2)
    np.testing.assert_allclose(u1, u2, rtol=1e-6 if dtype == np.float32 else 1e-15, atol=1e-6)


@needs_helper
def test_the_input_gradient_transforms_the_layers_own_kernel() -> None:
    """conv_grad_input passes rot180(w) with its channel axes swapped (a view): U comes from w
    itself with the cells permuted and is used transposed; the same sums as a copied kernel."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((1, 7, 5, 3, 3))
    view = w[..., ::-1, ::-1].swapaxes(1, 2)             # (G, M, C, 3, 3) as the engine has it
    x = rng.standard_normal((2, 1, 7, 6, 5))
    p = Problem("forward", x.shape, view.shape, (3, 3), (1, 1), (1, 1), ((1, 2), (2, 1)), "d")
    with tuning(force="winograd"):
        leaf = make(p, get_tuning(), 1)
        got = run(leaf, x, view, None, None)
    assert (leaf.step, leaf.realisation) == ("run", "winograd"), str(leaf)
    ref = conv_direct(x[:, 0], np.ascontiguousarray(view[0]), padding=[(1, 2), (2, 1)])
    np.testing.assert_allclose(got[:, 0], ref, rtol=0, atol=1e-12)


@needs_helper
@pytest.mark.parametrize("fused", [True, False])
def test_helper_off_gives_the_same_result(fused) -> None:
    """Helper off: the NumPy transforms and BLAS's products. Against the compiled products
    (fused) the sums of the products run in another order (equal to rounding); against the
    compiled transforms with BLAS's products, the same bits."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 8, 13, 10)).astype(np.float32)
    w = rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    with tuning(force="winograd", threads=1, winograd_fused_max_channels=192 if fused else 0):
        on = conv(x, w, b, padding=[(1, 0), (2, 1)])
        with tuning(helper=False):
            off = conv(x, w, b, padding=[(1, 0), (2, 1)])
    if fused:
        np.testing.assert_allclose(on, off, rtol=0, atol=1e-6 * np.abs(off).max())
    else:
        np.testing.assert_array_equal(on, off)


def _correlate64(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, pads) -> np.ndarray:
    """The padded 3x3 correlation in float64, through NumPy's own windows (an oracle for layers
    too wide for the direct loops' time)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), *pads))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    out = np.einsum("bchwij,mcij->bmhw", win, w.astype(np.float64), optimize=True)
    return out if b is None else out + b.astype(np.float64)[:, None, None]


@needs_helper
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize(("shape", "m", "pads", "dtype"), [
    ((2, 70, 9, 11), 13, ((1, 1), (1, 1)), np.float32),     # C past one block of 64; M % 8
    ((3, 130, 8, 13), 21, ((0, 2), (1, 0)), np.float64),    # three blocks; tiles past 48
    ((1, 384, 6, 7), 384, ((1, 1), (1, 1)), np.float32),    # a cell of U past 512 KiB
    ((1, 9, 30, 5), 40, ((2, 0), (0, 1)), np.float32),      # one chunk: channels split
])
def test_the_compiled_products_match_numpys_correlation(shape, m, pads, dtype, narrow,
                                                       threads) -> None:
    """The compiled products (``forward_tiles``) on the shapes that reach each of their loops:
    blocks of input channels carried in ``m``, both tile kinds (``narrow_tiles``), blocks of
    output channels cut short, the order that reads each block of ``U`` once, the split by
    output channels; the same bits at 1 and 3 threads."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((m, shape[1], 3, 3)) / np.sqrt(9 * shape[1])).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    want = _correlate64(x, w, b, pads)
    got = {}
    for t in sorted({1, threads}):
        with tuning(force="winograd", threads=t, narrow_tiles=narrow, parallel_min_macs=0,
                    winograd_fused_chunk_tiles=40):
            got[t] = conv(x, w, b, padding=[pads[0], pads[1]])
    np.testing.assert_array_equal(got[1], got[threads])
    tol = (4e-6 if dtype == np.float32 else 1e-13) * np.abs(want).max()
    np.testing.assert_allclose(got[1], want, rtol=0, atol=tol)


@needs_helper
def test_the_products_sit_each_side_of_winograd_fused_max_channels(monkeypatch) -> None:
    """Up to ``winograd_fused_max_channels`` the compiled products, above it BLAS's (each
    path's function counted as it runs): both within float32 rounding of float64."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 24, 10, 10)).astype(np.float32)
    w = (rng.standard_normal((24, 24, 3, 3)) / 15).astype(np.float32)
    want = _correlate64(x, w, None, ((1, 1), (1, 1)))
    ran = []
    for name in ("_fused", "_blas"):
        real = getattr(WG, name)
        monkeypatch.setattr(WG, name, lambda *a, _real=real, _name=name: (ran.append(_name),
                                                                            _real(*a)))
    for limit, path in ((24, "_fused"), (23, "_blas")):
        ran.clear()
        with tuning(force="winograd", winograd_fused_max_channels=limit):
            got = conv(x, w, padding=1)
        assert ran == [path]
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-6 * np.abs(want).max())


def test_float32_error_against_float64() -> None:
    """F(2x2, 3x3)'s extra rounding: a few ulps of the output's magnitude (measured largest
    9.3e-7 over such a family; im2col 7.9e-7, the direct helper 2.4e-6)."""
    rng = np.random.default_rng(5)
    worst = 0.0
    for b, c, m, s in ((2, 16, 16, 15), (4, 64, 32, 14), (2, 128, 128, 9), (1, 512, 64, 7),
                       (8, 32, 64, 16)):
        x = rng.standard_normal((b, c, s, s)).astype(np.float32)
        w = (rng.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        ref = conv_direct(x.astype(np.float64), w.astype(np.float64), padding=1)
        with tuning(force="winograd"):
            got = conv(x, w, padding=1)
        worst = max(worst, float(np.abs(got - ref).max() / np.abs(ref).max()))
    assert worst < 4e-6, worst


@pytest.mark.parametrize(("x", "m", "kw", "chosen"), [
    ((8, 112, 14, 14), 112, {"padding": 1}, True),      # min(C, M) >= 112 at >= 14 x 14
    ((8, 112, 12, 12), 112, {"padding": 1}, False),     # ... below 14 x 14
    ((8, 96, 14, 14), 112, {"padding": 1}, True),       # 48 <= min, max <= 192: compiled
    ((8, 64, 14, 14), 64, {"padding": 1}, True),        # products (the second row)
    ((8, 64, 14, 14), 256, {"padding": 1}, False),      # ... max > 192: BLAS's, min < 112
    ((8, 47, 14, 14), 64, {"padding": 1}, False),       # ... min < 48
    ((8, 512, 7, 7), 512, {"padding": 1}, True),        # >= 384 channels, >= 128 tiles
    ((1, 512, 7, 7), 512, {"padding": 1}, False),       # ... 16 tiles
    ((8, 48, 32, 32), 64, {"padding": 1}, True),        # 48 <-> 64 at 32 x 32
    ((8, 64, 32, 32), 48, {"padding": 1}, True),
    ((8, 32, 32, 32), 64, {"padding": 1}, False),       # 32 <-> 64: the helper (2 threads)
    ((8, 64, 32, 32), 32, {"padding": 1}, False),
    ((8, 32, 32, 32), 32, {"padding": 1}, False),       # 32 -> 32
    ((1, 128, 4, 4), 128, {"padding": 1}, False),       # too few tiles
    ((8, 128, 14, 14), 128, {"padding": 1, "stride": 2}, False),
    ((8, 128, 14, 14), 128, {"padding": 2, "dilation": 2}, False),
])
def test_prefer_each_side_of_its_thresholds(x, m, kw, chosen) -> None:
    w = (m, x[1], 3, 3)
    with tuning(force=None, helper=True):       # the rule's own choice, helper on
        leaves = plan(x, w, which="forward", **kw).leaves()
        assert (leaves[0].realisation == "winograd") is (chosen and WG.built()), leaves[0]
        with tuning(helper=False):              # the NumPy transforms: never preferred
            assert plan(x, w, which="forward", **kw).leaves()[0].realisation != "winograd"


def _chosen(x, m, **changes) -> bool:
    """Whether the rule (helper on) picks winograd for the 3x3 padding-1 forward pass of ``x``
    into ``m`` channels, under the Tuning fields ``changes``."""
    with tuning(force=None, helper=True, **changes):
        return plan(x, (m, x[1], 3, 3), which="forward", padding=1).leaves()[0].realisation \
            == "winograd"


@needs_helper
@pytest.mark.parametrize(("x", "m", "changes", "chosen"), [
    # min(C, M) >= winograd_min_channels (112) at >= winograd_min_size (14); the second row off
    ((8, 112, 14, 14), 112, OFF, True),
    ((8, 112, 14, 14), 112, {**OFF, "winograd_min_channels": 113}, False),
    ((8, 112, 14, 14), 112, {**OFF, "winograd_min_size": 15}, False),
    ((8, 111, 14, 14), 112, OFF, False),
    ((8, 111, 14, 14), 112, {**OFF, "winograd_min_channels": 111}, True),
    ((8, 112, 13, 13), 112, OFF, False),
    ((8, 112, 13, 13), 112, {**OFF, "winograd_min_size": 13}, True),
    # min(C, M) >= winograd_min_channels_any (384) with >= winograd_min_tiles_any (128) tiles
    ((8, 512, 7, 7), 384, {}, True),                    # 8 x 4 x 4 = 128 tiles
    ((8, 512, 7, 7), 384, {"winograd_min_channels_any": 385}, False),
    ((8, 512, 7, 7), 384, {"winograd_min_tiles_any": 129}, False),
    ((8, 383, 7, 7), 512, {}, False),
    ((8, 383, 7, 7), 512, {"winograd_min_channels_any": 383}, True),
    ((7, 512, 7, 7), 512, {}, False),                   # 112 tiles
    ((7, 512, 7, 7), 512, {"winograd_min_tiles_any": 112}, True),
    # 48 <= min(C, M) (winograd_fused_min_channels), max <= 192 (..._max_channels), at >= 14
    ((8, 48, 14, 14), 64, {}, True),
    ((8, 47, 14, 14), 64, {}, False),
    ((8, 47, 14, 14), 64, {"winograd_fused_min_channels": 47}, True),
    ((8, 64, 14, 14), 192, {}, True),
    ((8, 64, 14, 14), 193, {}, False),
    ((8, 64, 14, 14), 193, {"winograd_fused_max_channels": 193}, True),
    ((8, 64, 13, 13), 64, {}, False),
    ((8, 64, 13, 13), 64, {"winograd_min_size": 13}, True),
    # min >= winograd_wide_min (112: off by default), max >= winograd_wide_max (64),
    # >= winograd_wide_size (32); the second row off
    ((8, 48, 32, 32), 64, OFF, False),
    ((8, 48, 32, 32), 64, {**OFF, "winograd_wide_min": 48}, True),
    ((8, 48, 32, 32), 64, {**OFF, "winograd_wide_min": 49}, False),
    ((8, 48, 32, 32), 64, {**OFF, "winograd_wide_min": 48, "winograd_wide_max": 65}, False),
    ((8, 48, 32, 32), 64, {**OFF, "winograd_wide_min": 48, "winograd_wide_size": 33}, False),
    ((8, 47, 32, 32), 64, {**OFF, "winograd_wide_min": 48}, False),
    ((8, 47, 32, 32), 64, {**OFF, "winograd_wide_min": 47}, True),
    ((8, 48, 32, 32), 63, {**OFF, "winograd_wide_min": 48}, False),
    ((8, 48, 32, 32), 63, {**OFF, "winograd_wide_min": 48, "winograd_wide_max": 63}, True),
    ((8, 48, 31, 31), 64, {**OFF, "winograd_wide_min": 48}, False),
    ((8, 48, 31, 31), 64, {**OFF, "winograd_wide_min": 48, "winograd_wide_size": 31}, True),
    # at least winograd_min_tiles (64) tiles, whatever the rows say
    ((1, 112, 15, 15), 112, {}, True),                               # 8 x 8 = 64 tiles
    ((1, 112, 15, 15), 112, {"winograd_min_tiles": 65}, False),
    ((1, 112, 14, 14), 112, {}, False),                              # 7 x 7 = 49 tiles
    ((1, 112, 14, 14), 112, {"winograd_min_tiles": 49}, True),
    ((1, 112, 7, 7), 112, {"winograd_min_size": 0, "winograd_min_tiles": 16}, True),
    ((1, 112, 6, 6), 112, {"winograd_min_size": 0, "winograd_min_tiles": 16}, False),
])
def test_each_threshold_is_a_tuning_field_and_each_side_is_taken(x, m, changes, chosen) -> None:
    """Every number of ``_prefer`` is a Tuning field: a shape at it, one just past it, and the
    same shapes with the field moved so that the choice flips (the plan cache keys on the
    Tuning object, so a block's new value makes a new plan)."""
    assert _chosen(x, m, **changes) is chosen


def test_the_thresholds_do_not_change_the_result() -> None:
    """Thresholds moved so that the rule takes winograd on a small layer and leaves it on a
    layer it takes by default: both computed as the direct loops compute them."""
    rng = np.random.default_rng(10)
    cases = [((3, 5, 9, 8), 6, {"winograd_min_channels": 0, "winograd_min_size": 0,
                                 "winograd_min_tiles": 0}, True),
             ((1, 112, 16, 16), 112, {}, True),
             ((1, 112, 16, 16), 112, {"winograd_min_channels": 113,
                                      "winograd_fused_max_channels": 0}, False)]
    for x_shape, m, changes, chosen in cases:
        x = rng.standard_normal(x_shape)
        w = rng.standard_normal((m, x_shape[1], 3, 3))
        b = rng.standard_normal(m)
        dz = rng.standard_normal((x_shape[0], m, *x_shape[2:]))
        with tuning(force=None, helper=True, **changes):
            lp = plan(x, w, padding=1)
            got = conv(x, w, b, padding=1), conv_grad_input(dz, w, x.shape, padding=1)
        names = {leaf.realisation for leaf in lp.forward.leaves()}
        assert ("winograd" in names) is (chosen and WG.built()), str(lp)
        want = (conv_direct(x, w, b, padding=1),
                conv_grad_input_direct(dz, w, x.shape, padding=1))
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g, r, rtol=0, atol=1e-12 * np.abs(r).max())


@pytest.mark.parametrize("helper", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk_tiles", [1, 7, 10**6])
def test_chunk_tiles_change_the_chunks_not_the_result(chunk_tiles, threads, helper) -> None:
    """``winograd_chunk_tiles``: one tile row a chunk (1), a few rows (7 tiles of 5 a row),
    or the whole call as one chunk (then fewer chunks than threads: split by channels)."""
    if helper and not WG.built():
        pytest.skip("_winogradc is not built")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 6, 11, 9)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    ref = conv_direct(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                      padding=[(1, 0), (0, 1)])
    with tuning(force="winograd", helper=helper, threads=threads, parallel_min_macs=0,
                winograd_chunk_tiles=chunk_tiles):
        got = conv(x, w, b, padding=[(1, 0), (0, 1)])
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


@needs_helper
def test_threads_split_the_tile_rows_deterministically() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 16, 21, 17)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    ref = conv_direct(x.astype(np.float64), w.astype(np.float64), padding=1)
    for threads in (1, 2, 3):
        with tuning(force="winograd", threads=threads, parallel_min_macs=0, chunk_bytes=1):
            a, b = conv(x, w, padding=1), conv(x, w, padding=1)
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - ref).max() < 1e-5 * np.abs(ref).max()
    # Fewer chunks than threads (one sample, one chunk): the threads split the channels.
    x1, w1 = x[:1, :, :9, :7], rng.standard_normal((5, 16, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    ref = conv_direct(x1.astype(np.float64), w1.astype(np.float64), bias.astype(np.float64),
                      padding=[(0, 1), (2, 0)])
    for threads in (1, 2, 3):
        with tuning(force="winograd", threads=threads, parallel_min_macs=0):
            a = conv(x1, w1, bias, padding=[(0, 1), (2, 0)])
            b = conv(x1, w1, bias, padding=[(0, 1), (2, 0)])
        np.testing.assert_array_equal(a, b)
        assert np.abs(a - ref).max() < 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_inputs_give_the_positions_of_the_direct_loops(value) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 8, 9))
    x[1, 2, 3, 4] = value
    x[0, 0, 7, 8] = value
    w = rng.standard_normal((4, 3, 3, 3))
    want = conv_direct(x, w, padding=1)
    with tuning(force="winograd"):
        got = conv(x, w, padding=1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-12)


@needs_helper
def test_the_compiled_functions_check_their_arguments() -> None:
    c = WG._winogradc
    x = np.zeros((2, 3, 6, 6), np.float32)
    v = np.zeros((16, 3, 2 * 3 * 3), np.float32)
    c.input_tiles(x, v, top=1, left=1, bottom=1, right=1)
    with pytest.raises(ValueError, match="v has C = 4"):
        c.input_tiles(x, np.zeros((16, 4, 18), np.float32), top=1, left=1, bottom=1, right=1)
    with pytest.raises(ValueError, match="not a whole number of tile rows"):
        c.input_tiles(x, np.zeros((16, 3, 17), np.float32), top=1, left=1, bottom=1, right=1)
    with pytest.raises(ValueError, match="past the 6 tile rows"):
        c.input_tiles(x, v, top=1, left=1, bottom=1, right=1, first_row=1)
    with pytest.raises(ValueError, match="fewer than the kernel's 3"):
        c.input_tiles(x, v, top=-2, bottom=-2)
    with pytest.raises(ValueError, match="last axis must be contiguous"):
        c.input_tiles(x, np.zeros((16, 3, 36), np.float32)[..., ::2], top=1, left=1, bottom=1,
                      right=1)
    with pytest.raises(TypeError, match="must be float32"):
        c.input_tiles(x, v.astype(np.float64), top=1, left=1, bottom=1, right=1)
    with pytest.raises(TypeError, match="writable"):
        ro = v.copy()
        ro.flags.writeable = False
        c.input_tiles(x, ro, top=1, left=1, bottom=1, right=1)
    with pytest.raises(ValueError, match="16"):
        c.output_tiles(np.zeros((9, 3, 18), np.float32), np.zeros((2, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match="bias has M = 2"):
        c.output_tiles(np.zeros((16, 3, 18), np.float32), np.zeros((2, 3, 6, 6), np.float32),
                       np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="kernel's height"):
        c.kernel_tiles(np.zeros((3, 2, 2, 3), np.float32), np.zeros((16, 3, 2), np.float32))
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        c.input_tiles([1, 2], v)
    # forward_tiles: x (2, 3, 6, 6) padded by 1 into out (2, 5, 6, 6), 3 x 3 tiles a sample
    ut, out = np.zeros((16, 3, 8), np.float32), np.zeros((2, 5, 6, 6), np.float32)
    v, m = np.zeros((16, 3, 16), np.float32), np.zeros((16, 5, 16), np.float32)
    kw = {"v": v, "m": m, "top": 1, "left": 1, "bottom": 1, "right": 1}
    c.forward_tiles(x, ut, out, rows=6, chunk_rows=5, **kw)
    with pytest.raises(TypeError, match="required keywords"):
        c.forward_tiles(x, ut, out, v=v, m=m)
    with pytest.raises(ValueError, match="ut has 7 columns"):
        c.forward_tiles(x, ut[..., :7], out, rows=6, chunk_rows=1, **kw)
    with pytest.raises(ValueError, match="v has 16 tiles .* expected at least chunk_rows x TW = "
                                         "18 rounded up to 16, 32"):
        c.forward_tiles(x, ut, out, rows=6, chunk_rows=6, **kw)
    with pytest.raises(ValueError, match="past the 6 tile rows"):
        c.forward_tiles(x, ut, out, rows=6, chunk_rows=1, first_row=1, **kw)
    with pytest.raises(ValueError, match="out has OH = 6 .* expected 4"):
        c.forward_tiles(x, ut, out, rows=1, chunk_rows=1, **{**kw, "top": 0, "bottom": 0})
    with pytest.raises(ValueError, match="m has M = 5 .* expected 4"):
        c.forward_tiles(x, ut, out[:, :4], rows=1, chunk_rows=1, **kw)


@pytest.mark.parametrize("padding", [3, [(3, 0), (0, 3)], [(3, 1), (2, 3)]])
def test_padding_wider_than_the_kernel_crops_the_input_gradients_delta(padding) -> None:
    """Padding p > 2 gives the input gradient's padded delta negative pads (2 - p): cropped
    while the tiles are gathered, never read. (fold_max_row=0: no folding first.)"""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 9, 8))
    w = rng.standard_normal((5, 4, 3, 3))
    dz = rng.standard_normal(conv_direct(x, w, padding=padding).shape)
    with tuning(force="winograd", fold_max_row=0):
        lp = plan(x, w, padding=padding)
        got = conv_grad_input(dz, w, x.shape, padding=padding)
    assert "winograd" in [leaf.realisation for leaf in lp.grad_input.leaves()], str(lp)
    want = conv_grad_input_direct(dz, w, x.shape, padding=padding)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
