"""Containers: ``Sequential`` chains modules; ``Identity`` passes them through."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .module import Module

__all__ = ["Sequential", "Identity"]


class Identity(Module):
    """``y = x``; backward passes the delta through unchanged.

    It caches nothing, so one ``Identity`` may appear at several places of a model (every other
    module runs once per forward pass; see :mod:`rot180.nn._passes`).
    """

    _caches_forward = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return dy


class Sequential(Module):
    """Apply modules in order; backward applies their backward rules in reverse order.

    Children are named ``"0"``, ``"1"``, ... so ``state_dict`` keys read ``"0.weight"`` as in
    PyTorch.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(
                    f"Sequential expects Module instances, got {type(m).__name__} at position {i}."
                )
            setattr(self, str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, i: int) -> Module:
        mods = list(self._modules.values())
        return mods[i]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for m in self._modules.values():
            x = m.forward(x)
        return x

    def backward(self, dy: np.ndarray) -> np.ndarray:
        for m in reversed(self._modules.values()):
            dy = m.backward(dy)
        return dy

    def backward_params(self, dy: np.ndarray) -> None:
        """:meth:`backward` without the first module's input delta (see
        :meth:`Module.backward_params`): what a training step needs."""
        mods = list(self._modules.values())
        for m in reversed(mods[1:]):
            dy = m.backward(dy)
        if mods:
            mods[0].backward_params(dy)
