"""The compiled helper (``rot180.functional._direct`` / ``_directc``): same sums, fixed order.

``test_engine.py`` runs random configurations through it against the direct-loop oracles; here:
the lane packing, the shapes it takes by default (LeNet's, batch 64), determinism with threads,
its argument checks, and that the pure-NumPy engine is still there when it is switched off.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import rot180.functional._direct as D
from rot180.functional import conv, conv_grad_input, conv_grad_weight, plan
from rot180.functional._tuning import tuning
from rot180.functional.reference import (
    conv_direct,
    conv_grad_input_direct,
    conv_grad_weight_direct,
)

pytestmark = pytest.mark.skipif(
    not D.available(), reason="the compiled helper rot180.functional._directc is not built or off")

# (input shape, C_out, kernel, stride, padding, dilation, groups): LeNet's layers at batch 64 and
# odd batches, 1-D, strided, dilated and grouped ones.
CASES = [
    ((64, 1, 28, 28), 6, 5, 1, 2, 1, 1),
    ((64, 6, 14, 14), 16, 5, 1, 0, 1, 1),
    ((37, 4, 11, 9), 7, 3, 2, 1, 1, 1),
    ((20, 6, 13, 12), 6, (3, 2), (2, 3), (1, 0), (2, 1), 3),
    ((16, 3, 40), 5, 7, 3, 3, 2, 1),
    ((13, 2, 9, 9), 3, 4, 1, "same", 1, 1),
]


def _arrays(shape, c_out, k, stride, padding, dilation, groups, dtype, seed=0):
    rng = np.random.default_rng(seed)
    nd = len(shape) - 2
    k = (k,) * nd if isinstance(k, int) else k
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((c_out, shape[1] // groups, *k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    dz = rng.standard_normal(conv(x, w, b, **kw).shape).astype(dtype)
    return x, w, b, dz, kw


@pytest.fixture
def always_direct():
    with tuning(direct_min_fill=0):
        yield


def _runs(x, w, kw) -> dict[str, list[tuple[str, int]]]:
    """What the engine's plan runs for each pass of ``conv(x, w, **kw)`` by its own rule (no
    realisation forced, as ``--rot180-force`` does), under the other settings in force:
    (realisation, bands) of every correlation it is made of."""
    with tuning(force=None):
        layer = plan(x, w, **kw)
    return {entry: [(leaf.realisation, leaf.bands) for leaf in getattr(layer, entry).leaves()]
            for entry in ("forward", "grad_input", "grad_weight")}


def _assert_equals_the_direct_loops(x, w, b, dz, kw) -> None:
    """Forward, input and kernel gradient (float64) against the direct-loop oracles."""
    np.testing.assert_allclose(conv(x, w, b, **kw), conv_direct(x, w, b, **kw), rtol=0,
                               atol=1e-10)
    np.testing.assert_allclose(conv_grad_input(dz, w, x.shape, **kw),
                               conv_grad_input_direct(dz, w, x.shape, **kw), rtol=0, atol=1e-10)
    np.testing.assert_allclose(conv_grad_weight(x, dz, w.shape, **kw),
                               conv_grad_weight_direct(x, dz, w.shape, **kw), rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) for c in CASES])
def test_float64_equals_the_direct_loops(case, always_direct) -> None:
    _assert_equals_the_direct_loops(*_arrays(*case, np.float64))


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) for c in CASES])
def test_float32_agrees_with_the_numpy_engine(case, always_direct) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float32)
    ours = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
            conv_grad_weight(x, dz, w.shape, **kw))
    with tuning(helper=False):
        assert not D.available() and not D.usable(64, 2, np.float32)
        numpy_ = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
                  conv_grad_weight(x, dz, w.shape, **kw))
    for a, r in zip(ours, numpy_, strict=True):
        assert a.dtype == np.float32 and a.shape == r.shape
        np.testing.assert_allclose(a, r, rtol=0, atol=2e-5 * max(1.0, np.abs(r).max()))


def test_lenet_layers_take_the_helper_by_default() -> None:
    for case in CASES[:2]:
        x, w, b, dz, kw = _arrays(*case, np.float32)
        assert _runs(x, w, kw) == {entry: [("direct", 1)] for entry in
                                   ("forward", "grad_input", "grad_weight")}
    # 1-D, half a block of 16 lanes: the NumPy paths; the helper switched off: the same.
    runs = _runs(np.ones((8, 3, 20), np.float32), np.ones((4, 3, 3), np.float32), {})
    assert all(r != "direct" for leaves in runs.values() for r, _ in leaves), runs
    with tuning(helper=False):
        runs = _runs(x, w, kw)
    assert all(r != "direct" for leaves in runs.values() for r, _ in leaves), runs


@pytest.fixture
def the_rule():
    """The helper's own choice of bands (under tuning(force="direct") any fill will do)."""
    with tuning(force=None):
        yield


