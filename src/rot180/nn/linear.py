"""``Linear``: the fully connected layer ``y = x W^T + b`` with PyTorch's names and layout."""

from __future__ import annotations

import numpy as np

from ..functional import _validation as C
from ..functional.linear import linear, linear_grad_bias, linear_grad_input, linear_grad_weight
from . import init
from .module import Module, Parameter

__all__ = ["Linear"]


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
        self.in_features = C.integer(in_features, "in_features", "Linear")
        self.out_features = C.integer(out_features, "out_features", "Linear")
        dt = C.float_dtype(dtype, "Linear")
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dt))
        self.bias = Parameter(np.empty(self.out_features, dt)) if C.flag(bias, "bias",
                                                                          "Linear") else None
        init.default_init_(self.weight, self.bias, rng=rng)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        w = self.weight.data
        # The last axis (in_features) is checked by `linear`, whose message says how to flatten.
        x = C.check_input(x, "Linear", dtype=w.dtype)
        y = linear(x, w, None if self.bias is None else self.bias.data)
        self._x = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = C.cached(self._x, "Linear")
        w = self.weight.data
        # shape=None: linear_grad_input and linear_grad_weight below check dy against w and the
        # cached x completely (last axis, then leading axes) before anything accumulates.
        dy = C.check_grad(dy, "Linear", None, w.dtype)
        dx = linear_grad_input(dy, w)
        self._accumulate_params(x, dy)
        return dx

    def backward_params(self, dy: np.ndarray) -> None:
        """The weight and bias gradients of :meth:`backward`, without ``linear_grad_input``."""
        x = C.cached(self._x, "Linear")
        dy = C.check_grad(dy, "Linear", (*x.shape[:-1], self.out_features),
                          self.weight.data.dtype)
        self._accumulate_params(x, dy)

    def _accumulate_params(self, x: np.ndarray, dy: np.ndarray) -> None:
        self.weight.grad += linear_grad_weight(x, dy)
        if self.bias is not None:
            self.bias.grad += linear_grad_bias(dy)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
