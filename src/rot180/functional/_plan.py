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
``depth``    a 3-D correlation as the 2-D one ``inner[0]``: depth taps folded into channels
             (:mod:`._depth`), where the 2-D realisation expands nothing.

The forward and kernel-gradient planners are here, the input gradient's in :mod:`._plan_input`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _direct
from ._depth import split_pads
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
            if len(self.parts) > 1:
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
          "phases": "sub-pixel phases", "stacked": "sub-pixel phases stacked into one",
          "depth": "fold the depth taps into the channels, a 2-D correlation"}
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


def _trim(p: Problem, lv: tuple, t: Tuning, workers: int) -> Plan:
    """Only the outputs and taps that touch the input (``lv`` from ``_layout.live``): the same
    entry on the live taps' kernel, and for a kernel gradient on the live outputs' delta; no
    inner plan when nothing is live (the result is the bias, or zero)."""
    outs, taps, inner = lv
    subs: tuple[Plan, ...] = ()
    if all(q.start < q.stop for q in outs) and all(s.start < s.stop for s in taps):
        k2 = tuple(s.stop - s.start for s in taps)
        # forward: w is (G, M, C, *k) -> the live taps; grad_weight: w is the delta
        # (B, G, M, *o) -> the live outputs.
        rest = k2 if p.entry == "forward" else tuple(q.stop - q.start for q in outs)
        subs = (_sub(Problem(p.entry, p.x, (*p.w[:3], *rest), k2, p.stride, p.dilation,
                             inner, p.dtype), t, workers),)
    return Plan(p, "trim", layout=(outs, taps), inner=subs)


def _depth(p: Problem, t: Tuning, workers: int) -> Plan | None:
    """A 3-D forward pass or kernel gradient as the 2-D correlation of :mod:`._depth` (depth
    taps folded into channels, batch ``B * D_o``), where that problem's realisation expands
    nothing; None where it would be im2col or kn2row (which expand the 3-D input as much)."""
    B, G, C = p.x[:3]
    kd, do = p.kernel[0], p.out_sp[0]
    pad_lo, pads2 = split_pads(p.pads)
    x2 = (B * do, G, kd * C, *p.x[4:])
    w2 = (G, p.w[1], kd * C, *p.kernel[1:]) if p.entry == "forward" else (B * do, *p.w[1:3],
                                                                          *p.w[4:])
    q = Problem(p.entry, x2, w2, p.kernel[1:], p.stride[1:], p.dilation[1:], pads2, p.dtype)
    if choose(q, t)[0] in ("im2col", "kn2row"):
        return None
    guard(do * G * kd * C * math.prod(p.x[4:]) * np.dtype(p.dtype).itemsize,
          "the depth-folded input", (do, G, kd * C, *p.x[4:]))
    return Plan(p, "depth", layout=(kd, p.stride[0], p.dilation[0], pad_lo, do),
                inner=(_sub(q, t, workers),))


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
        return _trim(p, lv, t, workers)
    name, forced = choose(p, t)
    if nd == 3 and not forced and not p.one_by_one:
        folded = _depth(p, t, workers)
        if folded is not None:
            return folded
    mac, out_sp = macs(p), p.out_sp
    if TABLE[name].prefer is not None:           # a specialised realisation plans its own work
        return Plan(p, "run", name, forced,
                    threads=threads_for(int(mac * TABLE[name].cost), t, workers))
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
        th = threads_for(B * G * M * C * math.prod(k) * math.prod(sp), t, workers)
        return Plan(p, "run", "kn2row", forced, chunk=chunk(B, expanded, t, th), layout=axes,
                    threads=th)
    if name == "im2col":
        th = threads_for(mac, t, workers)
        return Plan(p, "run", "im2col", forced, chunk=chunk(B, expanded, t, th), threads=th)
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
            return _trim(p, lv, t, workers)
    name, forced = choose(p, t)
    if nd == 3 and not forced and not p.one_by_one:
        folded = _depth(p, t, workers)
        if folded is not None:
            return folded
    mac = B * G * M * C * K * P
    if TABLE[name].prefer is not None:
        return Plan(p, "run", name, forced,
                    threads=threads_for(int(mac * TABLE[name].cost), t, workers))
    if name == "direct":
        th = threads_for(mac, t, workers)
        s = _direct.bands(B, o_sp[0] if nd == 2 else 1, th)
        if forced or not _thin_bands(C, M, o_sp, s, t):
            return Plan(p, "run", "direct", forced, threads=th, bands=s)
        name = "im2col"
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


def _thin_bands(C: int, M: int, o_sp: tuple[int, ...], bands: int, t: Tuning) -> bool:
    """Whether the helper's kernel gradient, in ``bands`` bands of output rows per sample, is
    left to im2col: each band has at most ``t.im2col_kernel_max_positions`` output positions
    and ``C`` and ``M`` per group are at least ``t.im2col_kernel_min_channels``.

    Why: the helper's tiles (8 output channels x 3 taps) sum over one band's positions
    between loading and storing their 24 partial sums, so bands of a few positions spend their
    time on the partial sums, while im2col's product (``M x C*K`` over every position) runs at
    BLAS's rate once both channel counts are large. Measured (2 threads, the 2-core EPYC,
    im2col / helper interleaved in one process, 80 random 1-D and 2-D kernel gradients of
    batch 4-64 and 32-512 channels in two sweeps): at 4-8 positions a band and 96+ channels
    0.48-0.89 on all 10 such layers; at 14-64 positions the helper won as often as it lost
    once its packing got faster (0.77-0.98 against 1.08-1.49; the benchmark's batch-8
    256 -> 512 at stride 2, 14 positions: 1.26), so the rule stops at 8; below 96 channels
    the helper won almost everywhere (1.02-1.70) (BENCHMARKS.md, "Issue 13, third pass").
    """
    per = -(-o_sp[0] // bands) * o_sp[-1] if len(o_sp) == 2 else o_sp[-1]
    return per <= t.im2col_kernel_max_positions and min(C, M) >= t.im2col_kernel_min_channels


# The input gradient's planner lives in _plan_input (it needs Plan and make from here).
from ._plan_input import grad_input as _grad_input  # noqa: E402

_BUILD = {"forward": _forward, "grad_input": _grad_input, "grad_weight": _grad_weight}
