"""The table of realisations: every way the engine can compute one correlation, what each
accepts, and the short rule that chooses among them.

A *problem* (:class:`Problem`) is one correlation described by shapes alone: the entry point
(``"forward"``, ``"grad_input"``, ``"grad_weight"``), the operands' shapes, stride, dilation,
padding and dtype. A *realisation* (:class:`Realisation`) declares which problems it takes
(:attr:`~Realisation.accepts`: True, or the reason it does not) and which array namespaces
(today ``"numpy"`` only), and runs a leaf of a :class:`~._plan.Plan`. :func:`choose` is the
rule. Batch folding, the live-window trimming and the input gradient's sub-pixel phases or
stacking are not realisations: they are steps of a plan (:mod:`._plan`) that end in leaves
realised here.

Where a second array library (CuPy on a GPU) plugs in: an entry of :data:`TABLE` whose
``namespaces`` names it, with runners that take that library's arrays; :func:`choose` then
needs the problem's namespace (a field of :class:`Problem`) and nothing else changes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import _clipped, _depthwise, _direct, _direct_fold, _winograd
from ._im2col import im2col, im2col_kernel, pointwise
from ._kn2row import kn2row
from ._padding import crop_negative
from ._realisation import Problem, Realisation
from ._tuning import Tuning

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["Problem", "Realisation", "TABLE", "choose", "names"]


# --- what each accepts ------------------------------------------------------------------------

def _direct_accepts(p: Problem, t: Tuning) -> bool | str:
    if p.entry == "grad_input" and p.unit_stride:
        return "a stride-1 input gradient reaches it as its padded delta's correlation"
    if not t.helper or _direct._directc is None:
        return "the compiled helper is off or not built"
    if p.one_by_one:
        return "a 1x1 kernel (one product: pointwise)"
    rows = 1 if p.entry == "grad_input" else p.out_sp[0]      # its phases: whole samples
    if not _direct.usable(p.x[0], p.nd, np.dtype(p.dtype), rows):
        return "not 1-D/2-D float, or the batch (or bands of rows) fills too few lanes"
    return True


def _kn2row_accepts(p: Problem, t: Tuning) -> bool | str:
    if p.entry == "grad_weight":
        return "kernel gradients go through im2col or the helper"
    if p.entry == "forward" and not p.unit_stride:
        return "a strided forward pass (only the input gradient's phases are strided)"
    return True


def _pointwise_accepts(p: Problem, t: Tuning) -> bool | str:
    if p.entry != "forward" or not p.one_by_one:
        return "forward passes with every kernel size 1 only"
    return True


def _im2col_accepts(p: Problem, t: Tuning) -> bool | str:
    if p.entry == "grad_input":
        return "the input gradient reaches it through its correlations"
    return True


def _clipped_accepts(p: Problem, t: Tuning) -> bool | str:
    return True if p.top else "whole calls only"


# --- how each runs a plan's leaf --------------------------------------------------------------

def _bias(out: np.ndarray, bias: np.ndarray | None) -> None:
    if bias is not None:
        G, M = bias.shape
        out += bias.reshape(G, M, *(1,) * (out.ndim - 3))


def _direct_forward(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
                    bias: np.ndarray | None) -> None:
    if plan.entry == "grad_input":              # a strided one, over its phases
        _direct_fold.correlate_phases(x, w, *plan.layout, out, plan.threads)
        return
    p = plan.problem
    x, pads = crop_negative(x, p.pads)
    _direct.correlate(x, w, p.stride, p.dilation, out, bias, plan.threads, pads)


def _direct_kernel(plan: Plan, x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    p = plan.problem
    x, pads = crop_negative(x, p.pads)
    return _direct.correlate_kernel(x, dz, p.kernel, p.stride, p.dilation, plan.threads, pads)


def _im2col_forward(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
                    bias: np.ndarray | None) -> None:
    p = plan.problem
    im2col(x, w, p.stride, p.dilation, out, bias, plan.chunk, plan.threads)


def _im2col_kernel(plan: Plan, x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    p = plan.problem
    G, C, M = x.shape[1], x.shape[2], dz.shape[2]
    acc = im2col_kernel(x, dz, p.kernel, p.stride, p.dilation, plan.chunk, plan.threads)
    return np.ascontiguousarray(acc.swapaxes(1, 2)).reshape(G, M, C, *p.kernel)


def _kn2row_forward(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
                    bias: np.ndarray | None) -> None:
    kn2row(x, w, plan.layout, out, plan.chunk, plan.threads)
    _bias(out, bias)


def _pointwise_forward(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
                       bias: np.ndarray | None) -> None:
    stride = plan.problem.stride
    pointwise(x, w, stride, out)
    _bias(out, bias)


def _clipped_forward(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray,
                     bias: np.ndarray | None) -> None:
    p = plan.problem
    _clipped.correlate(x, w, p.stride, p.dilation, out, bias, p.pads)


def _clipped_kernel(plan: Plan, x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    p = plan.problem
    return _clipped.correlate_kernel(x, dz, p.kernel, p.stride, p.dilation, p.pads)


TABLE: dict[str, Realisation] = {r.name: r for r in (
    Realisation("direct", "the compiled helper: 16 samples in vector lanes, no expansion",
                "1-D/2-D float32/64 forward and kernel gradients whose batch (or bands of "
                "rows) fills direct_min_fill of the lanes, and strided input gradients over "
                "their phases (whole samples), helper on", _direct_accepts,
                _direct_forward, _direct_kernel, pads_itself=True),
    Realisation("im2col", "gather windows into columns per batch chunk, one product",
                "every forward pass and kernel gradient", _im2col_accepts, _im2col_forward,
                _im2col_kernel),
    Realisation("kn2row", "multiply the unexpanded input, then sum shifted slices",
                "stride-1 forward passes and every input gradient (over its phases)",
                _kn2row_accepts, _kn2row_forward),
    Realisation("pointwise", "every kernel size 1: the strided input is the window, one "
                "product", "forward passes with a 1x1 kernel", _pointwise_accepts,
                _pointwise_forward),
    Realisation("clipped", "tap loops over the real connections only (IEEE semantics)",
                "every whole call; chosen where an operand is not finite (data dependent)",
                _clipped_accepts, _clipped_forward, _clipped_kernel, pads_itself=True),
    _depthwise.REALISATION,
    _winograd.REALISATION,
)}


def names() -> tuple[str, ...]:
    return tuple(TABLE)


def forced(p: Problem, t: Tuning) -> bool:
    """Whether ``t.force`` names a realisation that accepts ``p``."""
    return t.force is not None and TABLE[t.force].accepts(p, t) is True


def choose(p: Problem, t: Tuning) -> tuple[str, bool]:
    """The realisation of a leaf (a forward pass or kernel gradient), and whether forced.

    Thresholds: ``Tuning`` (measured: BENCHMARKS.md, "Engine thresholds").
    """
    if forced(p, t):
        return t.force, True
    for r in TABLE.values():                   # specialised realisations first, where they say
        if r.prefer is not None and r.accepts(p, t) is True and r.prefer(p, t):
            return r.name, False
    if TABLE["direct"].accepts(p, t) is True:   # no expansion at all: wins where it runs
        return "direct", False
    if p.entry == "grad_weight":
        return "im2col", False
    if p.one_by_one:
        return "pointwise", False
    if p.unit_stride and t.kn2row_ratio * p.w[1] < p.w[2]:     # M < C: expanding x costs more
        return "kn2row", False
    return "im2col", False


def threads_for(macs: int, t: Tuning, workers: int) -> int:
    """Threads for a call's batch chunks: 1 (the caller's, BLAS at one thread) below
    ``t.parallel_min_macs``."""
    return workers if macs >= t.parallel_min_macs else 1


def macs(p: Problem) -> int:
    """Multiply-adds of a forward or kernel-gradient leaf."""
    B, G, C = p.x[:3]
    M = p.w[2] if p.entry == "grad_weight" else p.w[1]
    return B * G * M * C * math.prod(p.kernel) * math.prod(p.out_sp)
