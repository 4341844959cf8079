r"""Element-wise activations and their backward rules.

Each backward rule is the chain rule with the local derivative ``f'``: ``dx = dy * f'(.)``,
written from whichever of the input ``x`` or the output ``y`` gives it most cheaply:

============  =============================  ==================================
function      forward                        ``f'`` (backward reads)
============  =============================  ==================================
relu          ``max(x, 0)``                  ``[x > 0]`` (``x`` or ``y``)
leaky_relu    ``x`` if ``x > 0`` else ``ax``  ``1`` if ``x > 0`` else ``a`` (``x``)
sigmoid       ``1 / (1 + e^{-x})``           ``y (1 - y)`` (``y``)
tanh          ``tanh x``                     ``1 - y^2`` (``y``)
============  =============================  ==================================

At ``x = 0`` the subgradient is PyTorch's: ``0`` for ReLU, ``a`` for leaky ReLU.
"""

from __future__ import annotations

import numpy as np

from . import _validation as V

__all__ = [
    "relu",
    "relu_grad",
    "leaky_relu",
    "leaky_relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "tanh",
    "tanh_grad",
]


def _pair(dy: np.ndarray, a: np.ndarray, name: str, op: str) -> tuple[np.ndarray, np.ndarray]:
    dy = V.float_array(dy, "dy")
    a = V.float_array(a, name)
    V.same_dtype(dy=dy, **{name: a})
    if dy.shape != a.shape:
        raise ValueError(
            f"{op}: dy and {name} must have the same shape, got {dy.shape} and {a.shape}. Pass "
            f"the forward pass's {name}."
        )
    return dy, a


def relu(x: np.ndarray) -> np.ndarray:
    """``max(x, 0)`` element-wise (NaN propagates, as PyTorch).

    Shape:
        - x: any; output: same
    """
    x = V.float_array(x, "x")
    return np.maximum(x, x.dtype.type(0))


def relu_grad(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``dy * [x > 0]``; the forward output ``y`` may be passed as ``x`` (same sign pattern).

    Shape:
        - dy, x: same shape; output: same
    """
    dy, x = _pair(dy, x, "x", "relu_grad")
    return relu_grad_into(dy, x, np.empty(dy.shape, dy.dtype))


def relu_grad_into(dy: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = dy`` where ``x`` is not ``<= 0`` (so a NaN input passes the gradient, as in
    PyTorch's ``threshold_backward``), else 0: a selection, so an infinite or NaN ``dy`` where
    ``x <= 0`` gives 0, not ``0 * inf``. Multiplying by the mask is ~12x faster than
    ``np.where`` (measured: 0.09 ms vs 1.1 ms for (64, 6, 28, 28) float32) and is the same
    selection for a finite ``dy``; a non-finite one takes ``np.copyto`` with ``where``."""
    keep = np.empty(np.shape(x), bool)          # an array also for 0-d x (ufuncs give scalars)
    np.less_equal(x, 0, out=keep)
    np.logical_not(keep, out=keep)
    if dy.size == 0 or (np.isfinite(dy.min()) and np.isfinite(dy.max())):
        return np.multiply(dy, keep, out=out)
    out[...] = 0
    np.copyto(out, dy, where=keep)
    return out


def _slope(negative_slope: object, op: str) -> float:
    return V.real(negative_slope, "negative_slope", op)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """``x`` where ``x > 0``, else ``negative_slope * x``.

    Shape:
        - x: any; output: same
    """
    x = V.float_array(x, "x")
    a = x.dtype.type(_slope(negative_slope, "leaky_relu"))
    return np.where(x > 0, x, x * a)


def leaky_relu_grad(dy: np.ndarray, x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """``dy`` where ``x > 0``, else ``negative_slope * dy``. Needs the input ``x``: with a
    negative slope the output has ``x``'s sign only when ``negative_slope > 0``.

    Shape:
        - dy, x: same shape; output: same
    """
    dy, x = _pair(dy, x, "x", "leaky_relu_grad")
    a = dy.dtype.type(_slope(negative_slope, "leaky_relu_grad"))
    return np.where(x > 0, dy, dy * a)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function ``1 / (1 + exp(-x))``, without overflow for any ``x``.

    With ``e = exp(-|x|) <= 1``: ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for
    ``x < 0``; ``exp`` never sees a positive argument.

    Shape:
        - x: any; output: same
    """
    x = V.float_array(x, "x")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_grad(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy * y * (1 - y)`` from the forward **output** ``y = sigmoid(x)``.

    Shape:
        - dy, y: same shape; output: same
    """
    dy, y = _pair(dy, y, "y", "sigmoid_grad")
    return dy * (1 - y) * y


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent.

    Shape:
        - x: any; output: same
    """
    return np.tanh(V.float_array(x, "x"))


def tanh_grad(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``dy * (1 - y^2)`` from the forward **output** ``y = tanh(x)``.

    Shape:
        - dy, y: same shape; output: same
    """
    dy, y = _pair(dy, y, "y", "tanh_grad")
    return dy * (1 - y * y)
