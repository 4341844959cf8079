"""``Linear``: the fully connected layer ``y = x W^T + b`` with PyTorch's names and layout."""

from __future__ import annotations

import numpy as np

from ..functional.linear import linear, linear_grad_bias, linear_grad_input, linear_grad_weight
from . import init
from .module import Module, Parameter

__all__ = ["Linear"]


def _float_dtype(dtype: object, layer: str) -> np.dtype:
    dt = np.dtype(dtype)  # type: ignore[call-overload]
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{layer}: dtype must be float32 or float64, got {dt}.")
    return dt


def _features(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}.")
    return int(value)


class Linear(Module):
    r"""Fully connected layer ``y = x W^T + b``, as ``torch.nn.Linear``.

    Backward (see :mod:`rot180.functional.linear`): ``dx = dy W``, ``dW += dy^T x``,
    ``db += sum dy`` over every leading axis.

    Args:
        in_features, out_features: sizes of each input and output sample.
        bias: learn an additive bias.
        dtype: float32 (default) or float64.
        rng: Generator or int seed for PyTorch's default initialisation
            (``U(-1/sqrt(in_features), 1/sqrt(in_features))`` for weight, then bias); a seed
            reproduces the weights bit for bit.

    Parameters:
        weight: ``(out_features, in_features)``; bias: ``(out_features,)`` (absent when
        ``bias=False``, as in PyTorch's ``state_dict``).

    Shape:
        - input: ``(*, in_features)``; output: ``(*, out_features)``
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype: type | np.dtype = np.float32,
                 rng: np.random.Generator | int | None = None) -> None:
        super().__init__()
        self.in_features = _features(in_features, "in_features")
        self.out_features = _features(out_features, "out_features")
        dt = _float_dtype(dtype, "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dt))
        self.bias = Parameter(np.empty(self.out_features, dt)) if bias else None
        init.default_init_(self.weight, self.bias, rng=rng)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        w = self.weight.data
        if isinstance(x, np.ndarray) and x.dtype != w.dtype and x.dtype.kind == "f":
            raise TypeError(
                f"Linear: input dtype {x.dtype} does not match the layer's {w.dtype}. Cast the "
                f"input with x.astype(np.{w.dtype}) or the layer with .astype(np.{x.dtype})."
            )
        y = linear(x, w, None if self.bias is None else self.bias.data)
        self._x = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward: run forward(x) first.")
        w = self.weight.data
        dx = linear_grad_input(dy, w)
        self.weight.grad += linear_grad_weight(self._x, dy)
        if self.bias is not None:
            self.bias.grad += linear_grad_bias(dy)
        return dx

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
