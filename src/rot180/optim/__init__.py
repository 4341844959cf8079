"""Optimizers and learning-rate schedulers that follow PyTorch's update rules step for step.

Layers only accumulate gradients; an optimizer owns its state (momentum buffers, Adam's moments)
and updates ``p.data`` in place, in the parameter's dtype. Imports only numpy and
:class:`rot180.nn.Parameter`.
"""

from .adam import Adam, AdamW
from .lr_scheduler import (
    CosineAnnealingLR,
    LinearWarmup,
    LRScheduler,
    SequentialLR,
    StepLR,
    warmup_cosine,
)
from .optimizer import Optimizer
from .sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "LRScheduler",
    "LinearWarmup",
    "Optimizer",
    "SequentialLR",
    "StepLR",
    "warmup_cosine",
]
