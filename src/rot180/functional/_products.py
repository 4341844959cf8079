"""One matrix product split over the engine's threads, for products that no batch chunking
shares out (a linear layer's three, a 1x1 convolution's one product, a batch smaller than the
thread count).

Every engine run holds numpy's BLAS at one thread (:mod:`._parallel`: OpenBLAS's own workers
spin after each product they share and take a core from the engine's threads). A product big
enough to be worth two cores is therefore cut here into one block of output rows (or columns)
per thread, each block a single-threaded BLAS call writing its own slice of ``out``::

    out[..., r0:r1, :] = a[..., r0:r1, :] @ b        (rows: the longer side of the output)
    out[..., :, c0:c1] = a @ b[..., :, c0:c1]        (columns)

The blocks come from the shapes and the thread count alone, and each is exactly the
single-threaded product of its rows (or columns), so the result does not depend on thread
timing. It may differ in the last bits from the unsplit product: OpenBLAS picks its kernels
(its small-matrix ones included) by shape, and so sums a narrow block in its own order.
"""

from __future__ import annotations

import math

import numpy as np

from ._parallel import held, run_chunks, workers
from ._tuning import get_tuning

__all__ = ["matmul"]

# Blocks narrower than this many rows (or columns) run slower in BLAS than they gain.
_MIN_BLOCK = 16


def _blocks(n: int, parts: int) -> list[tuple[int, int]]:
    bounds = [n * i // parts for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` with BLAS at one thread, split into blocks of output rows
    or columns over :func:`~._parallel.workers` threads from ``parallel_min_macs``
    multiply-adds (:class:`~._tuning.Tuning`).

    Shape:
        - a: ``(*batch, M, K)``; b: ``(*batch, K, N)`` (batch axes broadcast as numpy's)
        - out: ``(*batch, M, N)``, allocated when None; any array numpy's matmul accepts
    """
    if a.ndim < 2 or b.ndim < 2:                # a vector: numpy's rules, one call
        with held():
            return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
    if out is None:
        shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
        out = np.empty(shape, np.result_type(a, b))
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    n = workers()
    macs = math.prod(out.shape) * K
    rows = M >= N
    side = M if rows else N
    parts = min(n, side // _MIN_BLOCK)
    if n < 2 or parts < 2 or macs < get_tuning().parallel_min_macs:
        with held():
            np.matmul(a, b, out=out)
        return out

    def block(lohi: tuple[int, int]) -> None:
        lo, hi = lohi
        if rows:
            np.matmul(a[..., lo:hi, :], b, out=out[..., lo:hi, :])
        else:
            np.matmul(a, b[..., lo:hi], out=out[..., lo:hi])

    run_chunks(block, _blocks(side, parts), parts)
    return out
