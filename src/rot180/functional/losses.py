r"""Softmax, cross-entropy and mean squared error, each with its gradient.

Softmax cross-entropy
---------------------
For logits ``x`` (one row per sample) and a target distribution ``t`` (one-hot for a class
index ``y``, smoothed to ``t = (1 - eps) e(y) + eps / C`` with label smoothing ``eps``)::

    log f(x)_c = x_c - log sum_j exp(x_j)          (log-softmax; computed after subtracting
                                                     max_j x_j, so exp never overflows)
    L          = -sum_c t_c log f(x)_c

Since ``sum_c t_c = 1``, ``dL/dx_c = f(x)_c - t_c``: the softmax minus the target, the
``f(x) - e(y)`` of the source article. Averaging over ``N`` samples divides it by ``N``. This is
``torch.nn.CrossEntropyLoss(label_smoothing=eps)`` (no class weights, no ignored index).

Mean squared error
------------------
``L = mean((o - t)^2)`` over every element, so ``dL/do = 2 (o - t) / numel``.

Bad values
----------
Targets (class indices or probabilities) are checked in full: a NaN or out-of-range label is a
data error that would otherwise surface as a NaN loss far from its cause. Logits and outputs are
not scanned: a NaN or infinity there means training diverged, and it propagates to a NaN loss
(without floating-point warnings) for the trainer to report with the step and learning rate.
"""

from __future__ import annotations

import numpy as np

from . import _validation as V

__all__ = [
    "log_softmax",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "mse",
    "mse_grad",
]

