"""Scoring a model on a data set, and the progress bar of the training loop."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import Dataset
from ..nn import Module, SoftmaxCrossEntropy

__all__ = ["evaluate_model", "progress"]


def evaluate_model(model: Module, data: Dataset, loss: SoftmaxCrossEntropy | None = None, *,
                   batch: int = 500, dtype: np.dtype | type = np.float32
                   ) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and predicted classes of ``model`` in eval mode on ``data``."""
    loss = loss or SoftmaxCrossEntropy()
    model.eval()
    total, preds = 0.0, []
    for x, y in data.loader(batch_size=batch, dtype=dtype):
        logits = model.forward(x)
        total += loss.forward(logits, y) * len(y)
        preds.append(np.argmax(logits, axis=1))
    pred = np.concatenate(preds)
    return total / len(data), float(np.mean(pred == data.labels)), pred


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)
