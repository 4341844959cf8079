"""Loss modules: ``forward(outputs, targets) -> float`` then ``backward() -> d_outputs``.

A loss ends the backward chain, so its ``backward`` takes no delta: it returns ``dL/d_outputs``,
which is handed to the network's ``backward``. The math lives in
:mod:`rot180.functional.losses`.
"""

from __future__ import annotations

import numpy as np

from ..functional.losses import mse, mse_grad, softmax_cross_entropy, softmax_cross_entropy_grad

__all__ = ["Loss", "SoftmaxCrossEntropy", "MSELoss"]


class Loss:
    """Base of the loss modules: caches ``(outputs, targets)`` in ``forward`` for ``backward``."""

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'mean' or 'sum' (forward returns one "
                f"float), got {reduction!r}. For per-sample losses use rot180.functional.losses."
            )
        self.reduction = reduction
        self._cache: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return self.forward(outputs, targets)

    def _cached(self) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: compute the loss first."
            )
        return self._cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, as ``torch.nn.CrossEntropyLoss``.

    ``backward()`` returns ``(softmax(outputs) - t) / N`` (``t`` the one-hot or smoothed
    target): the article's ``f(x) - e(y)``, averaged over the batch.

    Args:
        label_smoothing: ``eps`` in ``[0, 1]``; the target becomes ``(1 - eps) e(y) + eps / C``.
        reduction: ``"mean"`` over samples (default) or ``"sum"``.

    Shape:
        - outputs: ``(N, C)`` logits
        - targets: ``(N,)`` integer class indices in ``0..C-1`` or ``(N, C)`` probabilities
        - backward: ``(N, C)``
    """

    def __init__(self, label_smoothing: float = 0.0, *, reduction: str = "mean") -> None:
        super().__init__(reduction)
        # Validated now rather than at the first forward.
        softmax_cross_entropy(np.zeros((1, 1)), np.zeros(1, np.int64),
                              label_smoothing=label_smoothing)
        self.label_smoothing = float(label_smoothing)

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        loss = softmax_cross_entropy(outputs, targets, label_smoothing=self.label_smoothing,
                                     reduction=self.reduction)
        self._cache = (outputs, targets)
        return float(loss)

    def backward(self) -> np.ndarray:
        outputs, targets = self._cached()
        return softmax_cross_entropy_grad(outputs, targets, label_smoothing=self.label_smoothing,
                                          reduction=self.reduction)

    def __repr__(self) -> str:
        return (f"SoftmaxCrossEntropy(label_smoothing={self.label_smoothing}, "
                f"reduction={self.reduction!r})")


class MSELoss(Loss):
    """Mean squared error over every element, as ``torch.nn.MSELoss``.

    ``backward()`` returns ``2 (outputs - targets) / numel`` (``"sum"``: without ``/ numel``).

    Shape:
        - outputs, targets: any shape, equal, same dtype; backward: the same shape
    """

    def forward(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        loss = mse(outputs, targets, reduction=self.reduction)
        self._cache = (outputs, targets)
        return float(loss)

    def backward(self) -> np.ndarray:
        outputs, targets = self._cached()
        return mse_grad(outputs, targets, reduction=self.reduction)
