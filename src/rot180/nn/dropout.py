"""``Dropout``: inverted dropout with a mask drawn from an explicit numpy ``Generator``."""

from __future__ import annotations

import numpy as np

from ..functional import _validation as C
from .init import RNG, make_rng
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    survivors by ``1 / (1 - p)``, so the expected output equals the input; identity in eval mode.

    ``y = x * mask`` with ``mask = [u >= p] / (1 - p)``, ``u ~ U[0, 1)`` drawn from ``rng`` in
    the input's dtype; backward is ``dx = dy * mask`` (the same mask). The generator is the
    layer's own, so a seed reproduces every mask of a run (PyTorch's masks come from its own
    generator and cannot be matched).

    Args:
        p: probability of zeroing an element, in ``[0, 1]``.
        rng: a numpy ``Generator`` (used as is, shared if you share it), an int seed, or
            ``None`` for fresh entropy (not reproducible).

    Shape:
        - input: any; output: same
    """

    def __init__(self, p: float = 0.5, *, rng: RNG = None) -> None:
        super().__init__()
        self.p = C.real(p, "p", "Dropout", low=0, high=1, invalid="dropout probability")
        self.rng = make_rng(rng)
        self._mask: np.ndarray | None = None
        self._out: tuple[tuple[int, ...], np.dtype] | None = None  # shape, dtype of the output

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = C.check_input(x, "Dropout")
        self._out = (x.shape, x.dtype)
        if not self.training or self.p == 0:
            self._mask = None
            return x
        if self.p == 1:
            self._mask = np.zeros_like(x)
        else:
            keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
            self._mask = keep * x.dtype.type(1 / (1 - self.p))
        return x * self._mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        shape, dtype = C.cached(self._out, "Dropout")  # type: ignore[misc]
        dy = C.check_grad(dy, "Dropout", shape, dtype)
        return dy if self._mask is None else dy * self._mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
