"""``Residual``: ``y = block(x) + shortcut(x)``, the skip connection of a ResNet."""

from __future__ import annotations

import numpy as np

from .module import Module

__all__ = ["Residual"]


class Residual(Module):
    """Add a block's output to a shortcut of its input: ``y = block(x) + shortcut(x)``.

    A module may appear once per forward pass (its cache has one slot): ``block is shortcut``
    is refused here, and a module shared between the two paths, or with the rest of the model,
    at the first forward (see :mod:`rot180.nn._passes`).

    ``x`` feeds both paths, so its delta is the sum of the two paths' deltas:
    ``dx = block.backward(dy) + shortcut.backward(dy)`` (``dy`` itself for the identity
    shortcut). Parameter gradients accumulate inside each path.

    ``state_dict`` names are ``"block.*"`` and ``"shortcut.*"`` (no ``"shortcut.*"`` entries for
    the identity shortcut), so a PyTorch twin must name its two submodules ``block`` and
    ``shortcut``.

    Args:
        block: the residual branch, any :class:`Module` (e.g. a ``Sequential`` of conv, BN,
            ReLU, conv, BN).
        shortcut: ``None`` for the identity, or a module (e.g. a strided 1x1 conv and BN) that
            matches the block's output shape.

    Shape:
        - input: what ``block`` accepts; output: ``block``'s output (equal to the shortcut's)
    """

    def __init__(self, block: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        for name, m in (("block", block), ("shortcut", shortcut)):
            if m is not None and not isinstance(m, Module):
                raise TypeError(f"Residual: {name} must be a Module, got {type(m).__name__}.")
        if shortcut is block:
            raise ValueError(
                "Residual: block and shortcut must be different module instances (each caches "
                "its own forward input for backward). Give the shortcut its own module "
                "(copy.deepcopy(block)), or share weights by sharing Parameters."
            )
        self.block = block
        self.shortcut = shortcut

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = self.block.forward(x)
        s = x if self.shortcut is None else self.shortcut.forward(x)
        if np.shape(y) != np.shape(s):
            raise ValueError(
                f"Residual: block output shape {np.shape(y)} differs from shortcut output shape "
                f"{np.shape(s)}. Give the block a shortcut module (e.g. a 1x1 conv with the "
                "block's stride) that maps the input to the block's output shape."
            )
        return y + s

    def backward(self, dy: np.ndarray) -> np.ndarray:
        dx = self.block.backward(dy)
        return dx + (dy if self.shortcut is None else self.shortcut.backward(dy))
