"""Planning an input gradient (:func:`grad_input`, used by :func:`._plan.make`): the padded
delta, the sub-pixel phases, their stacking, kn2row over the phases, batch folding."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from itertools import product

import numpy as np

from . import _direct
from ._kn2row import Phase
from ._layout import chunk, dilate_last, expanded_bytes, fold_ok, fold_parts, guard, phase_axes
from ._plan import Plan, make
from ._registry import TABLE, Problem, threads_for
from ._tuning import Tuning

# --- grad_input -------------------------------------------------------------------------------

def grad_input(p: Problem, t: Tuning, workers: int) -> Plan:
    B, G, C = p.x[:3]
    M, k, o_sp = p.w[1], p.kernel, p.x[3:]
    i_sp, item = p.out_sp, np.dtype(p.dtype).itemsize
    if p.top:
        guard(G * M * math.prod(i_sp) * item, "the output", (G, M, *i_sp))
        if t.force == "clipped":                # kn2row over the phases, implicit padding
            axes = phase_axes(i_sp, p.stride, p.pads, p.dilation, k)
            return Plan(p, "run", "clipped", True, phases=_counts(axes))
    if not p.unit_stride:
        one = _one_leaf(p, t, workers)
        if one is not None:
            return one
        lanes = _phased(p, t, workers)
        if lanes is not None:
            return lanes
    if p.unit_stride:
        sub = make(Problem("forward", p.x, p.w, k, p.stride, p.dilation, p.pads, p.dtype), t,
                   workers)
        # Realisations that pad while they pack (the helper, winograd, depthwise) or the
        # depth fold: no padded copy of the delta, and no folding into rows first.
        if sub.step == "depth" or (sub.step == "run" and (
                sub.realisation == "direct" or TABLE[sub.realisation].prefer is not None)):
            return Plan(p, "padded", inner=(sub,))
    elif p.stack and t.force not in ("im2col", "kn2row"):
        st = _stacked(p, t, workers)
        if st is not None:
            return st
    expanded = expanded_bytes(p.w, o_sp, i_sp, item, t.kn2row_ratio * M < C)
    if not p.one_by_one and fold_ok(B, p.stride[-1], i_sp[-1], expanded, t):
        parts = fold_parts(B, threads_for(B * G * math.prod(p.w[1:]) * math.prod(o_sp), t,
                                          workers))
        if len(parts) > 1:
            return Plan(p, "parts", parts=parts, inner=tuple(
                make(p._replace(x=(b1 - b0, *p.x[1:]), top=False, stack=True), t, 1)
                for b0, b1 in parts))
        (lo, hi) = p.pads[-1]
        f = p._replace(x=(1, G, C, *o_sp[:-1], o_sp[-1] * B), top=False,
                       pads=(*p.pads[:-1], (lo * B, hi * B)),
                       dilation=dilate_last(p.dilation, B))
        inner = dataclasses.replace(_stretched(f, True, t, workers), out=f.out_sp,
                                    workers=workers)
        return Plan(p, "fold", inner=(inner,))
    return _stretched(p, not p.unit_stride, t, workers)


def _one_leaf(p: Problem, t: Tuning, workers: int) -> Plan | None:
    """A strided input gradient as one leaf of a realisation that stretches the delta itself
    (``depthwise``: each plane copied with the stride's zeros, one stride-1 pass writing every
    output row once, against ``s^D`` passes of the phases over the output; 16x32x112x112 3x3
    stride 2, 1 thread: 4.1 ms against 14.4), where it accepts and is preferred or forced.

    Grouped layers (``t.depthwise_strided_min_groups`` groups or more) take it wherever it
    accepts and the phases would not be stacked. Measured, 2 threads, interleaved against the
    rule without it (the phases, kn2row over them, or stacked): 3x3 stride 2 with 8-64 groups
    of 2x2 to 8x8 channels at 14-56 pixels, batch 16-64: 0.49-0.81; 2x2 stride 2 0.68, 3x3
    stride 3 0.29; 1-D 3x3 stride 2, 16 x 256 x 800 in 32 groups 0.41 (8 groups, 1000 wide:
    0.97); against kn2row 0.69-1.03. Not taken: the stacked phases (5x5 stride 2 1.14-1.18,
    4x4 0.93) and ungrouped layers (0.81-1.16)."""
    real = TABLE["depthwise"]
    forced = t.force == "depthwise"
    if real.accepts(p, t) is not True:
        return None
    if not forced:
        if t.force is not None:
            return None
        grouped = (p.x[1] >= t.depthwise_strided_min_groups and not (
            p.stack and _stacked(p, t, workers) is not None))
        if not (grouped or real.prefer(p, t)):
            return None
    B, G, C = p.x[:3]
    axes = phase_axes(p.out_sp, p.stride, p.pads, p.dilation, p.kernel)
    mac = B * G * p.w[1] * C * math.prod(p.kernel) * math.prod(p.x[3:])
    return Plan(p, "run", "depthwise", forced, phases=_counts(axes),
                threads=threads_for(int(mac * real.cost), t, workers))


def _phased(p: Problem, t: Tuning, workers: int) -> Plan | None:
    """A strided input gradient as one leaf of the helper (``_direct_fold.correlate_phases``): the
    delta packed into lanes once, with the padding every phase's taps need, and each phase a
    correlation of those lanes with its own taps, written to its own sub-pixel rows and
    columns. The forward pass's multiply-adds, one pack and one unpack; where the helper
    takes whole samples (the batch fills ``direct_min_fill`` of its lanes: no bands) and the
    padding stays within the delta's size plus the kernel's (else the phases pass their own).
    """
    if t.force not in (None, "direct") or p.nd > 2 or p.one_by_one:
        return None
    B, G, C = p.x[:3]
    k, o_sp = p.kernel, p.x[3:]
    if not _direct.usable(B, p.nd, np.dtype(p.dtype), 1):
        return None
    axes = phase_axes(p.out_sp, p.stride, p.pads, p.dilation, k)
    live = [[ph for ph in ax if ph.n_taps and ph.m] for ax in axes]
    if not all(live):
        return None
    lows, highs, fits = _delta_pads(live, o_sp, k)
    if not fits:
        return None
    th = threads_for(B * G * p.w[1] * C * math.prod(k) * math.prod(o_sp), t, workers)
    return Plan(p, "run", "direct", t.force == "direct", threads=th, bands=1,
                layout=(axes, tuple(zip(lows, highs, strict=True))), phases=_counts(axes))


def _delta_pads(axes: Sequence[Sequence[Phase]], o_sp: Sequence[int], k: Sequence[int]
                ) -> tuple[list[int], list[int], bool]:
    """The zero padding of the delta, ``(lows, highs)`` per axis, that lets every phase of
    ``axes`` read a plain window of it, and whether it fits: at most the delta's size plus the
    kernel's (else a dilation far larger than the stride would pad the delta beyond what any
    tap reads, and each phase passes its own padding instead)."""
    lows = [max([0] + [-ph.e0 for ph in ax]) for ax in axes]
    highs = [max([0] + [ph.e0 + ph.e_step * (ph.n_taps - 1) + ph.m - o for ph in ax])
             for ax, o in zip(axes, o_sp, strict=True)]
    return lows, highs, sum(lows) + sum(highs) <= sum(o_sp) + sum(k)


def _counts(axes: tuple[tuple[Phase, ...], ...]) -> tuple[int, int]:
    """(phases some tap reaches, all phases)."""
    return (math.prod(sum(1 for ph in ax if ph.n_taps) for ax in axes),
            math.prod(len(ax) for ax in axes))


def _stretched(p: Problem, implicit: bool, t: Tuning, workers: int) -> Plan:
    """After the folding decision: kn2row over the phases (implicit padding: worth it when
    each phase has few taps or rows are long), the padded delta's correlation (stride 1), or
    one correlation per live sub-pixel phase."""
    B, G, C = p.x[:3]
    M, k, o_sp, nd = p.w[1], p.kernel, p.x[3:], p.nd
    i_sp, item = p.out_sp, np.dtype(p.dtype).itemsize
    axes = phase_axes(i_sp, p.stride, p.pads, p.dilation, k)
    counts = _counts(axes)
    by_rule = (implicit and t.kn2row_ratio * M < C and not p.one_by_one
               and t.force not in ("im2col", "direct", "depthwise"))
    if t.force == "kn2row" or by_rule:
        y = expanded_bytes(p.w, o_sp, i_sp, item,
                           t.force == "kn2row" or t.kn2row_ratio * M < C)
        th = threads_for(B * G * M * C * math.prod(k) * math.prod(o_sp), t, workers)
        return Plan(p, "run", "kn2row", t.force == "kn2row", chunk=chunk(B, y, t, th),
                    threads=th, layout=axes, phases=counts)
    if p.unit_stride:
        sub = make(Problem("forward", p.x, p.w, k, p.stride, p.dilation, p.pads, p.dtype), t,
                   workers)
        return Plan(p, "padded", inner=(sub,))
    # Pad dz once so that every phase reads a plain window of it; shift e0 accordingly. Where
    # that padding outgrows the delta (a dilation far larger than the stride), each phase
    # instead passes its own padding to its correlation, which keeps only what touches dz.
    lows, highs, shared = _delta_pads([[ph for ph in ax if ph.n_taps] for ax in axes], o_sp, k)
    if shared:
        axes = tuple(tuple(ph._replace(e0=ph.e0 + lo) for ph in ax)
                     for ax, lo in zip(axes, lows, strict=True))
    lv = [[ph for ph in ax if ph.n_taps and ph.m] for ax in axes]
    dead = any(len(a) < len(ax) for a, ax in zip(lv, axes, strict=True))
    combos, subs = [], []
    for combo in product(*lv):                  # (a huge stride: a few live phases of many)
        span = [ph.e0 + ph.m + ph.e_step * (ph.n_taps - 1) for ph in combo]
        dst = tuple(slice(ph.r, None, ph.s) for ph in combo)
        ksl = tuple(slice(ph.t0, None, ph.t_step) for ph in combo)
        kk = tuple(ph.n_taps for ph in combo)
        if shared:
            src = tuple(slice(ph.e0, e) for ph, e in zip(combo, span, strict=True))
            x, own = (B, G, C, *(e - ph.e0 for ph, e in zip(combo, span, strict=True))), None
        else:
            src, x = None, p.x
            own = tuple((-ph.e0, e - o) for ph, e, o in zip(combo, span, o_sp, strict=True))
        combos.append((dst, src, ksl))
        subs.append(make(Problem("forward", x, (G, M, C, *kk), kk, (1,) * nd,
                                 tuple(ph.e_step for ph in combo), own, p.dtype), t, workers))
    layout = (tuple(zip(lows, highs, strict=True)) if shared else None, dead, tuple(combos))
    return Plan(p, "phases", layout=layout, inner=tuple(subs), phases=counts)


def _stacked(p: Problem, t: Tuning, workers: int) -> Plan | None:
    """The sub-pixel phases stacked into one correlation, or None where not taken.

    When every phase reads the delta with step 1, phase ``r`` is a correlation with taps at
    offsets ``e0_r + j`` from ``dz``'s start: placing each sub-kernel at ``e0_r - E`` (``E`` the
    smallest offset) in a common ``U``-tap kernel makes all ``s^D`` phases one correlation of
    ``dz`` with ``s^D * M`` output channels, whose channel block ``r`` is phase ``r``
    (depth-to-space afterwards). Taps outside a sub-kernel multiply zeros, and the helper's
    loops are slow on kernels of few taps, so this is taken only where at least
    ``stack_min_fill`` of the stacked taps are real, the stacked kernel has at least
    ``stack_min_taps`` taps or exactly one (then it is one product), and the helper takes the
    batch (measured: BENCHMARKS.md, Engine thresholds). ``force="direct"`` skips the two
    thresholds.
    """
    B, G, C = p.x[:3]
    M, k, nd = p.w[1], p.kernel, p.nd
    i_sp = p.out_sp
    axes = phase_axes(i_sp, p.stride, p.pads, p.dilation, k)
    # Only the phases some tap reaches are stacked; the others (stride > kernel span) are zeros.
    lv = [[ph for ph in ax if ph.n_taps and ph.m] for ax in axes]
    per_axis = []                               # per axis: (E, U, Q)
    for ax, a in zip(axes, lv, strict=True):
        if not a or any(ph.e_step != 1 for ph in a):
            return None
        e = min(ph.e0 for ph in a)
        per_axis.append((e, max(ph.e0 - e + ph.n_taps for ph in a), max(ph.m for ph in ax)))
    real = math.prod(sum(ph.n_taps for ph in a) for a in lv)
    taps = math.prod(u for _, u, _ in per_axis)
    stacked = math.prod(len(a) for a in lv) * taps
    thin = (real < t.stack_min_fill * stacked or taps < t.stack_min_taps) and \
        t.force != "direct"
    # A 3-D stack is depth-folded into a 2-D correlation of batch B * Q_d (:mod:`._depth`).
    lanes, nd2, rows = (B, nd, per_axis[0][2]) if nd < 3 else (B * per_axis[0][2], 2,
                                                                 per_axis[1][2])
    if taps > 1 and (thin or not t.helper
                     or not _direct.usable(lanes, nd2, np.dtype(p.dtype), rows)):
        return None
    combos = tuple(product(*lv))
    dead = any(len(a) < len(ax) for a, ax in zip(lv, axes, strict=True))
    U = tuple(u for _, u, _ in per_axis)
    q_sp = tuple(q for _, _, q in per_axis)
    pads = tuple((-e, e + q + u - 1 - o)
                 for (e, u, q), o in zip(per_axis, p.x[3:], strict=True))
    z = make(Problem("forward", p.x, (G, len(combos) * M, C, *U), U, (1,) * nd, (1,) * nd,
                     pads, p.dtype), t, workers)
    # The common kernel's zeros are cut taps: a non-finite delta must not meet them. Check
    # whichever is smaller, the delta before or the result after (a finite result is already
    # the sum over real taps; a non-finite one is recomputed by the phases).
    check_after = B * G * M * math.prod(i_sp) < math.prod(p.x)
    layout = (combos, tuple(e for e, _, _ in per_axis), dead, check_after)
    parts = fold_parts(B, threads_for(B * G * M * C * real * math.prod(q_sp), t, workers))
    return Plan(p, "stacked", layout=layout, inner=(z,), parts=parts,
                phases=(len(combos), math.prod(len(ax) for ax in axes)))
