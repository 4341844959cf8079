"""What an epoch or a run ends with: the epoch's figures (:class:`EpochResult`), the two ways a
run stops early (:class:`TrainingDiverged`, :class:`TrainingInterrupted`), and the generators a
model draws from (saved in every checkpoint). Re-exported by :mod:`rot180.train.trainer`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..nn import Module
from . import metrics as M

__all__ = ["EpochResult", "TrainingDiverged", "TrainingInterrupted", "generators"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run; a resumable checkpoint was written first."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    images_per_s: float = field(default=0.0)

    def row(self) -> dict:
        return {c: getattr(self, c) for c in M.METRIC_COLUMNS}


def generators(model: Module) -> dict[str, np.random.Generator]:
    """Every Generator a module draws from (dropout masks), by module name."""
    return {name: mod.rng for name, mod in model.named_modules()
            if isinstance(getattr(mod, "rng", None), np.random.Generator)}
