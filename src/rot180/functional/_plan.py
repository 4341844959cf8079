"""The plan: how one correlation is realised, computed once from shapes and settings.

:func:`make` turns a :class:`~._registry.Problem` (shapes, stride, dilation, padding, dtype)
plus the :class:`~._tuning.Tuning` in force and the thread count into a frozen :class:`Plan`:
a tree whose leaves name a realisation of the table (:mod:`._registry`) and whose inner nodes
are the engine's steps around them. The three entry points (:mod:`._engine`) build their plan
here, through the one cached function, then execute it without deciding anything again; only
the non-finite check is left to the data (the plan says where it reroutes).

Steps (``Plan.step``):

``run``      a leaf: ``realisation`` computes it (chunk, threads, bands as planned).
``trim``     only the outputs and taps that touch the input (``_layout.live``), then ``inner``.
``fold``     the batch folded into the last axis (short rows), then ``inner`` on one image.
``parts``    the folded batch split into one part per thread, ``inner[i]`` for part ``i``.
``padded``   a stride-1 input gradient: the padded delta's correlation ``inner``.
``phases``   a strided input gradient as its sub-pixel phases, ``inner[i]`` for phase ``i``.
``stacked``  the phases stacked into one correlation ``inner[0]`` (then depth-to-space).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

from . import _direct
from ._kn2row import Phase
from ._layout import (
    chunk,
    dilate_last,
    expanded_bytes,
    fold_ok,
    fold_parts,
    guard,
    live,
    padded,
    phase_axes,
)
from ._parallel import workers
from ._registry import TABLE, Problem, choose, macs, threads_for
from ._tuning import Tuning, get_tuning

__all__ = ["Plan", "lookup", "make"]


@dataclass(frozen=True, eq=False)
class Plan:
    """How one correlation is realised (see the module docstring for ``step``)."""

    problem: Problem
    step: str
    realisation: str | None = None
    forced: bool = False
    chunk: int = 0
    threads: int = 1
    bands: int = 0
    parts: tuple[tuple[int, int], ...] = ()
    phases: tuple[int, int] = (0, 0)             # (computed, all) sub-pixel phases
    layout: object = None                        # step-specific, for the executor
    inner: tuple[Plan, ...] = ()
    out: tuple[int, ...] = ()                    # the result's spatial size
    workers: int = 1                             # threads it was planned for

    @property
    def entry(self) -> str:
        return self.problem.entry

    def leaves(self) -> list[Plan]:
        """Every ``run`` leaf below (or this plan itself)."""
        if self.step == "run":
            return [self]
        return [leaf for sub in self.inner for leaf in sub.leaves()]

    def __str__(self) -> str:
        return "\n".join(self._lines(0))

    def _lines(self, depth: int) -> list[str]:
        p = self.problem
        pad = "  " * depth
        what = {"forward": "x", "grad_input": "dz", "grad_weight": "x"}[p.entry]
        other = "dz" if p.entry == "grad_weight" else "w"
        head = (f"{pad}{p.entry}: {what} {p.x} {other} {p.w} stride {p.stride} dilation "
                f"{p.dilation} pads {p.pads} {np.dtype(p.dtype).name}")
        if self.step == "run":
            how = f"{self.realisation} ({'forced' if self.forced else 'chosen'})"
            extra = [f"threads {self.threads}"]
            if self.chunk:
                extra.append(f"chunks of {self.chunk}")
            if self.realisation == "direct":
                extra.append(f"bands {self.bands}")
        else:
            how, extra = _STEPS[self.step], []
            if self.parts:
                extra.append(f"{len(self.parts)} parts")
            if self.step == "trim":
                outs, taps = self.layout
                extra.append(f"live outputs {tuple((s.start, s.stop) for s in outs)}, taps "
                             f"{tuple((s.start, s.stop) for s in taps)}")
        if self.phases != (0, 0):
            extra.append(f"{self.phases[0]} of {self.phases[1]} phases computed")
        lines = [head, f"{pad}  -> {how}" + "".join(f", {e}" for e in extra)]
        if p.top and not (self.step == "run" and self.realisation == "clipped"):
            lines.append(f"{pad}  (a non-finite {_CHECKED[p.entry]} reroutes to clipped)")
        if self.step == "stacked":
            lines.append(f"{pad}  (a non-finite delta falls back to the phases)")
        seen: list[Plan] = []
        for sub in self.inner:                   # parts of one size share their plan
            if all(sub is not s for s in seen):
                seen.append(sub)
                lines += sub._lines(depth + 1)
        return lines


_STEPS = {"trim": "trim to the live outputs and taps", "fold": "fold the batch into the rows",
          "parts": "fold the batch, in parts", "padded": "correlate the padded delta",
          "phases": "sub-pixel phases", "stacked": "sub-pixel phases stacked into one"}
_CHECKED = {"forward": "weight", "grad_input": "weight", "grad_weight": "result"}


def lookup(entry: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
           kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
           pads: Sequence[Sequence[int]] | None, dtype: np.dtype, top: bool) -> Plan:
    """The plan of an entry point's call under the settings in force: one dict lookup when
    the arguments were seen before (the key holds them as given, the Tuning object and the
    thread count); :func:`make` otherwise."""
    t, n = get_tuning(), workers()
    key = (entry, x_shape, w_shape, kernel, stride, dilation, pads, dtype, top, t, n)
    try:
        return _SEEN[key]
    except (KeyError, TypeError):               # TypeError: pads given as lists
        pass
    plan = make(Problem(entry, tuple(x_shape), tuple(w_shape), tuple(kernel), tuple(stride),
                        tuple(dilation), as_pads(pads), np.dtype(dtype).char, top), t, n)
    try:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[key] = plan
    except TypeError:
        pass
    return plan


_SEEN: dict[tuple[object, ...], Plan] = {}
_SEEN_MAX = 4096


def as_pads(pads: Sequence[Sequence[int]] | None) -> tuple[tuple[int, int], ...] | None:
    """Pads as a hashable tuple of ``(low, high)`` pairs (a plan's key)."""
    return None if pads is None else tuple((int(lo), int(hi)) for lo, hi in pads)


def make(p: Problem, t: Tuning, workers: int) -> Plan:
    """The plan of ``p`` under ``t`` on ``workers`` threads (cached: the same object for the
    same key)."""
    return _make(p, t, workers)


@functools.lru_cache(maxsize=4096)
def _make(p: Problem, t: Tuning, workers: int) -> Plan:
    if t.force is not None and t.force not in TABLE:
        raise ValueError(f"tuning: force={t.force!r} is not a realisation; the realisations "
                         f"are {', '.join(map(repr, TABLE))}. Use one of them or None.")
    return dataclasses.replace(_BUILD[p.entry](p, t, workers), out=p.out_sp, workers=workers)


def _sub(p: Problem, t: Tuning, workers: int) -> Plan:
    return make(p, t, workers)


# --- forward ----------------------------------------------------------------------------------

def _forward(p: Problem, t: Tuning, workers: int) -> Plan:
    B, G, C = p.x[:3]
    M, k, nd = p.w[1], p.kernel, p.nd
    item = np.dtype(p.dtype).itemsize
    if p.top:
        o_sp = p.out_sp
        guard(G * M * math.prod(o_sp) * item, "the output", (G, M, *o_sp))
        if t.force == "clipped":
            return Plan(p, "run", "clipped", True)
    lv = live(p.x[3:], k, p.stride, p.dilation, p.pads)
    if lv is not None:
        outs, taps, inner = lv
        subs: tuple[Plan, ...] = ()
        if all(q.start < q.stop for q in outs) and all(s.start < s.stop for s in taps):
            k2 = tuple(s.stop - s.start for s in taps)
            subs = (_sub(Problem("forward", p.x, (G, M, C, *k2), k2, p.stride, p.dilation,
                                 inner, p.dtype), t, workers),)
        return Plan(p, "trim", layout=(outs, taps), inner=subs)
    name, forced = choose(p, t)
    mac, out_sp = macs(p), p.out_sp
    if name == "direct":
        th = threads_for(mac, t, workers)
        return Plan(p, "run", "direct", forced, threads=th,
                    bands=_direct.bands(B, out_sp[0] if nd == 2 else 1, th))
    sp = padded(p.x[3:], p.pads)
    if p.pads is not None:
        guard(G * C * math.prod(sp) * item, "the padded input", (G, C, *sp))
    use_kn = name == "kn2row" if forced else t.kn2row_ratio * M < C
    expanded = expanded_bytes(p.w, sp, out_sp, item, use_kn)
    if not p.one_by_one:
        guard(expanded, "the expanded input (im2col columns or kn2row products)",
              (G, C, *k, *out_sp))
    xp = Problem("forward", (B, G, C, *sp), p.w, k, p.stride, p.dilation, None, p.dtype)
    if not p.one_by_one and fold_ok(B, p.stride[-1], out_sp[-1], expanded, t):
        parts = fold_parts(B, threads_for(mac, t, workers))
        if len(parts) == 1:
            f = xp._replace(x=(1, G, C, *sp[:-1], sp[-1] * B),
                            dilation=dilate_last(p.dilation, B))
            return Plan(p, "fold", inner=(_sub(f, t, workers),))
        return Plan(p, "parts", parts=parts, inner=tuple(
            _sub(xp._replace(x=(b1 - b0, *xp.x[1:])), t, 1) for b0, b1 in parts))
    if name == "kn2row":
        axes = tuple((Phase(0, 1, o, 0, 1, kk, 0, d),)
                     for o, kk, d in zip(out_sp, k, p.dilation, strict=True))
        return Plan(p, "run", "kn2row", forced, chunk=chunk(B, expanded, t), layout=axes,
                    threads=threads_for(B * G * M * C * math.prod(k) * math.prod(sp), t,
                                        workers))
    if name == "im2col":
        return Plan(p, "run", "im2col", forced, chunk=chunk(B, expanded, t),
                    threads=threads_for(mac, t, workers))
    return Plan(p, "run", name, forced)


# --- grad_weight ------------------------------------------------------------------------------

def _grad_weight(p: Problem, t: Tuning, workers: int) -> Plan:
    B, G, C = p.x[:3]
    M, o_sp, k, nd = p.w[2], p.w[3:], p.kernel, p.nd
    K, P = math.prod(k), math.prod(o_sp)
    item = np.dtype(p.dtype).itemsize
    if p.top:
        if t.force == "clipped":
            return Plan(p, "run", "clipped", True)
        lv = live(p.x[3:], k, p.stride, p.dilation, p.pads)
        if lv is not None:
            outs, taps, inner = lv
            subs: tuple[Plan, ...] = ()
            if all(q.start < q.stop for q in outs) and all(s.start < s.stop for s in taps):
                k2 = tuple(s.stop - s.start for s in taps)
                q2 = tuple(q.stop - q.start for q in outs)
                subs = (_sub(Problem("grad_weight", p.x, (B, G, M, *q2), k2, p.stride,
                                     p.dilation, inner, p.dtype), t, workers),)
            return Plan(p, "trim", layout=(outs, taps), inner=subs)
    name, forced = choose(p, t)
    mac = B * G * M * C * K * P
    if name == "direct":
        th = threads_for(mac, t, workers)
        return Plan(p, "run", "direct", forced, threads=th,
                    bands=_direct.bands(B, o_sp[0] if nd == 2 else 1, th))
    sp = padded(p.x[3:], p.pads)
    if p.pads is not None:
        guard(G * C * math.prod(sp) * item, "the padded input", (G, C, *sp))
    cols = G * C * K * P * item
    guard(cols, "the im2col columns", (G, C, *k, *o_sp))
    xp = Problem("grad_weight", (B, G, C, *sp), p.w, k, p.stride, p.dilation, None, p.dtype)
    if fold_ok(B, p.stride[-1], o_sp[-1], cols, t):
        parts = fold_parts(B, threads_for(mac, t, workers))
        if len(parts) == 1:
            f = xp._replace(x=(1, G, C, *sp[:-1], sp[-1] * B),
                            w=(1, G, M, *o_sp[:-1], o_sp[-1] * B),
                            dilation=dilate_last(p.dilation, B))
            return Plan(p, "fold", inner=(_sub(f, t, workers),))
        return Plan(p, "parts", parts=parts, inner=tuple(
            _sub(xp._replace(x=(b1 - b0, *xp.x[1:]), w=(b1 - b0, *xp.w[1:])), t, 1)
            for b0, b1 in parts))
    return Plan(p, "run", name, forced, chunk=chunk(B, cols, t),
                threads=threads_for(mac, t, workers))


# --- grad_input -------------------------------------------------------------------------------

def _grad_input(p: Problem, t: Tuning, workers: int) -> Plan:
    B, G, C = p.x[:3]
    M, k, o_sp = p.w[1], p.kernel, p.x[3:]
    i_sp, item = p.out_sp, np.dtype(p.dtype).itemsize
    if p.top:
        guard(G * M * math.prod(i_sp) * item, "the output", (G, M, *i_sp))
        if t.force == "clipped":                # kn2row over the phases, implicit padding
            axes = phase_axes(i_sp, p.stride, p.pads, p.dilation, k)
            return Plan(p, "run", "clipped", True, phases=_counts(axes))
    if p.unit_stride:
        sub = _sub(Problem("forward", p.x, p.w, k, p.stride, p.dilation, p.pads, p.dtype), t,
                   workers)
        if sub.step == "run" and sub.realisation == "direct":
            return Plan(p, "padded", inner=(sub,))      # the helper pads while it packs
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
                _sub(p._replace(x=(b1 - b0, *p.x[1:]), top=False, stack=True), t, 1)
                for b0, b1 in parts))
        (lo, hi) = p.pads[-1]
        f = p._replace(x=(1, G, C, *o_sp[:-1], o_sp[-1] * B), top=False,
                       pads=(*p.pads[:-1], (lo * B, hi * B)),
                       dilation=dilate_last(p.dilation, B))
        inner = dataclasses.replace(_stretched(f, True, t, workers), out=f.out_sp,
                                    workers=workers)
        return Plan(p, "fold", inner=(inner,))
    return _stretched(p, not p.unit_stride, t, workers)


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
               and t.force not in ("im2col", "direct"))
    if t.force == "kn2row" or by_rule:
        y = expanded_bytes(p.w, o_sp, i_sp, item,
                           t.force == "kn2row" or t.kn2row_ratio * M < C)
        return Plan(p, "run", "kn2row", t.force == "kn2row", chunk=chunk(B, y, t),
                    threads=threads_for(B * G * M * C * math.prod(k) * math.prod(o_sp), t,
                                        workers), layout=axes, phases=counts)
    if p.unit_stride:
        sub = _sub(Problem("forward", p.x, p.w, k, p.stride, p.dilation, p.pads, p.dtype), t,
                   workers)
        return Plan(p, "padded", inner=(sub,))
    # Pad dz once so that every phase reads a plain window of it; shift e0 accordingly. Where
    # that padding outgrows the delta (a dilation far larger than the stride), each phase
    # instead passes its own padding to its correlation, which keeps only what touches dz.
    lows = [max([0] + [-ph.e0 for ph in ax if ph.n_taps]) for ax in axes]
    highs = [max([0] + [ph.e0 + ph.e_step * (ph.n_taps - 1) + ph.m - o for ph in ax
                        if ph.n_taps]) for ax, o in zip(axes, o_sp, strict=True)]
    shared = sum(lows) + sum(highs) <= sum(o_sp) + sum(k)
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
        subs.append(_sub(Problem("forward", x, (G, M, C, *kk), kk, (1,) * nd,
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
    if taps > 1 and (thin or not t.helper
                     or not _direct.usable(B, nd, np.dtype(p.dtype), per_axis[0][2])):
        return None
    combos = tuple(product(*lv))
    dead = any(len(a) < len(ax) for a, ax in zip(lv, axes, strict=True))
    U = tuple(u for _, u, _ in per_axis)
    q_sp = tuple(q for _, _, q in per_axis)
    pads = tuple((-e, e + q + u - 1 - o)
                 for (e, u, q), o in zip(per_axis, p.x[3:], strict=True))
    z = _sub(Problem("forward", p.x, (G, len(combos) * M, C, *U), U, (1,) * nd, (1,) * nd,
                     pads, p.dtype), t, workers)
    # The common kernel's zeros are cut taps: a non-finite delta must not meet them. Check
    # whichever is smaller, the delta before or the result after (a finite result is already
    # the sum over real taps; a non-finite one is recomputed by the phases).
    check_after = B * G * M * math.prod(i_sp) < math.prod(p.x)
    layout = (combos, tuple(e for e, _, _ in per_axis), dead, check_after)
    parts = fold_parts(B, threads_for(B * G * M * C * real * math.prod(q_sp), t, workers))
    return Plan(p, "stacked", layout=layout, inner=(z,), parts=parts,
                phases=(len(combos), math.prod(len(ax) for ax in axes)))


_BUILD = {"forward": _forward, "grad_input": _grad_input, "grad_weight": _grad_weight}
