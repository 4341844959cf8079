"""kn2row: multiply first, then sum shifted slices (the engine's path for narrowing
correlations), and the :class:`Phase` description of the taps each output reads.

``Y[b, g, t, o, m] = sum_c w[g, o, c, t] x[b, g, c, m]`` is one product of the stacked taps
with the *unexpanded* input; ``out[b, g, o, q] = sum_t Y[b, g, t, o, q + t*d]``. Positions a tap
reads outside the input are implicit zero padding and are skipped. See
:func:`rot180.functional._registry.choose` for when it is chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import product
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._parallel import run_chunks
from ._products import matmul
from ._scratch import scratch
from ._tuning import get_tuning


class Phase(NamedTuple):
    """One output phase along one axis: which outputs, and which taps read which inputs.

    Outputs ``r, r + s, ...`` (``m`` of them) use taps ``t0 + j*t_step`` (``j < n_taps``);
    output number ``q`` reads input position ``e0 + j*e_step + q`` through tap ``j``. A plain
    stride-1 correlation is the single phase ``Phase(0, 1, o, 0, 1, k, 0, d)``.
    """

    r: int
    s: int
    m: int
    t0: int
    t_step: int
    n_taps: int
    e0: int
    e_step: int


def kn2row(x: np.ndarray, w: np.ndarray, phases: Sequence[Sequence[Phase]], out: np.ndarray,
           nb: int, threads: int) -> None:
    """``out[phase] = sum over the phase's taps of shifted slices of Y = (taps x w) @ x``.

    ``phases`` holds the :class:`Phase` list of every axis. The batch runs in chunks of ``nb``
    samples, on ``threads`` threads; each chunk writes only its own samples of ``out``.

    A chunk's product is one per sample, ``(K M, C) @ (C, L)``, or, where a sample has at most
    ``kn2row_wide_max_positions`` positions (:class:`~._tuning.Tuning`), one for the chunk,
    its samples side by side: ``(K M, C) @ (C, n L)``. Measured on the Xeon, one thread,
    float32, the chunk's copy of ``x`` included, wide / per sample: (K M, C, n, L) = (2304,
    512, 4, 49) 0.75, (1152, 512, 2, 49) 0.89, (576, 64, 8, 196) 0.89, (2304, 512, 4, 196)
    0.89, (640, 64, 8, 457) 0.97; (1152, 256, 4, 784) 1.03, (288, 64, 8, 1024) 1.14, (576,
    128, 4, 3136) 1.06: BLAS runs short rows of ``x`` below its rate, long ones at it, and
    the copy then costs more than it saves. Either way the sums of Y read it through strides.
    """
    B, G, C = x.shape[:3]
    S = x.shape[3:]
    M, k = w.shape[1], w.shape[3:]
    K, L = math.prod(k), math.prod(S)
    wstack = _stack(w)
    wide = L <= get_tuning().kn2row_wide_max_positions
    xf = x.reshape(B, G, C, L) if wide else np.ascontiguousarray(x).reshape(B, G, C, L)
    # Phases that no tap reaches are zeros, written at once: a huge stride has many of them.
    live = [[p for p in ph if p.n_taps] for ph in phases]
    dead = any(len(lv) < len(ph) for lv, ph in zip(live, phases, strict=True))
    combos = list(product(*live))

    def chunk(b0: int) -> None:
        b1 = min(B, b0 + nb)
        n = b1 - b0
        if dead:
            out[b0:b1] = 0
        if wide:                    # y[g, (t, o), (b, q)], read as (b, g, t, o, q)
            xt = scratch((G, C, n, L), x.dtype, "kn2row_x")
            np.copyto(xt, xf[b0:b1].transpose(1, 2, 0, 3))
            y = scratch((G, K * M, n * L), x.dtype, "kn2row")
            matmul(wstack, xt.reshape(G, C, n * L), out=y)
            y = np.moveaxis(y.reshape(G, *k, M, n, *S), 2 + len(k), 0)
        else:
            y = scratch((n, G, K * M, L), x.dtype, "kn2row")
            matmul(wstack, xf[b0:b1], out=y)
            y = y.reshape(n, G, *k, M, *S)
        for combo in combos:
            _sum_phase(y, combo, out[(slice(b0, b1), Ellipsis,
                                      *(slice(p.r, None, p.s) for p in combo))])

    # One chunk (a batch of 1) runs on the caller's thread, its product split over the
    # threads by matmul.
    run_chunks(chunk, range(0, B, nb), threads)


# Input channels per block of _stack's copy.
_STACK_BLOCK = 32


def _stack(w: np.ndarray) -> np.ndarray:
    """The taps stacked on the row axis, ``wstack[g, t*M + o, c] = w[g, o, c, t]``.

    An input gradient's kernel is a view (rot180 of the layer's, channel axes swapped) whose
    ``c`` steps a whole kernel plane: one copy of it took a cache line per value, so it is
    copied in blocks of input channels (256 -> 512 channels 3x3: 4.3 ms; in blocks of 8 / 16 /
    32 / 64 channels 2.1 / 1.3 / 0.95 / 1.1 ms; Xeon, one thread). A kernel whose ``c`` steps
    its taps is copied at once: blocks saved it 10 % alone, and lost as much where two batch
    parts stacked it at the same time (8x512x7x7 -> 128 forward, 2 threads: the call 1.06).
    """
    G, M, C = w.shape[:3]
    K = math.prod(w.shape[3:])
    wv = w.reshape(G, M, C, K)
    if wv.strides[2] <= K * wv.itemsize:
        return np.ascontiguousarray(np.moveaxis(wv, 3, 1)).reshape(G, K * M, C)
    stack = scratch((G, K, M, C), w.dtype, "kn2row_w")   # reused pages: no page faults
    for c0 in range(0, C, _STACK_BLOCK):
        np.copyto(stack[..., c0:c0 + _STACK_BLOCK],
                  wv[:, :, c0:c0 + _STACK_BLOCK].transpose(0, 3, 1, 2))
    return stack.reshape(G, K * M, C)


def _sum_phase(y: np.ndarray, combo: Sequence[Phase], dst: np.ndarray) -> None:
    nd = len(combo)
    S = y.shape[3 + nd:]
    # Summing into a contiguous buffer, then one strided copy, is faster than summing into a
    # strided phase of the output (BENCHMARKS.md, Engine thresholds).
    acc = dst if dst.flags.c_contiguous else scratch(dst.shape, y.dtype, "kn2row_acc")
    inside = all(p.e0 >= 0 and p.e0 + p.e_step * (p.n_taps - 1) + p.m <= size
                 for p, size in zip(combo, S, strict=True))
    if any(p.n_taps == 0 for p in combo):
        acc[...] = 0
    elif inside:                                # one reduction over a view of all taps
        np.sum(_tap_view(y, combo), axis=tuple(range(2, 2 + nd)), out=acc)
    else:
        _sum_clipped(y, combo, acc)
    if acc is not dst:
        np.copyto(dst, acc)


def _tap_view(y: np.ndarray, combo: Sequence[Phase]) -> np.ndarray:
    """``(n, G, *taps, M, *m)`` view of ``y (n, G, *k, M, *S)`` in which stepping along a tap
    axis moves to the phase's next tap *and* shifts the input window with it."""
    nd = len(combo)
    tap_st, pos_st = y.strides[2:2 + nd], y.strides[3 + nd:]
    first = y[(slice(None), slice(None), *(p.t0 for p in combo), slice(None),
               *(slice(p.e0, p.e0 + p.m) for p in combo))]
    return as_strided(
        first, shape=(*first.shape[:2], *(p.n_taps for p in combo), *first.shape[2:]),
        strides=(*first.strides[:2],
                 *(p.t_step * ts + p.e_step * ps
                   for p, ts, ps in zip(combo, tap_st, pos_st, strict=True)),
                 *first.strides[2:]),
        writeable=False)


def _sum_clipped(y: np.ndarray, combo: Sequence[Phase], acc: np.ndarray) -> None:
    """Tap by tap, add the part of each shifted window that lies inside ``y``."""
    S = y.shape[3 + len(combo):]
    acc[...] = 0
    for js in product(*(range(p.n_taps) for p in combo)):
        tap, src, dst = [], [], []
        for p, j, size in zip(combo, js, S, strict=True):
            e = p.e0 + j * p.e_step             # input position read by output 0 via tap j
            lo, hi = max(0, -e), min(p.m, size - e)
            tap.append(p.t0 + j * p.t_step)
            src.append(slice(e + lo, e + hi))
            dst.append(slice(lo, hi))
        if all(sl.start < sl.stop for sl in dst):
            part = acc[(Ellipsis, *dst)]
            np.add(part, y[(slice(None), slice(None), *tap, slice(None), *src)], out=part)
