"""Activation layers ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``: no parameters.

Each caches what its backward rule reads (see :mod:`rot180.functional.activations`): the input
for ReLU and leaky ReLU, the output for sigmoid and tanh, whose derivatives are functions of
the output (``y(1-y)`` and ``1-y^2``).
"""

from __future__ import annotations

import numpy as np

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

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.relu(self._input(x))
        self._cache = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.relu_grad(dy, self._cached(dy))


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
