r"""Correlations over the real connections only: the engine's path for non-finite operands.

IEEE semantics (the choice, documented in :mod:`rot180.functional.conv`). In the MLP view a
padding cell, and a zero that the stride inserts into the delta, is a *cut connection*, not an
input that happens to be zero: an output sums ``w * x`` over the inputs it is wired to and
nothing else. With finite operands that is what every path computes, since ``0 * w == 0``
exactly. With ``inf`` or NaN it is not: ``0 * inf`` is NaN, so a path that multiplies the
padding's zeros (im2col, a padded copy) turns one infinite weight into NaN at every output
whose window overlaps the padding, and a path that skips them (kn2row's implicit padding, the
helper's skipped taps, the sub-pixel phases) does not. The engine therefore checks what
decides it (:func:`finite`): the weights of a forward pass or input gradient (they are small),
the delta of a stacked input gradient (the stacked kernel's zero taps), and a kernel gradient's
*result* (every delta meets every tap, so a non-finite ``x`` or ``dz`` that could meet a cut
connection shows there; a finite result is already the sum over the real connections; the
cost of these checks: BENCHMARKS.md, Engine thresholds). A call with a non-finite value goes
to the functions here (the ``clipped`` realisation), which visit exactly the real connections:

``correlate``        out[q] = bias + sum over taps t whose input ``q*s + t*d - p_lo`` lies
                     inside x of ``w[t] * x[q*s + t*d - p_lo]`` (one product per tap, over the
                     output range that tap reaches).
``correlate_kernel`` dw[t] = sum over the same outputs ``q`` of ``dz[q] * x[q*s + t*d - p_lo]``.

The input gradient needs nothing new: kn2row over the sub-pixel phases with implicit padding
(:func:`rot180.functional._stretched.correlate_stretched`) reads only real delta entries through
real taps. ``reference.conv_direct`` and ``reference.conv_grad_weight_direct`` clip their taps
the same way, and ``reference.conv_matrix`` holds exactly these connections.

Shapes as :func:`rot180.functional._engine.correlate` and ``correlate_kernel``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from itertools import product

import numpy as np

from . import _fused
from ._parallel import run_chunks, sum_chunks
from .shapes import tap_outputs

__all__ = ["finite", "quiet", "correlate", "correlate_kernel"]


def finite(*arrays: np.ndarray) -> bool:
    """Whether every value of every array is finite. A view is read in its memory's order
    (:func:`_memory_order`). With the compiled kernels, a float array that is then contiguous
    is read once (:func:`._fused.finite_once`: the exponent bits, one pass; 256 x 256 x 3 x 3
    float32 0.058 ms against 0.16 for the two passes below, Xeon, one thread). Otherwise its
    maximum and minimum (NaN propagates through both; no allocation, no overflow; faster than
    one ``np.sum`` or ``np.isfinite(a).all()`` on large arrays where it was measured:
    BENCHMARKS.md, Engine thresholds)."""
    return all(_finite(a) for a in map(_memory_order, arrays))


def _finite(a: np.ndarray) -> bool:
    once = _fused.finite_once(a)
    if once is not None:
        return once
    if a.size <= _SMALL:
        return bool(np.isfinite(a).all())
    return bool(np.isfinite(a.max()) and np.isfinite(a.min()))


def _memory_order(a: np.ndarray) -> np.ndarray:
    """The same values as a view whose axes run in memory order (reversed axes flipped, axes
    sorted by stride), where that view is C-contiguous; else ``a``. Which values an array
    holds does not depend on the order, and a reduction over a contiguous view runs at memory
    speed: an input gradient's kernel, rot180(w) with its channel axes swapped, 512 x 512 x 3 x
    3: min and max 2.16 -> 0.79 ms."""
    if a.flags.c_contiguous or a.ndim < 2:
        return a
    v = a[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in a.strides)]
    v = v.transpose(sorted(range(v.ndim), key=lambda i: -v.strides[i]))
    return v if v.flags.c_contiguous else a


_SMALL = 2**14      # below it np.isfinite(a).all() is faster (BENCHMARKS.md, Engine thresholds)


def _taps(x_sp: Sequence[int], out_sp: Sequence[int], k: Sequence[int], stride: Sequence[int],
          dilation: Sequence[int], pads: Sequence[tuple[int, int]]
          ) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...], tuple[slice, ...]]]:
    """Every tap with the outputs it reaches: ``(t, output slices, input slices)``."""
    for t in product(*(range(kk) for kk in k)):
        outs, ins = [], []
        for n, o, tt, s, d, (lo, _) in zip(x_sp, out_sp, t, stride, dilation, pads,
                                            strict=True):
            qa, qb = tap_outputs(n, o, tt, s, d, lo)
            first = qa * s + tt * d - lo
            outs.append(slice(qa, qb))
            ins.append(slice(first, first + (qb - qa - 1) * s + 1, s))
        if all(q.start < q.stop for q in outs):
            yield t, tuple(outs), tuple(ins)


def _unpadded(x: np.ndarray, pads: Sequence[tuple[int, int]] | None
              ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Negative pads applied as a crop (a view), the rest returned (>= 0)."""
    nd = x.ndim - 3
    pads = [(0, 0)] * nd if pads is None else list(pads)
    crop = tuple(slice(max(-lo, 0), n - max(-hi, 0))
                 for n, (lo, hi) in zip(x.shape[3:], pads, strict=True))
    return x[(Ellipsis, *crop)], [(max(lo, 0), max(hi, 0)) for lo, hi in pads]


