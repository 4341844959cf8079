r"""Fully connected layer ``y = x W^T + b`` and its three gradients.

A linear layer is the convolution whose kernel covers the whole input: every output is wired to
every input (no cut connections, no weight sharing), so the rot180 rule degenerates to a plain
transpose. With ``dy = dC/dy``::

    dx = dy W            dW = dy^T x            db = sum_n dy[n]

(leading axes of ``x`` are flattened into one batch axis first). The layout is PyTorch's:
``W`` is ``(out_features, in_features)``. The products run as the engine's
(:func:`._products.matmul`: BLAS at one thread, large ones split over the engine's threads).
"""

from __future__ import annotations

import numpy as np

from . import _validation as V
from ._products import matmul

__all__ = ["linear", "linear_grad_input", "linear_grad_weight", "linear_grad_bias"]


def _check_features(a: np.ndarray, n: int, name: str, what: str, op: str) -> None:
    if a.ndim < 1 or a.shape[-1] != n:
        raise ValueError(
            f"{op}: expected {name} of shape (*, {n}) (last axis = {what}), got shape {a.shape}. "
            "Flatten image batches first, e.g. x.reshape(len(x), -1)."
        )


def _weight(w: object, op: str) -> np.ndarray:
    w = V.float_array(w, "w")
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(
            f"{op}: weight must be 2-D (out_features, in_features) with no zero-size axis, got "
            f"{w.ndim}-D shape {w.shape}."
        )
    return w


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``y = x W^T + b``, as ``torch.nn.functional.linear``.

    Shape:
        - x: ``(*, in_features)`` (any number of leading axes, including none)
        - w: ``(out_features, in_features)``
        - b: ``(out_features,)``
        - output: ``(*, out_features)``

    >>> import numpy as np
    >>> linear(np.array([1.0, 2.0]), np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([0.5, 0.0]))
    array([3.5, 2. ])
    """
    op = "linear"
    x = V.float_array(x, "x")
    w = _weight(w, op)
    if b is not None:
        b = V.float_array(b, "b")
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"{op}: bias must have shape (out_features,) = ({w.shape[0]},), got {b.shape}."
            )
    V.same_dtype(x=x, w=w, b=b)
    _check_features(x, w.shape[1], "x", "in_features", op)
    y = matmul(x, w.T)
    if b is not None:
        y += b
    return y


def linear_grad_input(dy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Input gradient of :func:`linear`: ``dx = dy W``.

    Shape:
        - dy: ``(*, out_features)``; w: ``(out_features, in_features)``
        - output: ``(*, in_features)``
    """
    op = "linear_grad_input"
    dy = V.float_array(dy, "dy")
    w = _weight(w, op)
    V.same_dtype(dy=dy, w=w)
    _check_features(dy, w.shape[0], "dy", "out_features", op)
    return matmul(dy, w)


def linear_grad_weight(x: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Weight gradient of :func:`linear`: ``dW = dy^T x`` summed over every leading axis.

    Shape:
        - x: ``(*, in_features)``; dy: ``(*, out_features)`` with the same leading axes
        - output: ``(out_features, in_features)``
    """
    op = "linear_grad_weight"
    x = V.float_array(x, "x")
    dy = V.float_array(dy, "dy")
    V.same_dtype(x=x, dy=dy)
    if x.ndim < 1 or dy.ndim != x.ndim or x.shape[:-1] != dy.shape[:-1]:
        raise ValueError(
            f"{op}: x {x.shape} and dy {dy.shape} must share their leading (batch) axes: "
            "dy must be the gradient of linear(x, w)."
        )
    return matmul(dy.reshape(-1, dy.shape[-1]).T, x.reshape(-1, x.shape[-1]))


def linear_grad_bias(dy: np.ndarray) -> np.ndarray:
    """Bias gradient of :func:`linear`: ``db = sum of dy`` over every leading axis.

    Shape:
        - dy: ``(*, out_features)``; output: ``(out_features,)``
    """
    dy = V.float_array(dy, "dy")
    if dy.ndim < 1 or dy.shape[-1] == 0:
        raise ValueError(
            f"linear_grad_bias: expected dy of shape (*, out_features), got {dy.shape}."
        )
    return dy.reshape(-1, dy.shape[-1]).sum(axis=0)
