"""``plan(...)`` and ``realisations()``: what the engine will do for a layer call, and the
table it chooses from (public through :mod:`rot180.functional`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _validation as V
from ._engine import plan_of
from ._plan import Plan
from ._registry import TABLE, Realisation
from .shapes import grad_input_padding, stride_remainder

__all__ = ["LayerPlan", "Realisation", "Realisations", "plan", "realisations"]

WHICH = ("forward", "grad_input", "grad_weight")


@dataclass(frozen=True)
class LayerPlan:
    """The plans of one layer call: its forward pass, input gradient and kernel gradient (None
    for an empty batch, where no correlation runs)."""

    forward: Plan | None
    grad_input: Plan | None
    grad_weight: Plan | None

    def __str__(self) -> str:
        if self.forward is None:
            return "empty batch: no correlation runs"
        return "\n".join(str(p) for p in (self.forward, self.grad_input, self.grad_weight))


class Realisations(tuple):
    """The realisations of the engine's table, one line each when printed."""

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self)


def realisations() -> Realisations:
    """The table the engine chooses from (names for ``tuning(force=...)``): each entry's name,
    what it does and what it accepts."""
    return Realisations(TABLE.values())


def _shape(a: object, name: str) -> tuple[tuple[int, ...], np.dtype | None]:
    if isinstance(a, np.ndarray):
        return V.float_array(a, name).shape, a.dtype
    return V.shape_arg(a, name, "plan", empty_batch=name == "x"), None


def plan(x: object, w: object, *, stride: int | Sequence[int] = 1, padding: object = 0,
         dilation: int | Sequence[int] = 1, groups: int = 1, which: str | None = None,
         input_shape: Sequence[int] | None = None, dtype: object = None
         ) -> LayerPlan | Plan | None:
    """How the engine realises ``conv(x, w, ...)`` and its two gradients, under the settings
    in force (:func:`rot180.functional.tuning`).

    Args:
        x, w: the input and kernel as arrays, or their shapes (then ``dtype``, default
            float32); ``x=None`` with ``input_shape`` also works.
        stride, padding, dilation, groups: as :func:`rot180.functional.conv`, checked the same
            way.
        which: ``"forward"``, ``"grad_input"`` or ``"grad_weight"`` for one plan; None: all
            three (a :class:`LayerPlan`).
        input_shape: the forward input's shape, where ``x`` is None.

    Returns a printable, frozen plan (``print(plan(...))``); None for one plan of an empty
    batch.

    >>> print(plan((64, 1, 28, 28), (6, 1, 5, 5), padding=2, which="forward"))  # doctest: +SKIP
    """
    if which is not None:
        V.option(which, WHICH, "which", "plan")
    if x is None:
        if input_shape is None:
            raise TypeError("plan: expected x (an array or a shape) or input_shape, got "
                            "neither. Pass x.shape of the forward input.")
        x = input_shape
    xs, xd = _shape(x, "x")
    ws, wd = _shape(w, "w")
    if xd is not None and wd is not None and xd != wd:
        raise TypeError(f"plan: x and w must have the same dtype, got {xd} and {wd}. Cast "
                        "one of them, e.g. w.astype(x.dtype).")
    if dtype is not None and (xd or wd) is not None and V.float_dtype(dtype, "plan") != (xd or wd):
        raise TypeError(f"plan: dtype={dtype!r} disagrees with the arrays' {xd or wd}. Leave "
                        "dtype out when passing arrays.")
    dt = xd or wd or V.float_dtype("float32" if dtype is None else dtype, "plan")
    spec = V.weight_spec(ws, stride=stride, padding=padding, dilation=dilation, groups=groups,
                         op="plan")
    i_sp = V.input_shape_for(spec, xs, "x", "plan")
    n = xs[0] if len(xs) == spec.nd + 2 else 1
    if n == 0:
        return None if which else LayerPlan(None, None, None)
    g = spec.groups
    c, m = spec.in_channels // g, spec.out_channels // g
    o_sp = spec.output_spatial(i_sp)
    xg, wg, dzg = (n, g, c, *i_sp), (g, m, c, *spec.kernel), (n, g, m, *o_sp)
    plans = {}
    if which in (None, "forward"):
        plans["forward"] = plan_of("forward", xg, wg, spec.kernel, spec.stride, spec.dilation,
                                   spec.padding, dt)
    if which in (None, "grad_input"):
        pads = grad_input_padding(i_sp, spec.kernel, spec.stride, spec.padding, spec.dilation,
                                  output=o_sp)
        plans["grad_input"] = plan_of("grad_input", dzg, (g, c, m, *spec.kernel), spec.kernel,
                                      spec.stride, spec.dilation, pads, dt)
    if which in (None, "grad_weight"):
        pads = tuple((lo, hi - stride_remainder(i, k, s, lo, hi, d)) for i, k, s, (lo, hi), d
                     in zip(i_sp, spec.kernel, spec.stride, spec.padding, spec.dilation,
                            strict=True))
        plans["grad_weight"] = plan_of("grad_weight", xg, dzg, spec.kernel, spec.stride,
                                       spec.dilation, pads, dt)
    return plans[which] if which else LayerPlan(**plans)

