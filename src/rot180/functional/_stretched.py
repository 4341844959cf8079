"""The input gradient, ``correlate(stretch_pad(dz, stride, pairs), w, 1, dilation)`` without
the inserted zeros: executing its :class:`~._plan.Plan` (sub-pixel phases, stacked phases,
the padded delta, kn2row over the phases, batch folding). See :mod:`._engine`."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import numpy as np

from . import _clipped, _forward
from ._kn2row import kn2row
from ._layout import chunk, guard, phase_axes
from ._padding import fold, pad, unfold
from ._parallel import map_chunks, run_chunks
from ._plan import Plan, lookup, make
from ._registry import TABLE
from ._tuning import get_tuning


@_clipped.quiet
def correlate_stretched(dz: np.ndarray, w: np.ndarray, stride: Sequence[int],
                        pairs: Sequence[tuple[int, int]], dilation: Sequence[int]
                        ) -> np.ndarray:
    """``correlate(stretch_pad(dz, stride, pairs), w, 1, dilation)`` without the zeros.

    Sub-pixel decomposition (:mod:`._engine`): one dense stride-1 correlation of ``dz`` with
    a sub-kernel per output phase.

    Shape:
        - dz: ``(B, G, C, *o)``
        - w: ``(G, M, C, *k)``
        - output: ``(B, G, M, *i)``, ``i = (o-1)s + 1 + low + high - d(k-1)``
    """
    plan = lookup("grad_input", dz.shape, w.shape, w.shape[3:], stride, dilation, pairs,
                  dz.dtype, True)
    # An infinite weight must not meet the padding or the inserted zeros; the delta meets zero
    # weights only in the stacked phases, which check it themselves.
    if plan.realisation == "clipped" or not _clipped.finite(w):
        return _clipped_phases(plan, dz, w)
    return run(plan, dz, w)


def _clipped_phases(plan: Plan, dz: np.ndarray, w: np.ndarray) -> np.ndarray:
    """kn2row over the phases with implicit padding visits exactly the real connections (see
    :mod:`._clipped`): no padding cell, no inserted zero is multiplied."""
    p = plan.problem
    k = p.kernel
    out = np.empty((*dz.shape[:2], w.shape[1], *plan.out), dz.dtype)
    y_bytes = w.shape[0] * math.prod(w.shape[1:2] + k) * math.prod(dz.shape[3:]) * \
        dz.dtype.itemsize                       # kn2row's Y of one sample
    guard(y_bytes, "the kn2row products", (*w.shape[:2], *k, *dz.shape[3:]))
    with np.errstate(invalid="ignore", over="ignore"):      # serial: errstate is per thread
        kn2row(dz, w, phase_axes(plan.out, p.stride, p.pads, p.dilation, k), out,
               chunk(dz.shape[0], y_bytes, get_tuning()), 1)
    return out


def run(plan: Plan, dz: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`correlate_stretched` on finite operands, as ``plan`` says."""
    step = plan.step
    if step == "padded":
        return _forward.run(plan.inner[0], dz, w, None, None)
    if step == "stacked":
        out = _stacked(plan, dz, w)
        if out is not None:
            return out
        # A non-finite delta: the phases, as planned without stacking (data dependent).
        alt = make(plan.problem._replace(stack=False), get_tuning(), plan.workers)
        return run(alt, dz, w)
    if step == "fold":
        return unfold(run(plan.inner[0], fold(dz), w), dz.shape[0], None)
    if step == "parts":
        def part(job: tuple[tuple[int, int], Plan]) -> np.ndarray:
            (b0, b1), sub = job
            return run(sub, dz[b0:b1], w)
        jobs = list(zip(plan.parts, plan.inner, strict=True))
        with contextlib.closing(map_chunks(part, jobs, len(jobs))) as parts:
            return np.concatenate(list(parts))
    out = np.empty((*dz.shape[:2], w.shape[1], *plan.out), dz.dtype)
    if step == "run":                           # kn2row over the phases, implicit padding
        TABLE[plan.realisation].forward(plan, dz, w, out, None)
        return out
    shared, dead, combos = plan.layout          # "phases"
    dzp = dz if shared is None else pad(dz, shared)
    if dead:
        out[...] = 0                            # phases no tap reaches (stride > kernel span)
    for (dst, src, ksl), sub in zip(combos, plan.inner, strict=True):
        _forward.run(sub, dz if src is None else dzp[(Ellipsis, *src)], w[(Ellipsis, *ksl)],
                     out[(Ellipsis, *dst)], None)
    return out


def _stacked(plan: Plan, dz: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """The stacked phases (:func:`._plan._stacked`), or None where the delta (or the result)
    is not finite and the common kernel's zero taps may have met it."""
    combos, lows, dead, check_after = plan.layout
    if not check_after and not _clipped.finite(dz):
        return None
    B, G = dz.shape[:2]
    M = w.shape[1]
    z = plan.inner[0]
    wc = np.zeros(z.problem.w, w.dtype)
    for i, combo in enumerate(combos):
        taps = [slice(ph.e0 - e, ph.e0 - e + ph.n_taps) for ph, e in zip(combo, lows,
                                                                          strict=True)]
        wc[(slice(None), slice(i * M, (i + 1) * M), slice(None), *taps)] = w[
            (Ellipsis, *(slice(ph.t0, ph.t0 + ph.t_step * ph.n_taps, ph.t_step)
                         for ph in combo))]
    res = _forward.run(z, dz, wc, None, None).reshape(B, G, len(combos), M, *z.out)
    out = np.empty((B, G, M, *plan.out), dz.dtype)

    def place(b: tuple[int, int]) -> None:     # depth-to-space of samples b[0]:b[1]
        if dead:
            out[slice(*b)] = 0
        for i, combo in enumerate(combos):
            dst = out[(slice(*b), Ellipsis, *(slice(ph.r, None, ph.s) for ph in combo))]
            dst[...] = res[(slice(*b), slice(None), i, slice(None),
                            *(slice(0, ph.m) for ph in combo))]

    run_chunks(place, plan.parts, len(plan.parts))
    if check_after and not _clipped.finite(out):
        return None
    return out
