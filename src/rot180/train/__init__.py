"""Training: the loop, metrics and their pictures, and checkpoints (safetensors + JSON)."""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .trainer import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    evaluate_model,
)

__all__ = ["Checkpoint", "CheckpointError", "TrainConfig", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "evaluate_model", "load_checkpoint", "save_checkpoint"]