REDUCTIONS = ("mean", "sum", "none")


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` along ``axis``, stable for any magnitude of ``x``.

    Shape:
        - x: any; output: same shape and dtype

    >>> import numpy as np
    >>> np.exp(log_softmax(np.array([1000.0, 1000.0])))
    array([0.5, 0.5])
    """
    x = _nonempty(x, axis, "log_softmax")
    with np.errstate(invalid="ignore", over="ignore"):  # inf logits give NaN, as PyTorch
        shifted = x - x.max(axis=axis, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``exp(x) / sum(exp(x))`` along ``axis``, computed after subtracting the maximum.

    Shape:
        - x: any; output: same shape and dtype, summing to 1 along ``axis``
    """
    x = _nonempty(x, axis, "softmax")
    with np.errstate(invalid="ignore", over="ignore"):  # inf logits give NaN, as PyTorch
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


def _nonempty(x: object, axis: object, op: str) -> np.ndarray:
    x = V.float_array(x, "x")
    axis = V.axis_arg(axis, max(x.ndim, 1), op)
    if x.ndim == 0 or x.shape[axis] == 0:
        raise ValueError(f"{op}: expected x with at least one entry along axis {axis}, got "
                         f"shape {x.shape}.")
    return x


def _reduction(reduction: str, op: str) -> str:
    return V.option(reduction, REDUCTIONS, "reduction", op)


def _nonempty_mean(red: str, n: int, shape: tuple[int, ...], op: str) -> None:
    if red == "mean" and n == 0:
        raise ValueError(f"{op}: the mean over an empty batch is undefined, got shape {shape}. "
                         "Pass at least one sample, or reduction='sum'.")


def _smoothing(label_smoothing: float, op: str) -> float:
    return V.real(label_smoothing, "label_smoothing", op, low=0, high=1)


def _target_distribution(logits: object, targets: object, label_smoothing: float, red: str,
                         op: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate; return the logits and the (smoothed) target distribution ``t``, both (N, C)."""
    x = V.float_array(logits, "logits")
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(
            f"{op}: expected logits of shape (N, C), got {x.ndim}-D shape {x.shape}. "
            "For a single sample use logits[None]."
        )
    n, c = x.shape
    eps = _smoothing(label_smoothing, op)
    try:
        t = np.asarray(targets)
    except ValueError:  # ragged nesting
        raise ValueError(f"{op}: targets must be a rectangular array, got a ragged "
                         f"{type(targets).__name__}. Pass a numpy array.") from None
    _nonempty_mean(red, n, x.shape, op)
    if np.issubdtype(t.dtype, np.integer):
        if t.shape != (n,):
            raise ValueError(
                f"{op}: class-index targets must have shape (N,) = ({n},) to match logits "
                f"{x.shape}, got {t.shape}."
            )
        if n and (t.min() < 0 or t.max() >= c):
            bad = t[(t < 0) | (t >= c)]
            raise ValueError(
                f"{op}: class-index targets must lie in 0..{c - 1} (C = {c} logits per row), "
                f"got {bad[:5].tolist()}. Check the labels or the number of classes."
            )
        dist = np.zeros_like(x)
        dist[np.arange(n), t] = 1
    elif np.issubdtype(t.dtype, np.floating):
        if t.shape != x.shape:
            raise ValueError(
                f"{op}: probability targets must have the logits' shape {x.shape}, got {t.shape}. "
                "Pass class indices as an integer array of shape (N,) instead."
            )
        V.same_dtype(logits=x, targets=t)
        V.all_finite(t, "probability targets", op)
        dist = t.copy()
    else:
        raise TypeError(
            f"{op}: targets must be integer class indices (N,) or float probabilities (N, C), "
            f"got dtype {t.dtype}. Convert labels with targets.astype(np.int64)."
        )
    if eps:
        dist *= 1 - eps
        dist += eps / c
    return x, dist


def softmax_cross_entropy(logits: np.ndarray, targets: np.ndarray, *,
                          label_smoothing: float = 0.0, reduction: str = "mean"
                          ) -> np.ndarray:
    """Cross-entropy of softmax(logits) against class indices or probabilities.

    ``L_n = -sum_c t[n, c] log_softmax(logits)[n, c]`` with ``t`` the one-hot (or given)
    target smoothed to ``(1 - eps) t + eps / C``; as ``torch.nn.functional.cross_entropy``.

    Args:
        logits: unnormalised scores, float32 or float64.
        targets: integer class indices in ``0..C-1``, or float probabilities (rows summing to 1)
            of the logits' dtype.
        label_smoothing: ``eps`` in ``[0, 1]``.
        reduction: ``"mean"`` (over samples), ``"sum"`` or ``"none"`` (one loss per sample).

    Returns:
        A 0-d array (``"mean"``, ``"sum"``) or ``(N,)`` array (``"none"``) of the logits' dtype.

    Shape:
        - logits: ``(N, C)``
        - targets: ``(N,)`` integers or ``(N, C)`` floats
        - output: ``()`` or ``(N,)``
    """
    op = "softmax_cross_entropy"
    red = _reduction(reduction, op)
    x, t = _target_distribution(logits, targets, label_smoothing, red, op)
    with np.errstate(invalid="ignore"):  # 0 * -inf for a -inf logit: NaN, not a warning
        per_sample = -(t * log_softmax(x, axis=1)).sum(axis=1)
    if red == "none":
        return per_sample
    return np.asarray(per_sample.mean() if red == "mean" else per_sample.sum())


def softmax_cross_entropy_grad(logits: np.ndarray, targets: np.ndarray, *,
                               label_smoothing: float = 0.0, reduction: str = "mean"
                               ) -> np.ndarray:
    """Gradient of :func:`softmax_cross_entropy` w.r.t. the logits: ``(softmax - t) / N``.

    The ``/ N`` is for ``reduction="mean"``; ``"sum"`` omits it. For ``"none"`` row ``n`` is
    the gradient of the sample's own loss ``L_n`` (which depends on row ``n`` only).

    Shape:
        - logits: ``(N, C)``; targets: ``(N,)`` integers or ``(N, C)`` floats
        - output: ``(N, C)``, the logits' dtype
    """
    op = "softmax_cross_entropy_grad"
    red = _reduction(reduction, op)
    x, t = _target_distribution(logits, targets, label_smoothing, red, op)
    g = softmax(x, axis=1) - t
    if red == "mean" and len(x):
        g /= len(x)
    return g


def _pair(outputs: object, targets: object, red: str, op: str
          ) -> tuple[np.ndarray, np.ndarray]:
    o = V.float_array(outputs, "outputs")
    t = V.float_array(targets, "targets")
    if o.shape != t.shape:
        raise ValueError(
            f"{op}: outputs {o.shape} and targets {t.shape} must have the same shape "
            "(no broadcasting, to catch an (N,) vs (N, 1) mix-up)."
        )
    V.same_dtype(outputs=o, targets=t)
    _nonempty_mean(red, o.size, o.shape, op)
    V.all_finite(t, "targets", op)
    return o, t


def mse(outputs: np.ndarray, targets: np.ndarray, *, reduction: str = "mean") -> np.ndarray:
    """Squared error ``(o - t)^2``, averaged over every element by default (torch ``MSELoss``).

    Shape:
        - outputs, targets: any, equal shapes
        - output: ``()`` for ``"mean"``/``"sum"``, the inputs' shape for ``"none"``
    """
    op = "mse"
    red = _reduction(reduction, op)
    o, t = _pair(outputs, targets, red, op)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverged output gives inf or NaN
        sq = (o - t) ** 2
    if red == "none":
        return sq
    return np.asarray(sq.mean() if red == "mean" else sq.sum())


def mse_grad(outputs: np.ndarray, targets: np.ndarray, *, reduction: str = "mean"
             ) -> np.ndarray:
    """Gradient of :func:`mse` w.r.t. the outputs: ``2 (o - t) / numel`` (``"mean"``).

    ``"sum"`` and ``"none"`` (element-wise losses) give ``2 (o - t)``.

    Shape:
        - outputs, targets: any, equal shapes; output: the same shape
    """
    op = "mse_grad"
    red = _reduction(reduction, op)
    o, t = _pair(outputs, targets, red, op)
    with np.errstate(over="ignore", invalid="ignore"):
        g = 2 * (o - t)
    if red == "mean" and o.size:
        g /= o.size
    return g
