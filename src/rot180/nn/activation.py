"""Activation layers ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``: no parameters.

Each caches what its backward rule reads (see :mod:`rot180.functional.activations`): the input
for ReLU and leaky ReLU, the output for sigmoid and tanh, whose derivatives are functions of
the output (``y(1-y)`` and ``1-y^2``).
"""

from __future__ import annotations

import numpy as np

from ..functional import _fused
from ..functional import _validation as C
from ..functional import activations as A
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh"]


class _Activation(Module):
    """An element-wise function; ``_cache`` holds the array its backward needs (the input or
    the output: either has the output's shape and dtype, which ``dy`` must have)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: np.ndarray | None = None

    def _input(self, x: object) -> np.ndarray:
        return C.check_input(x, type(self).__name__)

    def _cached(self, dy: object) -> np.ndarray:
        cache: np.ndarray = C.cached(self._cache, type(self).__name__)  # type: ignore[assignment]
        C.check_grad(dy, type(self).__name__, cache.shape, cache.dtype)
        return cache


class ReLU(_Activation):
    """``y = max(x, 0)``; ``dx = dy * [x > 0]``.

    One pass each way (threaded for large arrays, :mod:`rot180.functional._fused`). After a
    BatchNorm in a :class:`~rot180.nn.Sequential` the two run fused (see
    :mod:`rot180.nn.containers`): the BatchNorm's forward applies the ReLU, this layer's forward
    passes that output on and caches it (it has ``x``'s sign pattern), and this layer's
    backward may leave its mask to the BatchNorm's; called alone it works as always.

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._input(x)
        if x is self.__dict__.get("_rectified"):   # a BatchNorm's fused output: max(x, 0) = x
            self._cache = x
            return x
        y = _fused.relu_forward(x)
        self._cache = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x = self._cached(dy)
        if self.__dict__.get("_fold_mask", False):  # the BatchNorm before applies [x > 0]
            return dy
        return _fused.relu_backward(C.float_array(dy, "dy"), x)


class LeakyReLU(_Activation):
    """``y = x`` for ``x > 0``, else ``negative_slope * x``; as ``torch.nn.LeakyReLU``.

    Shape:
        - input: any; output: same
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = C.real(negative_slope, "negative_slope", "LeakyReLU")

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.leaky_relu(self._input(x), self.negative_slope)
        self._cache = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.leaky_relu_grad(dy, self._cached(dy), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))`` (overflow-free); ``dx = dy * y (1 - y)``.

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.sigmoid(self._input(x))
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.sigmoid_grad(dy, self._cached(dy))


class Tanh(_Activation):
    """``y = tanh x``; ``dx = dy * (1 - y^2)``.

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.tanh(self._input(x))
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.tanh_grad(dy, self._cached(dy))