@pytest.mark.usefixtures("the_rule")
def test_the_choice_of_bands() -> None:
    assert D.bands(64, 32, 2) == 1                  # 4 whole blocks: nothing to gain
    assert D.bands(8, 112, 2) == 4                  # 32 bands of 28 rows: one block a thread
    assert D.bands(8, 112, 1) == 2                  # one block of 16 bands of 56 rows
    assert D.bands(1, 28, 1) == 14                  # 14 bands of 2 rows (16 would also be 2)
    assert D.bands(48, 8, 2) == 2                   # 3 blocks on 2 threads -> 6 of 4 rows
    assert D.bands(8, 1, 2) == 0                    # one row (1-D): half a block, no helper
    assert D.bands(3, 3, 1) == 0                    # at most 9 of 16 lanes


@pytest.mark.usefixtures("the_rule")
def test_no_bands_when_switched_off() -> None:
    with tuning(direct_bands=False):
        assert D.bands(8, 112, 2) == 0
        assert D.bands(64, 32, 2) == 1
    assert D.bands(8, 112, 2) == 4              # the cached choice follows the settings back


@pytest.mark.usefixtures("the_rule")
def test_the_fill_threshold_is_a_setting() -> None:
    assert D.bands(8, 1, 2) == 0 and not D.usable(8, 1, np.float32)
    with tuning(direct_min_fill=0.5):
        assert D.bands(8, 1, 2) == 1 and D.usable(8, 1, np.float32)


# (input shape, C_out, kernel, stride, padding, dilation, groups): batches that fill their lanes
# only in bands of output rows, with uneven last bands, strides, dilation, padding and groups.
SMALL = [
    ((8, 3, 30, 31), 5, 7, 2, 3, 1, 1),
    ((1, 1, 28, 28), 6, 5, 1, 2, 1, 1),
    ((2, 4, 13, 11), 3, 3, 1, 1, 2, 1),
    ((3, 2, 17, 9), 4, 3, 2, 0, 1, 1),
    ((5, 6, 20, 20), 6, (3, 2), (3, 1), (1, 2), (1, 2), 2),
]


@pytest.mark.parametrize("threads_min", [0, 10**18], ids=["pooled", "serial"])
@pytest.mark.parametrize("case", SMALL, ids=[str(c[0]) for c in SMALL])
def test_small_batches_in_bands_equal_the_direct_loops(case, threads_min) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float64)
    assert D.bands(x.shape[0], dz.shape[2], 1) > 1
    with tuning(parallel_min_macs=threads_min):
        runs = _runs(x, w, kw)
        _assert_equals_the_direct_loops(x, w, b, dz, kw)
    # Forward and kernel gradient in bands of rows (the input gradient's phases vary).
    for entry in ("forward", "grad_weight"):
        assert all(r == "direct" and s > 1 for r, s in runs[entry]), runs


def test_bands_give_the_bits_of_whole_samples() -> None:
    """Each output's sum runs in the same order whichever band computes it."""
    x, w, b, dz, kw = _arrays((8, 3, 30, 31), 5, 7, 2, 3, 1, 1, np.float32)
    with tuning(direct_min_fill=0):
        assert D.bands(8, 12, 1) > 1
        banded = conv(x, w, b, **kw)
        with tuning(direct_bands=False):
            assert D.bands(8, 12, 1) == 1
            np.testing.assert_array_equal(conv(x, w, b, **kw), banded)


@pytest.fixture(params=["wide", "narrow"])
def tiles(request):
    """The register tiles of this CPU, and those of CPUs without AVX-512 (4 x 4, 4 x 5)."""
    with tuning(narrow_tiles=request.param == "narrow"):
        yield request.param


