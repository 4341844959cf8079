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
from ._scratch import scratch


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
    """
    B, G, C = x.shape[:3]
    S = x.shape[3:]
    M, k = w.shape[1], w.shape[3:]
    K, L = math.prod(k), math.prod(S)
    # Taps stacked on the row axis: wstack[g, t*M + o, c] = w[g, o, c, t].
    wstack = np.ascontiguousarray(
        np.moveaxis(w.reshape(G, M, C, K), 3, 1)).reshape(G, K * M, C)
    xf = np.ascontiguousarray(x).reshape(B, G, C, L)
    # Phases that no tap reaches are zeros, written at once: a huge stride has many of them.
    live = [[p for p in ph if p.n_taps] for ph in phases]
    dead = any(len(lv) < len(ph) for lv, ph in zip(live, phases, strict=True))
    combos = list(product(*live))

    def chunk(b0: int) -> None:
        b1 = min(B, b0 + nb)
        if dead:
            out[b0:b1] = 0
        y = scratch((b1 - b0, G, K * M, L), x.dtype, "kn2row")
        np.matmul(wstack, xf[b0:b1], out=y)
        y = y.reshape(b1 - b0, G, *k, M, *S)
        for combo in combos:
            _sum_phase(y, combo, out[(slice(b0, b1), Ellipsis,
                                      *(slice(p.r, None, p.s) for p in combo))])

    run_chunks(chunk, range(0, B, nb), threads)


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
