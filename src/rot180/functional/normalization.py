r"""Batch normalisation over the channel axis 1, and its backward rule.

Notation
--------
``x``  input ``(N, C, *spatial)``; statistics are taken per channel ``c`` over the ``M`` values
``x[n, c, ...]`` (``M = N * prod(spatial)``).  ``g, b``: per-channel scale (weight) and shift.

Forward (training)::

    mu = (1/M) sum x            var = (1/M) sum (x - mu)^2   (biased)
    r  = 1 / sqrt(var + eps)    xh  = (x - mu) r              y = g xh + b

Derivation of the backward rule (one channel; every sum runs over its ``M`` values)
-----------------------------------------------------------------------------------
``dg = sum dy * xh`` and ``db = sum dy`` are immediate. Let ``u = dy * g`` (the delta of
``xh``). Every ``xh_j`` depends on every ``x_i`` through ``mu`` and ``var``::

    d xh_j / d x_i = r ([i = j] - 1/M) + (x_j - mu) d r / d x_i
    d r / d x_i    = -(1/2) (var + eps)^{-3/2} d var / d x_i = -r^3 (x_i - mu) / M

(``d var / d x_i = (2/M)(x_i - mu)``: the ``mu`` term drops since ``sum (x - mu) = 0``). So::

    dx_i = sum_j u_j d xh_j / d x_i
         = r u_i - (r/M) sum u - (r^3 / M) (x_i - mu) sum_j u_j (x_j - mu)
         = (r / M) (M u_i - sum u - xh_i sum u xh)

using ``(x - mu) r = xh``. In evaluation mode (or when normalising with given statistics),
``mu`` and ``var`` are constants and the rule is just ``dx = u r``.

These functions are the readable reference. The ``BatchNorm*d`` layers run a twin with fewer
passes over memory (statistics in one pass, the ReLU of a following layer folded in):
:mod:`rot180.functional._fused`, which derives its form of this rule from the one above.
"""

from __future__ import annotations

import numpy as np

from . import _validation as V

__all__ = ["batch_norm", "batch_norm_grad", "batch_stats"]


def _check(x: np.ndarray, op: str) -> np.ndarray:
    x = V.float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(
            f"{op}: expected x of shape (N, C, *spatial), got {x.ndim}-D shape {x.shape}. "
            "Add a batch axis with x[None]."
        )
    if 0 in x.shape:
        raise ValueError(f"{op}: expected x with no zero-size axis, got shape {x.shape}: "
                         "statistics over no values are undefined.")
    return x


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    return v.reshape((-1,) + (1,) * (ndim - 2))


def _axes(ndim: int) -> tuple[int, ...]:
    return (0, *range(2, ndim))


def batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and **biased** variance over every axis but 1.

    Shape:
        - x: ``(N, C, *spatial)``; outputs: ``(C,)``, ``(C,)``
    """
    x = _check(x, "batch_stats")
    ax = _axes(x.ndim)
    mean = x.mean(axis=ax)
    var = ((x - _per_channel(mean, x.ndim)) ** 2).mean(axis=ax)
    return mean, var


def batch_norm(x: np.ndarray, mean: np.ndarray, var: np.ndarray, weight: np.ndarray | None,
               bias: np.ndarray | None, *, eps: float = 1e-5
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``y = weight * (x - mean) / sqrt(var + eps) + bias``, per channel (axis 1).

    Pass the batch statistics of :func:`batch_stats` in training, the running ones in
    evaluation. ``weight`` / ``bias`` ``None`` mean 1 / 0 (no affine transform).

    Returns:
        ``y``, the normalised input ``xh`` and ``r = 1 / sqrt(var + eps)`` (both reused by
        :func:`batch_norm_grad`).

    Shape:
        - x: ``(N, C, *spatial)``; mean, var, weight, bias: ``(C,)``
        - y, xh: like ``x``; r: ``(C,)``
    """
    op = "batch_norm"
    x = _check(x, op)
    arrays = {"mean": mean, "var": var, "weight": weight, "bias": bias}
    for name, a in arrays.items():
        if a is None:
            continue
        arrays[name] = a = V.float_array(a, name)
        if a.shape != (x.shape[1],):
            raise ValueError(
                f"{op}: {name} must have shape (C,) = ({x.shape[1]},) for x of shape {x.shape}, "
                f"got {a.shape}."
            )
    V.same_dtype(x=x, **arrays)
    eps = V.real(eps, "eps", op, low=0.0, low_open=True)
    var_eps = arrays["var"] + x.dtype.type(eps)
    # O(C), not a scan of x. A negative variance is a caller's error; NaN (a diverged batch)
    # is let through so that it reaches the loss, where the trainer reports it.
    if (var_eps <= 0).any():
        raise ValueError(f"{op}: var + eps must be positive, got min(var) = "
                         f"{float(np.min(arrays['var']))} with eps={eps}. Pass a variance "
                         "(>= 0), e.g. from batch_stats.")
    r = 1 / np.sqrt(var_eps)
    xh = (x - _per_channel(arrays["mean"], x.ndim)) * _per_channel(r, x.ndim)
    y = xh if arrays["weight"] is None else xh * _per_channel(arrays["weight"], x.ndim)
    if arrays["bias"] is not None:
        y = y + _per_channel(arrays["bias"], x.ndim)
    return (y.copy() if y is xh else y), xh, r


def batch_norm_grad(dy: np.ndarray, xh: np.ndarray, r: np.ndarray, weight: np.ndarray | None,
                    *, batch_statistics: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dx, dweight, dbias)`` of :func:`batch_norm`.

    With ``batch_statistics`` (training: ``mean`` and ``var`` were computed from ``x``)
    ``dx = (r / M) (M u - sum u - xh sum(u xh))`` with ``u = dy * weight``, sums per channel
    over its ``M`` values; otherwise (fixed statistics) ``dx = u r``. Always
    ``dweight = sum dy xh`` and ``dbias = sum dy``. Derivation in the module docstring.

    Shape:
        - dy, xh: ``(N, C, *spatial)``; r, weight: ``(C,)``
        - dx: like ``dy``; dweight, dbias: ``(C,)``
    """
    op = "batch_norm_grad"
    dy = _check(dy, op)
    batch_statistics = V.flag(batch_statistics, "batch_statistics", op)
    xh = V.float_array(xh, "xh")
    r = V.float_array(r, "r")
    if weight is not None:
        weight = V.float_array(weight, "weight")
    V.same_dtype(dy=dy, xh=xh, r=r, weight=weight)
    if xh.shape != dy.shape or r.shape != (dy.shape[1],) or (
            weight is not None and weight.shape != r.shape):
        raise ValueError(
            f"{op}: expected xh of dy's shape {dy.shape} and r, weight of shape "
            f"({dy.shape[1]},), got xh {xh.shape}, r {r.shape}, weight "
            f"{None if weight is None else weight.shape}. Pass what batch_norm returned."
        )
    ax = _axes(dy.ndim)
    dbias = dy.sum(axis=ax)
    dweight = (dy * xh).sum(axis=ax)
    scale = r if weight is None else r * weight     # dx = dy * weight * r (...)
    if not batch_statistics:
        return dy * _per_channel(scale, dy.ndim), dweight, dbias
    m = dy.size // dy.shape[1]
    # With u = dy * weight: sum u = weight * dbias and sum u xh = weight * dweight.
    dx = (dy - _per_channel(dbias / m, dy.ndim) - xh * _per_channel(dweight / m, dy.ndim))
    dx *= _per_channel(scale, dy.ndim)
    return dx, dweight, dbias
