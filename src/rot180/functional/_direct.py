r"""Direct correlation on batch-innermost blocks: the engine's optional compiled helper.

Why a compiled helper. On layers with few channels (LeNet's: 1 -> 6 and 6 -> 16 channels,
5x5 kernels) every NumPy route moves far more memory than it multiplies: im2col writes 25
copies of the input for products too thin for BLAS to run fast (6 x 25 by 25 x 50,176), kn2row
writes 25 copies of the output. Measured, one thread, float32, batch 64 (``_directc`` against
the NumPy engine): LeNet's first layer forward 0.18 ms against 0.71 ms, kernel gradient 0.16 ms
against 0.89 ms; the second layer 0.27 against 0.70 and 0.28 against 0.67 (BENCHMARKS.md).

How. Sixteen samples sit side by side in the innermost axis ("lanes"):
``xp[n, g, c, h, w, l] = x[16n + l, g, c, h, w]`` (zeros past the batch), so each multiply-add
of the correlation is one vector operation over 16 samples, whatever the stride, dilation,
width or channel count, and the loops need no gather and no remainder handling:

    out[16n + l, g, o, y, q] = bias[g, o]
        + sum_{c, ty, tx} w[g, o, c, ty, tx] * xp[n, g, c, y*sh + ty*dh, q*sw + tx*dw, l]

The kernel gradient sums the same products over ``n, y, q`` and the lanes. The C loops
(``_directc.c``) keep 4 output channels x 4 columns (8 x 3 with AVX-512; for the kernel
gradient 4 channels x up to 5 taps) of accumulators in registers; packing into lanes and back
(16 x 16 register transposes, zero padding written on the way) is done in C too. Spatial rank
1 and 2 (1-D as height 1); anything else, or a build without the extension, uses the NumPy
paths, which stay complete on their own: ``ROT180_PURE_NUMPY=1`` in the environment, or
``ENABLED = False``, turns the helper off, and the test suite runs the engine both ways.

Threads: blocks of 16 samples are split into contiguous ranges, one per thread (pack, correlate
and unpack of a range run together, the GIL released); kernel gradients of the ranges are
summed in range order, so results do not depend on thread timing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ._parallel import map_chunks, scratch

try:
    from . import _directc
except ImportError:                             # built without a C compiler: NumPy only
    _directc = None

__all__ = ["ENABLED", "usable", "correlate", "correlate_kernel"]

LANES = 16                                      # must match _directc.c
ENABLED = _directc is not None and os.environ.get("ROT180_PURE_NUMPY", "") in ("", "0")
# Only when at least this fraction of the lanes hold samples (batch 8 fills half a block: the
# NumPy paths are faster there).
MIN_FILL = 0.75
# The kernel gradient keeps one vector of partial sums per weight; beyond this many weights
# they no longer fit in L2 and the BLAS route is faster (measured: 2,400 weights 0.28 ms against
# 0.67; 147,456 weights 59 ms against 29).
KERNEL_MAX_WEIGHTS = 4096


def usable(batch: int, nd: int, dtype: np.dtype) -> bool:
    """Whether the helper takes a correlation of this batch size, spatial rank and dtype."""
    if not ENABLED or nd not in (1, 2) or batch < 1:
        return False
    if np.dtype(dtype) not in (np.float32, np.float64):
        return False
    return batch / (LANES * -(-batch // LANES)) >= MIN_FILL


def _ranges(blocks: int, threads: int) -> list[tuple[int, int]]:
    n = max(1, min(threads, blocks))
    step = -(-blocks // n)
    return [(b, min(blocks, b + step)) for b in range(0, blocks, step)]


def _as_2d(a: np.ndarray, nd: int) -> np.ndarray:
    """A 1-D correlation as a 2-D one of height 1 (a view)."""
    return a if nd == 2 else a[..., None, :]


def _pack(a: np.ndarray, tag: str) -> np.ndarray:
    """``a (b, *rest)`` into a reused ``(ceil(b/16), *rest, 16)`` lane buffer."""
    b = a.shape[0]
    blocks = -(-b // LANES)
    dst = scratch((blocks, *a.shape[1:], LANES), a.dtype, tag)
    _directc.pack(a, dst, b, math.prod(a.shape[1:]), 0, blocks)
    return dst


def _dims(x_shape: Sequence[int], w_shape: Sequence[int], out_sp: Sequence[int],
          stride: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    _, G, C, H, W = x_shape
    M, KH, KW = w_shape[1], w_shape[3], w_shape[4]
    return (G, C, H, W, M, KH, KW, *out_sp, *stride, *dilation)


def correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
              out: np.ndarray, bias: np.ndarray | None, threads: int,
              pads: Sequence[tuple[int, int]] | None = None) -> None:
    """``out[b, g, o, q] = bias[g, o] + sum_{c, t} w[g, o, c, t] xp[b, g, c, q*s + t*d]``
    where ``xp`` is ``x`` zero-padded by ``pads`` (``(low, high)`` per spatial axis, >= 0). The
    padding is written while packing, and taps that read only padding are skipped.

    Shape: as :func:`rot180.functional._engine.correlate` (``out`` may be strided).
    """
    nd = x.ndim - 3
    pads = [(0, 0)] * nd if pads is None else list(pads)
    x = np.ascontiguousarray(_as_2d(x, nd))
    w = np.ascontiguousarray(_as_2d(w, nd))
    out2 = _as_2d(out, nd)
    stride, dilation = (1,) * (2 - nd) + tuple(stride), (1,) * (2 - nd) + tuple(dilation)
    (pt, pb), (pl, pr) = [(0, 0)] * (2 - nd) + pads
    B, G, C, H, W = x.shape
    dims = (*_dims((B, G, C, pt + H + pb, pl + W + pr), w.shape, out2.shape[3:], stride,
                   dilation), pt, pt + H, pl, pl + W)
    b_ = None if bias is None else np.ascontiguousarray(bias)
    per_out = math.prod(out2.shape[1:])

    def part(r: tuple[int, int]) -> None:
        b0, b1 = r[0] * LANES, min(B, r[1] * LANES)
        blocks = r[1] - r[0]
        xs = scratch((blocks, G, C, pt + H + pb, pl + W + pr, LANES), x.dtype, "direct_x")
        _directc.pack_padded(x[b0:b1], xs, b1 - b0, G * C, H, W, pt, pb, pl, pr, 0, blocks)
        res = scratch((blocks, *out2.shape[1:], LANES), x.dtype, "direct_out")
        _directc.correlate(xs, w, res, b_, dims, blocks, 0, blocks)
        dst = out2[b0:b1]
        if dst.flags.c_contiguous:
            _directc.unpack(res, dst, b1 - b0, per_out, 0, blocks)
        else:                                   # a sub-pixel phase of a larger output
            tmp = scratch(dst.shape, x.dtype, "direct_tmp")
            _directc.unpack(res, tmp, b1 - b0, per_out, 0, blocks)
            np.copyto(dst, tmp)

    for _ in map_chunks(part, _ranges(-(-B // LANES), threads), threads):
        pass


def correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                     stride: Sequence[int], dilation: Sequence[int], threads: int
                     ) -> np.ndarray:
    """``dw[g, o, c, t] = sum_{b, q} dz[b, g, o, q] x[b, g, c, q*s + t*d]``, shape
    ``(G, M, C, *kernel)``; ``x`` cropped to exactly the positions the windows read."""
    nd = x.ndim - 3
    x = np.ascontiguousarray(_as_2d(x, nd))
    dz = np.ascontiguousarray(_as_2d(dz, nd))
    k2 = (1,) * (2 - nd) + tuple(kernel)
    stride, dilation = (1,) * (2 - nd) + tuple(stride), (1,) * (2 - nd) + tuple(dilation)
    B, G, C = x.shape[:3]
    M = dz.shape[2]
    dims = _dims(x.shape, (G, M, C, *k2), dz.shape[3:], stride, dilation)

    def part(r: tuple[int, int]) -> np.ndarray:
        b0, b1 = r[0] * LANES, min(B, r[1] * LANES)
        xs = _pack(x[b0:b1], "direct_x")
        zs = _pack(dz[b0:b1], "direct_dz")
        dw = np.empty((G, M, C, *k2), x.dtype)
        _directc.correlate_kernel(xs, zs, dw, dims, xs.shape[0], 0, xs.shape[0])
        return dw

    # Partial gradients of the ranges, summed in range order (not completion order).
    parts = map_chunks(part, _ranges(-(-B // LANES), threads), threads)
    acc = next(parts)
    for p in parts:
        acc += p
    return acc.reshape(G, M, C, *kernel)