@pytest.mark.parametrize("c_out", [1, 2, 3, 5, 8, 13, 20])
@pytest.mark.parametrize("kernel", [(2, 1), (3, 3), (1, 4), (5, 5), (2, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_register_tile_sums_what_the_loops_sum(c_out, kernel, dtype, tiles) -> None:
    """Output channels in blocks of 8 / 4 and 1-3 left over, taps in tiles of 3 / 5 and the
    rest, forward columns in tiles and the rest, against the direct loops (float64 oracle)."""
    x, w, b, dz, kw = _arrays((16, 3, 9, 13), c_out, kernel, 1, 1, 1, 1, np.float64, seed=c_out)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    f = [a.astype(dtype) for a in (x, w, b, dz)]
    np.testing.assert_allclose(conv(f[0], f[1], f[2], **kw), conv_direct(x, w, b, **kw),
                               rtol=0, atol=tol)
    np.testing.assert_allclose(conv_grad_weight(f[0], f[3], w.shape, **kw),
                               conv_grad_weight_direct(x, dz, w.shape, **kw), rtol=0,
                               atol=10 * tol)


def test_large_layers_take_the_helper_for_every_pass() -> None:
    x, w, b, dz, kw = _arrays((32, 32, 8, 8), 64, 3, 1, 1, 1, 1, np.float32)
    assert _runs(x, w, kw) == {entry: [("direct", 1)] for entry in
                               ("forward", "grad_input", "grad_weight")}


@pytest.mark.parametrize("threads_min", [0, 10**18], ids=["pooled", "serial"])
def test_repeated_calls_give_the_same_bits(threads_min) -> None:
    x, w, b, dz, kw = _arrays((64, 6, 14, 14), 16, 5, 1, 0, 1, 1, np.float32)
    with tuning(parallel_min_macs=threads_min):
        first = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
                 conv_grad_weight(x, dz, w.shape, **kw))
        for _ in range(5):
            again = (conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw),
                     conv_grad_weight(x, dz, w.shape, **kw))
            for a, r in zip(again, first, strict=True):
                np.testing.assert_array_equal(a, r)


def test_forward_bits_do_not_depend_on_the_thread_split() -> None:
    """Each block of 16 samples is computed the same way whichever thread runs it."""
    x, w, b, _, kw = _arrays((64, 6, 14, 14), 16, 5, 1, 0, 1, 1, np.float32)
    with tuning(parallel_min_macs=10**18):
        serial = conv(x, w, b, **kw)
    with tuning(parallel_min_macs=0):
        np.testing.assert_array_equal(conv(x, w, b, **kw), serial)


@pytest.mark.parametrize("batch", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_and_unpack_are_inverse(batch, dtype) -> None:
    a = np.random.default_rng(batch).standard_normal((batch, 3, 5)).astype(dtype)
    blocks = -(-batch // D.LANES)
    p = np.empty((blocks, 3, 5, D.LANES), dtype)
    # Plain packing: whole samples of 15 values, one band each, no padding.
    D._directc.pack_padded(a.reshape(batch, 1, 1, 15), p.reshape(blocks, 1, 1, 15, D.LANES))
    for b in range(blocks * D.LANES):
        expected = a[b] if b < batch else 0
        np.testing.assert_array_equal(p[b // D.LANES, ..., b % D.LANES], expected)
    back = np.empty_like(a)
    D._directc.unpack_bands(p.reshape(blocks, 1, 15, D.LANES), back.reshape(batch, 1, 15))
    np.testing.assert_array_equal(back, a)


@pytest.mark.parametrize(("batch", "s", "step", "hp", "pt", "pl", "pr"), [
    (1, 1, 0, 12, 2, 1, 3), (3, 7, 2, 5, 1, 0, 0), (8, 4, 9, 13, 3, 3, 3), (5, 5, 3, 3, 0, 2, 0),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bands_are_packed_and_unpacked(batch, s, step, hp, pt, pl, pr, dtype) -> None:
    """Lane l of block n holds band v = 16n + l: sample v // s, padded rows (v % s) * step +
    [0, hp), zeros outside the data; packing and unpacking any range of blocks."""
    rng = np.random.default_rng(s)
    a = rng.standard_normal((batch, 2, 10, 17)).astype(dtype)
    padded = np.zeros((batch, 2, pt + 10 + s * step + hp, pl + 17 + pr), dtype)
    padded[:, :, pt:pt + 10, pl:pl + 17] = a
    nb = -(-batch * s // D.LANES)
    for n0, n1 in [(0, nb), (nb - 1, nb)]:
        p = np.full((n1 - n0, 2, hp, pl + 17 + pr, D.LANES), np.nan, dtype)
        D._directc.pack_padded(a, p, bands=s, step=step, top=pt, left=pl, first_block=n0)
        for v in range(n0 * D.LANES, n1 * D.LANES):
            got = p[v // D.LANES - n0, ..., v % D.LANES]
            if v >= batch * s:
                np.testing.assert_array_equal(got, 0)
            else:
                j = v % s
                np.testing.assert_array_equal(got, padded[v // s, :, j * step:j * step + hp])
    # Unpacking: band v's rows r land on rows (v % s) * rows + r of sample v // s, when < oh.
    rows, oh = 4, 4 * s - 2 if s > 1 else 4
    res = rng.standard_normal((nb, 3, rows, 6, D.LANES)).astype(dtype)
    out = np.full((batch, 3, oh, 6), np.nan, dtype)
    D._directc.unpack_bands(res.reshape(nb, 3, rows * 6, D.LANES), out.reshape(batch, 3, oh * 6),
                            bands=s)
    for v in range(batch * s):
        j, band = v % s, res[v // D.LANES, ..., v % D.LANES]
        keep = min(rows, oh - j * rows)
        np.testing.assert_array_equal(out[v // s, :, j * rows:j * rows + keep], band[:, :keep])
    assert not np.isnan(out).any()
    # Any range of blocks lands where the whole does.
    part = np.full_like(out, np.nan)
    for n in range(nb):
        D._directc.unpack_bands(res[n:n + 1].reshape(1, 3, rows * 6, D.LANES),
                                part.reshape(batch, 3, oh * 6), bands=s, first_block=n)
    np.testing.assert_array_equal(part, out)


@pytest.mark.parametrize("batch", [1, 15, 17, 33])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (3, 7), (2, 8), (5, 14), (1, 16), (4, 28)])
@pytest.mark.parametrize(("pt", "pb", "pl", "pr"), [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 3, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_samples_are_packed_across_row_ends(batch, h, w, pt, pb, pl, pr, dtype) -> None:
    """Whole samples run each plane as one line of h * w values, 16 at a time across the ends
    of rows narrower or wider than 16: every position, padding and empty lane as the padded
    copy says (the buffer starts as NaN, so nothing may be left unwritten)."""
    a = np.random.default_rng(h * w + batch).standard_normal((batch, 3, h, w)).astype(dtype)
    padded = np.zeros((batch, 3, pt + h + pb, pl + w + pr), dtype)
    padded[:, :, pt:pt + h, pl:pl + w] = a
    nb = -(-batch // D.LANES)
    p = np.full((nb, 3, pt + h + pb, pl + w + pr, D.LANES), np.nan, dtype)
    D._directc.pack_padded(a, p, top=pt, left=pl)
    for v in range(nb * D.LANES):
        want = padded[v] if v < batch else 0
        np.testing.assert_array_equal(p[v // D.LANES, ..., v % D.LANES], want)


def test_pure_numpy_switch() -> None:
    code = ("import rot180.functional._direct as D, rot180.functional._engine as E; "
            "print(D.built(), D.available(), D.usable(64, 2, 'float32'))")
    env = {**os.environ, "ROT180_PURE_NUMPY": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "False", "False"]


def test_no_process_global_state_in_the_helper() -> None:
    """The tile kind is a per-call argument: threads asking for narrow and wide tiles at once
    each get their own kind's bits (the kinds chunk the kernel gradient's sums differently, so
    their bits differ; the module has no toggle left)."""
    import threading

    assert not hasattr(D._directc, "narrow")
    x, w, b, dz, kw = _arrays((64, 6, 14, 14), 16, 5, 1, 0, 1, 1, np.float32)
    want = {}
    for narrow in (False, True):
        with tuning(narrow_tiles=narrow, force="direct"):
            want[narrow] = conv_grad_weight(x, dz, w.shape, **kw)
    if np.array_equal(want[False], want[True]):
        pytest.skip("one tile kind on this CPU (no AVX-512)")
    errors: list[BaseException] = []

    def run(narrow: bool) -> None:
        try:
            with tuning(narrow_tiles=narrow, force="direct"):
                for _ in range(20):
                    np.testing.assert_array_equal(conv_grad_weight(x, dz, w.shape, **kw),
                                                  want[narrow])
        except BaseException as e:              # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in (False, True, False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("G, M, threads, parts", [
    (1, 256, 2, [("m", 0, 128), ("m", 128, 256)]),
    (1, 24, 2, [("m", 0, 16), ("m", 16, 24)]),      # cuts at multiples of the tiles' 8
    (1, 20, 3, [("m", 0, 8), ("m", 8, 16), ("m", 16, 20)]),
    (1, 15, 2, [("m", 0, 8), ("m", 8, 15)]),         # the remainder tile is a part
    (1, 8, 2, []),                                   # one tile: nothing to share
    (4, 8, 2, [("g", 0, 2), ("g", 2, 4)]),
    (3, 64, 2, [("g", 0, 2), ("g", 2, 3)]),
    (2, 64, 3, []),                                  # fewer groups than threads, several groups
    (1, 256, 1, []),
])
def test_how_threads_share_one_block(G, M, threads, parts) -> None:
    assert D._channel_parts(G, M, threads) == parts


# One block of lanes (a 1-D batch of at most 16, no rows to cut): the threads share its output
# channels (one group) or its groups.
ONE_BLOCK = [
    ((16, 12, 50), 32, 3, 2, 1, 1, 1),
    ((5, 7, 33), 20, 5, 1, 2, 2, 1),
    ((9, 8, 40), 12, 3, 3, 1, 1, 4),
    ((3, 6, 3, 30), 24, (3, 2), 1, 0, 1, 1),         # 2-D, one output row: no bands to cut
]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("case", ONE_BLOCK, ids=[str(c[0]) for c in ONE_BLOCK])
def test_one_block_shared_by_threads_equals_the_direct_loops(case, threads) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float64)
    G, M = kw["groups"], w.shape[0] // kw["groups"]
    assert D._channel_parts(G, M, threads), "the case must share its block"
    with tuning(parallel_min_macs=0, threads=threads, direct_min_fill=0):
        rows = dz.shape[2] if dz.ndim == 4 else 1
        assert -(-x.shape[0] * D.bands(x.shape[0], rows, threads) // D.LANES) == 1
        runs = _runs(x, w, kw)
        _assert_equals_the_direct_loops(x, w, b, dz, kw)
    for entry in ("forward", "grad_weight"):
        assert all(r == "direct" for r, _ in runs[entry]), runs


@pytest.mark.parametrize("case", ONE_BLOCK, ids=[str(c[0]) for c in ONE_BLOCK])
def test_one_block_shared_gives_the_bits_of_one_thread(case) -> None:
    """Each output (and kernel-gradient entry) is one thread's sum in the loops' order."""
    x, w, b, dz, kw = _arrays(*case, np.float32)
    with tuning(direct_min_fill=0, force="direct"):
        with tuning(threads=1):
            one = conv(x, w, b, **kw), conv_grad_weight(x, dz, w.shape, **kw)
        with tuning(parallel_min_macs=0, threads=2):
            two = conv(x, w, b, **kw), conv_grad_weight(x, dz, w.shape, **kw)
    for a, r in zip(two, one, strict=True):
        np.testing.assert_array_equal(a, r)


# Strided input gradients: the delta packed once, every sub-pixel phase a correlation of the
# same lanes with its own taps (``correlate_phases``). DCGAN's 4x4 stride 2, 3x3 stride 2 with
# a remainder, stride 3 with dilation 2 (a phase no tap reaches: zeros), per-axis steps,
# 1-D, two groups of many channels, one block shared by the threads, a strided output view.
PHASED = [
    ((32, 6, 11, 10), 8, 3, 2, 1, 1, 1),
    ((16, 3, 14, 15), 5, 4, 2, 1, 1, 1),
    ((16, 3, 13, 13), 4, 2, 3, 0, 2, 1),
    ((28, 3, 14, 15), 5, (3, 4), (2, 3), (1, 2), (2, 1), 1),
    ((24, 4, 40), 6, 5, 3, 2, 1, 1),
    ((16, 20, 9, 9), 20, 3, 2, 1, 1, 2),
    ((12, 24, 9, 8), 6, 3, 2, 1, 1, 1),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", PHASED, ids=[str(c[0]) for c in PHASED])
def test_strided_input_gradients_over_their_phases_equal_the_direct_loops(case,
                                                                           threads) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float64)
    with tuning(threads=threads, parallel_min_macs=0, force=None):
        gi = plan(x, w, **kw).grad_input
        got = conv_grad_input(dz, w, x.shape, **kw)
    assert (gi.step, gi.realisation) == ("run", "direct"), str(gi)
    np.testing.assert_allclose(got, conv_grad_input_direct(dz, w, x.shape, **kw), rtol=0,
                               atol=1e-10)


@pytest.mark.parametrize("case", PHASED, ids=[str(c[0]) for c in PHASED])
def test_strided_input_gradient_bits_do_not_depend_on_the_threads(case) -> None:
    x, w, b, dz, kw = _arrays(*case, np.float32)
    with tuning(force=None, parallel_min_macs=0):
        with tuning(threads=1):
            one = conv_grad_input(dz, w, x.shape, **kw)
        with tuning(threads=2):
            np.testing.assert_array_equal(conv_grad_input(dz, w, x.shape, **kw), one)


def test_strided_input_gradients_leave_small_batches_to_the_numpy_paths() -> None:
    """A batch that fills too few lanes (20 of 32) and no rows to cut: kn2row over the phases,
    as before; forced, the helper takes it anyway."""
    x, w, b, dz, kw = _arrays((20, 4, 25), 6, 5, 3, 2, 1, 1, np.float64)
    with tuning(force=None):
        gi = plan(x, w, **kw).grad_input
    assert "direct" not in {leaf.realisation for leaf in gi.leaves()}, str(gi)
    with tuning(force="direct"):
        gi = plan(x, w, **kw).grad_input
        got = conv_grad_input(dz, w, x.shape, **kw)
    assert (gi.step, gi.realisation) == ("run", "direct"), str(gi)
    np.testing.assert_allclose(got, conv_grad_input_direct(dz, w, x.shape, **kw), rtol=0,
                               atol=1e-10)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_gradient_in_channel_passes_against_the_oracle(threads) -> None:
    """A layer whose input planes outgrow half of any L2 cache at 256 channels (the helper
    then runs its input channels in passes, at least 32 at a time): the kernel gradient
    agrees with the direct-loop oracle and with itself at any thread count."""
    x, w, b, dz, kw = _arrays((16, 256, 20, 20), 8, 3, 1, 1, 1, 1, np.float64)
    with tuning(force="direct", threads=threads):
        got = conv_grad_weight(x, dz, w.shape, **kw)
    np.testing.assert_allclose(got, conv_grad_weight_direct(x, dz, w.shape, **kw),
                               rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("threads", [1, 2])
def test_long_rows_in_column_chunks_against_the_oracle(threads) -> None:
    """A 1-D layer whose one row of 512 input channels outgrows half of any L2 cache (the
    forward then runs its output columns in chunks; the input gradient, of 8 channels, does
    not): both agree with the direct-loop oracles at any thread count."""
    x, w, b, dz, kw = _arrays((16, 512, 1200), 8, 3, 1, 1, 1, 1, np.float64)
    with tuning(force="direct", threads=threads):
        got = conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw)
    want = conv_direct(x, w, b, **kw), conv_grad_input_direct(dz, w, x.shape, **kw)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-11 * np.abs(r).max())


@pytest.mark.parametrize("threads", [1, 2])
def test_forward_in_channel_passes_against_the_oracle(threads) -> None:
    """Layers whose input planes outgrow half of any L2 cache at 256 channels (the helper's
    forward then sums its input channels in passes of at least 16): the forward with its bias,
    a strided one, and a strided input gradient over its phases whose delta has the 256
    channels, all against the direct-loop oracles at any thread count."""
    for stride, c_in, c_out in ((1, 256, 24), (2, 256, 24), (2, 24, 256)):
        x, w, b, dz, kw = _arrays((16, c_in, 20, 20), c_out, 3, stride, 1, 1, 1, np.float64)
        with tuning(force="direct", threads=threads):
            got = conv(x, w, b, **kw), conv_grad_input(dz, w, x.shape, **kw)
        want = conv_direct(x, w, b, **kw), conv_grad_input_direct(dz, w, x.shape, **kw)
        for g, r in zip(got, want, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-11, atol=1e-11 * np.abs(r).max())
