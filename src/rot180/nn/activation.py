"""Activation layers ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``: no parameters.

Each caches what its backward rule reads (see :mod:`rot180.functional.activations`): the input
for ReLU and leaky ReLU, the output for sigmoid and tanh, whose derivatives are functions of
the output (``y(1-y)`` and ``1-y^2``).
"""

from __future__ import annotations

import numpy as np

from ..functional import activations as A
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh"]


class _Activation(Module):
    """An element-wise function; ``_cache`` holds the array its backward needs."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: np.ndarray | None = None

    def _cached(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: run forward(x) first."
            )
        return self._cache


class ReLU(_Activation):
    """``y = max(x, 0)``; ``dx = dy * [x > 0]``.

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.relu(x)
        self._cache = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.relu_grad(dy, self._cached())


class LeakyReLU(_Activation):
    """``y = x`` for ``x > 0``, else ``negative_slope * x``; as ``torch.nn.LeakyReLU``.

    Shape:
        - input: any; output: same
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(
                negative_slope, int | float | np.integer | np.floating):
            raise TypeError(
                f"LeakyReLU: negative_slope must be a real number, got "
                f"{type(negative_slope).__name__} {negative_slope!r}."
            )
        self.negative_slope = float(negative_slope)

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.leaky_relu(x, self.negative_slope)
        self._cache = x
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.leaky_relu_grad(dy, self._cached(), self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))`` (overflow-free); ``dx = dy * y (1 - y)``.

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.sigmoid(x)
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.sigmoid_grad(dy, self._cached())


class Tanh(_Activation):
    """``y = tanh x``; ``dx = dy * (1 - y^2)``.

    Shape:
        - input: any; output: same
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = A.tanh(x)
        self._cache = y
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return A.tanh_grad(dy, self._cached())
