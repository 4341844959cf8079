"""Containers: ``Sequential`` chains modules; ``Identity`` passes them through.

BatchNorm + ReLU fusion. Where a ``Sequential`` holds a BatchNorm layer directly followed by a
``ReLU``, it runs the pair as one forward pass over memory and one backward (two passes instead
of three: the ReLU's mask is folded into the BatchNorm rule, derived in
:mod:`rot180.functional._fused`). Both modules stay, with their indices and ``state_dict``
names, and each is still called through its own (tracked) ``forward`` / ``backward``, so the
checks of :mod:`rot180.nn._passes` (a module used twice, a stale cache) hold as for any pair:

* forward: the BatchNorm runs with ``_fuse_relu`` set (it returns ``max(y, 0)`` and caches it);
  the ReLU is handed that very array as ``_rectified`` and passes it on (``max(z, 0) = z``),
  caching it for its own backward (it has the pre-ReLU sign pattern);
* backward: the ReLU's backward runs with ``_fold_mask`` set (it checks its cache and ``dy``,
  and returns ``dy`` unmasked), then the BatchNorm's with ``_fold_relu`` set (it applies the
  mask of its cached output). The pair is folded only when the BatchNorm's cached output is the
  ReLU's cached input (both from the same fused forward); otherwise each runs as usual.
* the pair's output is read-only: it is the mask the backward folds in, so changing it in place
  would change the gradients (the unfused pair caches the ReLU's input instead).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .activation import ReLU
from .module import Module
from .normalization import _BatchNorm

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
        mods = list(self._modules.values())
        i = 0
        while i < len(mods):
            m = mods[i]
            if i + 1 < len(mods) and _fusable(m, mods[i + 1]):
                x = _fused_forward(m, mods[i + 1], x)  # type: ignore[arg-type]
                i += 2
            else:
                x = m.forward(x)
                i += 1
        return x

    def _backward(self, dy: np.ndarray, stop: int) -> np.ndarray:
        """Backward through modules ``len - 1`` down to ``stop``, fusing folded pairs."""
        mods = list(self._modules.values())
        i = len(mods) - 1
        while i >= stop:
            m = mods[i]
            if i - 1 >= stop and _folded(mods[i - 1], m):
                dy = _fused_backward(mods[i - 1], m, dy)  # type: ignore[arg-type]
                i -= 2
            else:
                dy = m.backward(dy)
                i -= 1
        return dy

    def backward(self, dy: np.ndarray) -> np.ndarray:
        return self._backward(dy, 0)

    def backward_params(self, dy: np.ndarray) -> None:
        """:meth:`backward` without the first module's input delta (see
        :meth:`Module.backward_params`): what a training step needs."""
        mods = list(self._modules.values())
        if not mods:
            return
        if len(mods) >= 2 and _folded(mods[0], mods[1]):
            self._backward(dy, 0)       # a BatchNorm's input delta costs no extra pass
            return
        dy = self._backward(dy, 1)
        mods[0].backward_params(dy)


def _fusable(a: Module, b: Module) -> bool:
    return isinstance(a, _BatchNorm) and type(b) is ReLU


def _fused_forward(bn: _BatchNorm, relu: ReLU, x: np.ndarray) -> np.ndarray:
    object.__setattr__(bn, "_fuse_relu", True)
    try:
        z = bn.forward(x)
    finally:
        object.__setattr__(bn, "_fuse_relu", False)
    object.__setattr__(relu, "_rectified", z)
    try:
        y = relu.forward(z)
    finally:
        object.__setattr__(relu, "_rectified", None)
    # The pair's output is also the mask its backward folds in: changed in place (``y += s``)
    # it would change the gradients, where the unfused pair's would not. Read-only, such a
    # change raises instead (numpy's "assignment destination is read-only"); ``y.copy()`` or
    # ``y + s`` work as always.
    if y is z:
        y.flags.writeable = False
    return y


def _folded(a: Module, b: Module) -> bool:
    """Whether ``a``, ``b`` last ran as a fused pair (the BatchNorm's output is the ReLU's
    cached input)."""
    if not _fusable(a, b):
        return False
    cache = a.__dict__.get("_cache")
    return cache is not None and cache[4] is not None and cache[4] is b.__dict__.get("_cache")


def _fused_backward(bn: _BatchNorm, relu: ReLU, dy: np.ndarray) -> np.ndarray:
    object.__setattr__(relu, "_fold_mask", True)
    try:
        dz = relu.backward(dy)
    finally:
        object.__setattr__(relu, "_fold_mask", False)
    object.__setattr__(bn, "_fold_relu", True)
    try:
        return bn.backward(dz)
    finally:
        object.__setattr__(bn, "_fold_relu", False)
