"""im2col: gather the windows of a batch chunk, then one product per chunk (the engine's
general path), for the forward correlation and for the kernel gradient; and the 1x1 case.

``cols[g, (c, t), (b, q)] = x[b, g, c, q*s + t*d]`` is copied through a strided view of the
input; the correlation is ``w[g] @ cols[g]`` and the kernel gradient ``dw^T = cols @ dz^T``. See
:func:`rot180.functional._registry.choose` for when each path is chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._parallel import run_chunks, sum_chunks
from ._products import matmul
from ._scratch import scratch


def pointwise(x: np.ndarray, w: np.ndarray, stride: Sequence[int], out: np.ndarray) -> None:
    """Every kernel size 1: the windows are the (strided) input itself, one product (split
    over the engine's threads by :func:`._products.matmul`)."""
    B, G, C = x.shape[:3]
    M = w.shape[1]
    xs = x[(Ellipsis, *(slice(None, None, s) for s in stride))]
    P = math.prod(out.shape[3:])
    if not xs.flags.c_contiguous:
        buf = scratch(xs.shape, x.dtype, "pointwise")
        np.copyto(buf, xs)
        xs = buf
    wm = w.reshape(G, M, C)
    if out.flags.c_contiguous:
        matmul(wm, xs.reshape(B, G, C, P), out=out.reshape(B, G, M, P))
    else:
        out[...] = matmul(wm, xs.reshape(B, G, C, P)).reshape(out.shape)


def _windows(x: np.ndarray, k: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
             out_sp: Sequence[int]) -> np.ndarray:
    """Read-only strided view ``(G, C, *k, B, *o)`` of every window of ``x (B, G, C, *S)``:
    ``view[g, c, t, b, q] = x[b, g, c, q*s + t*d]``."""
    sb, sg, sc = x.strides[:3]
    ss = x.strides[3:]
    B, G, C = x.shape[:3]
    return as_strided(
        x, shape=(G, C, *k, B, *out_sp),
        strides=(sg, sc, *(st * d for st, d in zip(ss, dilation, strict=True)), sb,
                 *(st * s for st, s in zip(ss, stride, strict=True))),
        writeable=False)


def _gather(view: np.ndarray, b0: int, b1: int, dtype: np.dtype) -> np.ndarray:
    """im2col of samples ``b0:b1`` of a :func:`_windows` view into a reused ``(G, C*K, n*P)``
    buffer: row ``(c, t)``, column ``(b, q)``."""
    G, C = view.shape[:2]
    nd = (view.ndim - 3) // 2
    k, o = view.shape[2:2 + nd], view.shape[3 + nd:]
    n = b1 - b0
    cols = scratch((G, C * math.prod(k), n * math.prod(o)), dtype, "cols")
    np.copyto(cols.reshape(G, C, *k, n, *o), view[(slice(None),) * (2 + nd) + (slice(b0, b1),)])
    return cols


def im2col(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
           out: np.ndarray, bias: np.ndarray | None, nb: int, threads: int) -> None:
    """``out[b, g, o, q] = bias[g, o] + sum_{c, t} w[g, o, c, t] x[b, g, c, q*s + t*d]`` in
    chunks of ``nb`` samples on ``threads`` threads; each chunk writes only its own samples."""
    B, G, C = x.shape[:3]
    M, k = w.shape[1], w.shape[3:]
    out_sp = out.shape[3:]
    P = math.prod(out_sp)
    wm = w.reshape(G, M, C * math.prod(k))
    view = _windows(x, k, stride, dilation, out_sp)
    bg = None if bias is None else bias.reshape(G, M, *(1,) * len(k))

    def chunk(b0: int) -> None:
        b1 = min(B, b0 + nb)
        n = b1 - b0
        cols = _gather(view, b0, b1, x.dtype)
        prod_ = scratch((G, M, n * P), x.dtype, "prod")
        matmul(wm, cols, out=prod_)
        # One wide product per chunk (as fast as one per sample, with fewer BLAS calls:
        # BENCHMARKS.md, Engine thresholds) lands as (G, M, n, P); one pass moves it into
        # (n, G, M, P) plus the bias.
        res = np.moveaxis(prod_.reshape(G, M, n, *out_sp), 2, 0)
        if bg is None:
            np.copyto(out[b0:b1], res)
        else:
            np.add(res, bg, out=out[b0:b1])

    # One chunk (a batch of 1) runs on the caller's thread, its product split over the
    # threads by matmul.
    run_chunks(chunk, range(0, B, nb), threads)


def im2col_kernel(x: np.ndarray, dz: np.ndarray, k: Sequence[int], stride: Sequence[int],
                  dilation: Sequence[int], nb: int, threads: int) -> np.ndarray:
    """``acc[g, (c, t), o] = sum_{b, q} x[b, g, c, q*s + t*d] dz[b, g, o, q]``, the transposed
    kernel gradient, in chunks of ``nb`` samples on ``threads`` threads.

    Each chunk's product is a separate partial result; they are summed here in chunk order
    (never in completion order), so the result does not depend on thread timing.
    """
    B, G, C = x.shape[:3]
    M, o_sp = dz.shape[2], dz.shape[3:]
    P = math.prod(o_sp)
    view = _windows(x, k, stride, dilation, o_sp)

    def chunk(b0: int) -> np.ndarray:
        b1 = min(B, b0 + nb)
        n = b1 - b0
        cols = _gather(view, b0, b1, x.dtype)
        dzt = scratch((G, M, n, P), x.dtype, "dzt")
        np.copyto(dzt, dz[b0:b1].reshape(n, G, M, P).transpose(1, 2, 0, 3))
        # dw^T = cols @ dz^T: BLAS runs this shape (long contraction, small output) faster
        # than dz @ cols^T.
        return matmul(cols, dzt.reshape(G, M, n * P).swapaxes(1, 2))

    return sum_chunks(chunk, range(0, B, nb), threads)
