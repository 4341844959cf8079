"""The kernel gradient: executing its :class:`~._plan.Plan` (trim to the live outputs and
taps, pad, fold or split the batch, then the realisation). See :mod:`._engine`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _clipped, _depth, _direct_fold
from ._padding import fold, pad
from ._parallel import sum_chunks
from ._plan import Plan, lookup
from ._registry import TABLE


@_clipped.quiet
def correlate_kernel(x: np.ndarray, dz: np.ndarray, kernel: Sequence[int],
                     stride: Sequence[int], dilation: Sequence[int],
                     pads: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Valid correlation of ``x`` with the delta ``dz`` as kernel: the kernel gradient.

    ``out[g, o, c, t] = sum_{b, q} dz[b, g, o, q] * xp[b, g, c, q*s + t*d]``, ``xp = pad(x,
    pads)`` (``x`` itself when ``pads`` is None): the delta's taps ``q`` sit ``s`` apart on
    ``xp`` (the stride is the delta's dilation) and neighbouring outputs ``t`` sit ``d`` apart
    (the dilation is the output's stride). It contracts the same windows the forward pass
    gathers, over the batch and the positions instead of the channels. The direct path pads
    while it packs; the others pad first. Products with padding cells are never summed
    (:mod:`._clipped` where ``x`` or ``dz`` is not finite); outputs whose windows hold no input
    are dropped and taps that read only padding get zero without being computed (the plan's
    ``trim``).

    Shape:
        - x: ``(B, G, C, *S)``, padded and cropped by ``pads`` to ``(o-1)s + d(k-1) + 1``
        - dz: ``(B, G, M, *o)``
        - output: ``(G, M, C, *kernel)``
    """
    plan = lookup("grad_weight", x.shape, dz.shape, kernel, stride, dilation, pads, x.dtype,
                  True)
    if plan.realisation != "clipped":
        dw = run(plan, x, dz)
        # Every delta meets every tap (through an input or the padding), so a non-finite x or
        # dz that could meet a cut connection leaves a non-finite dw, and a finite dw is
        # already the sum over the real connections: checking the small result, not the
        # operands, costs nothing, and only non-finite data pays for the second pass.
        if _clipped.finite(dw):
            return dw
    return _clipped.correlate_kernel(x, dz, kernel, stride, dilation, pads)


def run(plan: Plan, x: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """The kernel gradient of finite operands, as ``plan`` says."""
    p, step = plan.problem, plan.step
    if step == "trim":
        dw = np.zeros((x.shape[1], dz.shape[2], x.shape[2], *p.kernel), x.dtype)
        if plan.inner:
            outs, taps = plan.layout
            dw[(Ellipsis, *taps)] = run(plan.inner[0], x, dz[(Ellipsis, *outs)])
        return dw
    if step == "depth":
        kd, sd, dd, pad_lo, do = plan.layout
        inner = plan.inner[0]
        if _direct_fold.whole(plan):                # the helper folds x and dz itself
            q = inner.problem
            return _depth.unfold_kernel(_direct_fold.correlate_kernel_depth(
                x, dz, q.kernel, plan.layout, q.stride, q.dilation, q.pads, inner.threads), kd)
        return _depth.unfold_kernel(run(inner, _depth.fold_input(x, kd, sd, dd, pad_lo, do),
                                        _depth.fold_delta(dz)), kd)
    real = TABLE[plan.realisation] if step == "run" else None
    if p.pads is not None and not (real is not None and real.pads_itself):
        x = pad(x, p.pads)
    if step == "fold":
        return run(plan.inner[0], fold(x), fold(dz))
    if step == "parts":
        # Partial kernel gradients of the parts, summed in part order.
        def part(job: tuple[tuple[int, int], Plan]) -> np.ndarray:
            (b0, b1), sub = job
            return run(sub, x[b0:b1], dz[b0:b1])
        return sum_chunks(part, list(zip(plan.parts, plan.inner, strict=True)),
                          len(plan.parts))
    return real.kernel(plan, x, dz)
