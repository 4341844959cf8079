"""Executing a forward correlation's :class:`~._plan.Plan` (also the inner correlations of
the input gradient): trim, pad, fold or split the batch as planned, then run the leaf's
realisation (:mod:`._registry`). Nothing is decided here."""

from __future__ import annotations

import numpy as np

from . import _depth, _direct_fold
from ._padding import fold, pad, unfold
from ._parallel import run_chunks
from ._plan import Plan
from ._registry import TABLE


def run(plan: Plan, x: np.ndarray, w: np.ndarray, out: np.ndarray | None,
        bias: np.ndarray | None) -> np.ndarray:
    """``out[b, g, o, q] = bias[g, o] + sum_{c, t} w[g, o, c, t] * xp[b, g, c, q*s + t*d]`` as
    ``plan`` says (``out`` allocated when None; any, e.g. strided, array of the shape)."""
    p, step = plan.problem, plan.step
    if out is None:
        out = np.empty((x.shape[0], *w.shape[:2], *plan.out), x.dtype)
    if step == "trim":
        G, M = w.shape[:2]
        out[...] = 0 if bias is None else bias.reshape(G, M, *(1,) * p.nd)
        if plan.inner:
            outs, taps = plan.layout
            run(plan.inner[0], x, w[(Ellipsis, *taps)], out[(Ellipsis, *outs)], bias)
        return out
    if step == "depth":
        kd, sd, dd, pad_lo, do = plan.layout
        inner = plan.inner[0]
        if _direct_fold.whole(plan):                # the helper folds and unfolds itself
            q = inner.problem
            _direct_fold.correlate_depth(x, _depth.fold_kernel(w), out, bias, plan.layout,
                                         q.stride, q.dilation, q.pads, inner.threads)
            return out
        z2 = run(inner, _depth.fold_input(x, kd, sd, dd, pad_lo, do), _depth.fold_kernel(w),
                 None, bias)
        return _depth.unfold_output(z2, x.shape[0], out)
    real = TABLE[plan.realisation] if step == "run" else None
    if p.pads is not None and not (real is not None and real.pads_itself):
        x = pad(x, p.pads)
    if step == "fold":
        return unfold(run(plan.inner[0], fold(x), w, None, bias), x.shape[0], out)
    if step == "parts":
        def part(job: tuple[tuple[int, int], Plan]) -> None:
            (b0, b1), sub = job
            run(sub, x[b0:b1], w, out[b0:b1], bias)
        run_chunks(part, list(zip(plan.parts, plan.inner, strict=True)), len(plan.parts))
        return out
    real.forward(plan, x, w, out, bias)
    return out
