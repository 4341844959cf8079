"""kn2row's two products (one per sample, or a chunk's samples side by side) and its stacked
kernel, on both sides of ``kn2row_wide_max_positions`` and of ``_stack``'s block size, against
the direct-loop oracle."""

from __future__ import annotations

import numpy as np
import pytest

import rot180.functional._kn2row as K
from rot180.functional import conv, conv_grad_input
from rot180.functional._tuning import tuning
from rot180.functional.reference import conv_direct, conv_grad_input_direct


@pytest.mark.parametrize("k", [(3,), (2, 3), (2, 1, 3)])
@pytest.mark.parametrize("swapped", [False, True])
def test_the_stacked_kernel_is_the_taps_on_the_row_axis(k, swapped) -> None:
    """Channel counts on each side of the block (32), with a partial last block; the input
    gradient's view (rot180, channel axes swapped) and a contiguous kernel."""
    rng = np.random.default_rng(3)
    for C in (5, 32, 70):
        if swapped:
            base = rng.standard_normal((2, C, 6, *k))
            w = base[(Ellipsis, *(slice(None, None, -1),) * len(k))].swapaxes(1, 2)
        else:
            w = rng.standard_normal((2, 6, C, *k))
        G, M = w.shape[:2]
        want = np.moveaxis(w.reshape(G, M, C, -1), 3, 1).reshape(G, -1, C)
        np.testing.assert_array_equal(K._stack(w), want)


# (x shape, kernel, stride, padding): positions per sample on each side of the default 256.
LAYERS = [
    ((3, 40, 7, 7), (3, 3), 2, 1),            # 49 positions, 40 channels: two blocks
    ((2, 36, 30, 20), (3, 3), 2, 1),           # 600 positions
    ((4, 48, 33), (5,), 2, 2),                 # 1-D
    ((2, 34, 4, 5, 6), (3, 3, 3), 2, 1),       # 3-D
]


@pytest.mark.parametrize(("shape", "k", "s", "p"), LAYERS)
@pytest.mark.parametrize("wide", [0, 10**9])
@pytest.mark.parametrize("threads", [1, 2])
def test_both_products_equal_the_direct_loops(shape, k, s, p, wide, threads) -> None:
    """A narrowing forward pass, and the strided input gradient of a widening layer (kn2row
    over the phases; its kernel the rot180, channel-swapped view of the layer's contiguous
    one, so stacked in blocks), both products forced, whole batch and one-sample chunks."""
    rng = np.random.default_rng(5)
    C = shape[1]
    x = rng.standard_normal(shape)
    w = rng.standard_normal((C // 4, C, *k))
    x_l = rng.standard_normal((shape[0], C // 4, *shape[2:]))      # the widening layer
    w_l = rng.standard_normal((C, C // 4, *k))
    dz = rng.standard_normal(conv_direct(x_l, w_l, None, stride=s, padding=p).shape)
    for chunk_bytes in (1, 2**40):
        with tuning(force="kn2row", kn2row_wide_max_positions=wide, threads=threads,
                    chunk_bytes=chunk_bytes, parallel_min_macs=0):
            got = conv(x, w, None, padding=p)
            got_gi = conv_grad_input(dz, w_l, x_l.shape, stride=s, padding=p)
        np.testing.assert_allclose(got, conv_direct(x, w, None, padding=p), rtol=0, atol=1e-10)
        np.testing.assert_allclose(
            got_gi, conv_grad_input_direct(dz, w_l, x_l.shape, stride=s, padding=p),
            rtol=0, atol=1e-10)


def test_wide_products_are_taken_up_to_the_field(monkeypatch) -> None:
    """Which product runs, counted on each side of ``kn2row_wide_max_positions``."""
    seen = []
    real = K.matmul

    def spy(a, b, out=None):
        seen.append(b.ndim)                 # (G, C, n L): 3 axes; per sample (n, G, C, L): 4
        return real(a, b, out=out)

    monkeypatch.setattr(K, "matmul", spy)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 7, 7))
    w = rng.standard_normal((2, 8, 3, 3))
    for limit, ndim in ((49, 3), (48, 4)):
        seen.clear()
        with tuning(force="kn2row", kn2row_wide_max_positions=limit, fold_max_row=0):
            conv(x, w, None)                # unpadded: a sample's 7 x 7 positions
        assert seen and set(seen) == {ndim}, (limit, seen)