def quiet(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """No RuntimeWarning from numpy for the NaN that ``0 * inf`` makes at a real connection, or
    for an overflow: the values are the caller's data and the semantics is documented (PyTorch
    does not warn either). A fresh errstate per call (one object shared by concurrent callers
    would mix their tokens). errstate is per thread: the engine's pool threads set the same
    once (:func:`rot180.functional._parallel._init_worker`), so no path warns."""
    @functools.wraps(fn)
    def run(*args: object, **kwargs: object) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            return fn(*args, **kwargs)
    return run


def correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
              out: np.ndarray, bias: np.ndarray | None,
              pads: Sequence[tuple[int, int]] | None) -> np.ndarray:
    """``out[b, g, o, q] = bias[g, o] + sum over real taps of w[g, o, c, t] x[b, g, c, ...]``
    (``x (B, G, C, *S)``, ``w (G, M, C, *k)``, ``out (B, G, M, *o)``, filled and returned).

    Its products run as a serial run of :mod:`._parallel` (BLAS at one thread, as every run),
    so the bits do not depend on what other threads do."""
    run_chunks(lambda _: _correlate(x, w, stride, dilation, out, bias, pads), [0], 1)
    return out


def _correlate(x: np.ndarray, w: np.ndarray, stride: Sequence[int], dilation: Sequence[int],
               out: np.ndarray, bias: np.ndarray | None,
               pads: Sequence[tuple[int, int]] | None) -> None:
    x, pads = _unpadded(x, pads)
    B, G, C = x.shape[:3]
    M = w.shape[1]
    out[...] = 0 if bias is None else bias.reshape(G, M, *(1,) * (x.ndim - 3))
    for t, outs, ins in _taps(x.shape[3:], out.shape[3:], w.shape[3:], stride, dilation, pads):
        src = x[(Ellipsis, *ins)]
        q = src.shape[3:]
        part = np.matmul(w[(Ellipsis, *t)], src.reshape(B, G, C, math.prod(q)))
        dst = out[(Ellipsis, *outs)]
        dst += part.reshape(B, G, M, *q)


def correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                     stride: Sequence[int], dilation: Sequence[int],
                     pads: Sequence[tuple[int, int]] | None) -> np.ndarray:
    """``dw[g, o, c, t] = sum over the outputs q that tap t reaches of dz[b, g, o, q]
    x[b, g, c, q*s + t*d - p_lo]``, shape ``(G, M, C, *kernel)``; a serial run as
    :func:`correlate`."""
    return sum_chunks(lambda _: _correlate_kernel(x, dz, kernel, stride, dilation, pads), [0], 1)


def _correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                      stride: Sequence[int], dilation: Sequence[int],
                      pads: Sequence[tuple[int, int]] | None) -> np.ndarray:
    x, pads = _unpadded(x, pads)
    B, G, C = x.shape[:3]
    M = dz.shape[2]
    dw = np.zeros((G, M, C, *kernel), x.dtype)
    for t, outs, ins in _taps(x.shape[3:], dz.shape[3:], kernel, stride, dilation, pads):
        src = x[(Ellipsis, *ins)]
        P = math.prod(src.shape[3:])
        d_ = dz[(Ellipsis, *outs)].reshape(B, G, M, P).transpose(1, 2, 0, 3).reshape(G, M, B * P)
        s_ = src.reshape(B, G, C, P).transpose(1, 0, 3, 2).reshape(G, B * P, C)
        dw[(Ellipsis, *t)] = np.matmul(d_, s_)
    return dw
