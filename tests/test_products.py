"""The split product (:func:`rot180.functional._products.matmul`) with real threads and the
real BLAS: blocks of rows or columns give the bits of one single-threaded product, BLAS is
held at one thread and restored, and the linear layer's and 1x1 convolution's products go
through it."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import rot180.functional as F
from rot180.functional import _parallel as P
from rot180.functional._products import matmul
from rot180.functional._tuning import tuning

SHAPES = [((64, 300), (300, 10)), ((10, 64), (64, 500)), ((3, 40, 70), (3, 70, 33)),
          ((2, 1, 17, 50), (4, 50, 130)), ((257, 129), (129, 255)), ((5, 7), (7, 3))]


def blas_threads() -> int:
    lib = P._blas().numpy
    if lib is None:
        pytest.skip("threadpoolctl finds no BLAS library to limit")
    return next(i["num_threads"] for i in threadpool_info() if i["filepath"] == lib.filepath)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("sa", "sb"), SHAPES)
@pytest.mark.parametrize("threads", [2, 3])
def test_each_block_is_one_single_threaded_product(sa, sb, dtype, threads):
    """The blocks come from the shapes and the thread count alone and each is exactly the
    single-threaded product of its rows (or columns): reproducible bits, close to the whole
    product (OpenBLAS's small-matrix kernels may sum a narrow block in another order)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    M, N = sa[-2], sb[-1]
    rows = M >= N
    side = M if rows else N
    parts = min(threads, side // 16)
    bounds = [side * i // parts for i in range(parts + 1)] if parts >= 2 else [0, side]
    with threadpool_limits(1, user_api="blas"):
        whole = np.matmul(a, b)
        want = np.concatenate(
            [np.matmul(a[..., lo:hi, :], b) if rows else np.matmul(a, b[..., lo:hi])
             for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)], axis=-2 if rows else -1)
    opened = P._REGIONS.opened
    with tuning(threads=threads, parallel_min_macs=0):
        got = matmul(a, b)
        out = np.full_like(want, np.nan)
        assert matmul(a, b, out=out) is out
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_allclose(got, whole, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)
    assert (P._REGIONS.opened - opened == 2) == (parts >= 2)   # the pool ran where blocks fit


def test_blas_is_held_at_one_and_restored():
    if P._blas().numpy is None or not P._blas().shared:
        pytest.skip("needs a BLAS with a process-wide thread count")
    a = np.ones((200, 200))
    with threadpool_limits(2, user_api="blas"):
        seen = []
        with tuning(threads=2, parallel_min_macs=0):
            P.run_chunks(lambda _: seen.append(blas_threads()), [0, 1], 2)
            matmul(a, a)
        matmul(a, a)                                    # below the threshold: serial, held
        assert seen == [1, 1] and blas_threads() == 2
        assert (P._REGIONS.held, P._REGIONS.saved) == (0, None)


def test_vectors_follow_numpys_rules():
    a, b = np.arange(3.0), np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(matmul(a, b), a @ b)
    np.testing.assert_array_equal(matmul(b.T, a), b.T @ a)


def test_linear_and_pointwise_products_are_split_and_reproducible():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((96, 256)).astype(np.float32)
    w = rng.standard_normal((128, 256)).astype(np.float32)
    dy = rng.standard_normal((96, 128)).astype(np.float32)
    xc = rng.standard_normal((1, 64, 20, 20)).astype(np.float32)      # batch 1: no chunks
    wc = rng.standard_normal((96, 64, 1, 1)).astype(np.float32)

    def calls():
        return [F.linear(x, w), F.linear_grad_input(dy, w), F.linear_grad_weight(dy, x),
                F.conv(xc, wc)]

    with threadpool_limits(1, user_api="blas"), tuning(threads=1):
        one = calls()
    opened = P._REGIONS.opened
    with tuning(threads=2, parallel_min_macs=0):
        got, again = calls(), calls()
    assert P._REGIONS.opened - opened == 8                # all four split, twice
    for g, a, e in zip(got, again, one, strict=True):
        np.testing.assert_array_equal(g, a)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-4)


def test_a_batch_of_one_splits_im2col_products_over_the_threads():
    """One batch chunk runs as a serial run, whose product still uses the pool."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 64, 20, 20)).astype(np.float32)
    w = rng.standard_normal((96, 64, 3, 3)).astype(np.float32)
    d = rng.standard_normal((1, 96, 18, 18)).astype(np.float32)
    with tuning(threads=1, force="im2col"):
        one = [F.conv(x, w), F.conv_grad_weight(x, d, w.shape)]
    opened = P._REGIONS.opened
    with tuning(threads=2, parallel_min_macs=0, force="im2col"):
        two = [F.conv(x, w), F.conv_grad_weight(x, d, w.shape)]
    assert P._REGIONS.opened - opened == 2
    for a, b in zip(two, one, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
