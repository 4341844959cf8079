"""The settings of a training run, checked once, and the optimizer and schedule they make."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .. import optim
from ..functional import _validation as V
from ..nn import Module

__all__ = ["OPTIMIZERS", "SCHEDULES", "TrainConfig", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine")


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in every checkpoint)."""

    model: str = "lenet5"
    data: str = "mnist5k"
    data_root: str | None = None
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.0
    augment: bool = True
    download: bool = False
    seed: int = 0
    dtype: str = "float32"
    val_fraction: float = 0.1
    sync_bn: bool = False    # several ranks: BatchNorm statistics over the global batch
    out: str | None = None   # None: runs/<model>-<data>, or the next free -2, -3, ...

    def validate(self) -> None:
        """Check every setting with :mod:`rot180.functional._validation` (numpy ints and floats
        are taken, bools and strings refused) and store it as a Python int / float / str; a
        refusal is a ``ValueError`` in the command line's terms."""
        def bad(name: str, expected: str) -> ValueError:   # in the command line's terms
            option = "--" + name.replace("_", "-")
            return ValueError(f"{option} must be {expected}, got {getattr(self, name)!r} "
                              f"(TrainConfig.{name}). Pass {option} with such a value.")

        def check(name: str, expected: str, test: Callable[[object, str], object]) -> None:
            try:
                setattr(self, name, test(getattr(self, name), name))
            except (TypeError, ValueError):
                raise bad(name, expected) from None

        check("epochs", "an int >= 1", V.integer)
        check("batch_size", "an int >= 1", V.integer)
        check("lr", "a finite number > 0", lambda v, n: V.real(v, n, low=0, low_open=True))
        check("optimizer", f"one of {OPTIMIZERS}", lambda v, n: V.option(v, OPTIMIZERS, n))
        check("schedule", f"one of {SCHEDULES}", lambda v, n: V.option(v, SCHEDULES, n))
        check("dtype", "'float32' or 'float64'",
              lambda v, n: V.option(v, ("float32", "float64"), n))
        check("weight_decay", "a finite number >= 0", lambda v, n: V.real(v, n, low=0))
        check("label_smoothing", "in [0, 1)",
              lambda v, n: V.real(v, n, low=0, high=1, high_open=True))
        check("val_fraction", "in (0, 0.5]",
              lambda v, n: V.real(v, n, low=0, low_open=True, high=0.5))
        check("warmup_epochs", "a finite number >= 0", lambda v, n: V.real(v, n, low=0))
        if self.schedule != "none" and self.warmup_epochs >= self.epochs:
            raise bad("warmup_epochs", f"smaller than --epochs ({self.epochs}) for a schedule")
        check("seed", "an int >= 0", lambda v, n: V.integer(v, n, low=0))
        check("sync_bn", "True or False", V.flag)


def make_optimizer(cfg: TrainConfig, model: Module) -> optim.Optimizer:
    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        return optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(cfg: TrainConfig, opt: optim.Optimizer, steps_per_epoch: int,
                   start_epoch: int = 0):
    """The schedule of the segment from ``start_epoch`` to ``cfg.epochs`` (0: the whole run, with
    warm-up; later: a warm restart over the added epochs, without warm-up)."""
    total = (cfg.epochs - start_epoch) * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch)) if start_epoch == 0 else 0
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "step":
        return optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.1)
    return optim.lr_scheduler.warmup_cosine(opt, warmup_steps=warm, total_steps=total)
