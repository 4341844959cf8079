"""The training loop: forward, loss, the hand-derived backward, optimizer step; every epoch logged,
plotted and checkpointed, and resumable bit for bit.

Exact resumption rests on three facts: every random draw (shuffling, augmentation, dropout) comes
from a numpy ``Generator`` whose state is saved in the checkpoint; the optimizer and scheduler
state are saved with it; and the computation is deterministic for a given machine and thread
count. A run resumed from the checkpoint at the end of epoch ``e`` therefore replays epochs
``e+1, ...`` exactly as the uninterrupted run computed them.

Faults: SIGINT (Ctrl-C) and SIGTERM stop the run after the current step and write
``last.safetensors`` *mid-epoch*: it also records the generator state at the start of the epoch,
the number of batches done and the running sums, so ``--resume`` replays the epoch's shuffle,
skips the batches already seen and continues with the very same numbers. A NaN or infinite loss
stops the run (:class:`TrainingDiverged`) without overwriting the last good checkpoint. Every
checkpoint is written atomically, so a ``kill -9`` or a full disk never damages the previous one.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import optim
from ..data import Dataset, load_dataset
from ..models import build_model
from ..nn import Module, SoftmaxCrossEntropy
from . import metrics as M
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "TrainingInterrupted", "evaluate_model"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run; a resumable checkpoint was written first."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


# Fields that may differ between a run and its resumption: where files go, and how they are read.
_RESUME_FREE = ("out", "data_root", "download")


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
    out: str = "runs/lenet5"

    def validate(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"{name} must be {expected}, got {getattr(self, name)!r}.")

        if self.epochs < 1:
            raise bad("epochs", "an int >= 1")
        if self.batch_size < 1:
            raise bad("batch_size", "an int >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "a finite number > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {SCHEDULES}")
        if self.dtype not in ("float32", "float64"):
            raise bad("dtype", "'float32' or 'float64'")
        if self.weight_decay < 0:
            raise bad("weight_decay", ">= 0")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "in [0, 1)")


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


def _make_optimizer(cfg: TrainConfig, model: Module) -> optim.Optimizer:
    params = list(model.parameters())
    if cfg.optimizer == "sgd":
        return optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _make_schedule(cfg: TrainConfig, opt: optim.Optimizer, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "none":
        return None
    if cfg.schedule == "step":
        return optim.lr_scheduler.StepLR(opt, step_size=max(1, total // 3), gamma=0.1)
    return optim.lr_scheduler.warmup_cosine(opt, warmup_steps=warm, total_steps=total)


def _generators(model: Module) -> dict[str, np.random.Generator]:
    """Every Generator a module draws from (dropout masks), by module name."""
    return {name: mod.rng for name, mod in model.named_modules()
            if isinstance(getattr(mod, "rng", None), np.random.Generator)}


class Trainer:
    """Train ``cfg.model`` on ``cfg.data``; see :class:`TrainConfig`.

    ``log`` receives one summary line per epoch; ``progress`` toggles the tqdm bars.
    """

    def __init__(self, cfg: TrainConfig, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        cfg.validate()
        self.cfg = cfg
        self.progress = progress
        self.log = log
        self.out = Path(cfg.out)
        self.train_set: Dataset = load_dataset(cfg.data, root=cfg.data_root, split="train",
                                               download=cfg.download, progress=progress)
        self.val_set: Dataset = load_dataset(cfg.data, root=cfg.data_root, split="test")
        self.dtype = np.dtype(cfg.dtype)
        self.model_config = {"num_classes": len(self.train_set.classes),
                             "in_channels": self.train_set.images.shape[1]}
        self.model = build_model(cfg.model, seed=cfg.seed, **self.model_config)
        self.model.astype(self.dtype)
        self.loss = SoftmaxCrossEntropy(label_smoothing=cfg.label_smoothing)
        self.opt = _make_optimizer(cfg, self.model)
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.loader = self.train_set.loader(batch_size=cfg.batch_size, shuffle=True, rng=self.rng,
                                            augment=cfg.augment, dtype=self.dtype)
        self.steps_per_epoch = len(self.loader)
        self.sched = _make_schedule(cfg, self.opt, self.steps_per_epoch)
        self.epoch = 0
        self.step = 0
        self.history: list[dict] = []
        self.best_val_acc = -1.0
        self._epoch_start_rng: dict | None = None  # generator state when this epoch began
        self._partial: dict | None = None          # batches done and running sums, mid-epoch
        self._stop: str | None = None              # name of the signal that asked us to stop
        self._check_input_size()

    def _check_input_size(self) -> None:
        """Run one held-out image through the model so a size mismatch fails early and clearly."""
        x = self.val_set.images[:1]
        try:
            self.model.eval()
            self.model.forward(np.zeros(x.shape, self.dtype))
        except ValueError as exc:
            raise ValueError(
                f"model {self.cfg.model!r} cannot take the {x.shape[1:]} images of "
                f"{self.cfg.data!r} ({exc}). Choose a model made for this image size "
                "(lenet5: 28x28 digits; vgg_small and resnet_small: 32x32 images, "
                "resnet_small also smaller ones)."
            ) from None
        finally:
            self.model.train()

    # -- checkpoint state ---------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "model_config": self.model_config,
            "config": asdict(self.cfg),
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "best_val_acc": self.best_val_acc,
            "data": {"name": self.train_set.name, "mean": list(self.train_set.mean),
                     "std": list(self.train_set.std), "max_value": self.train_set.max_value},
            "image_shape": list(self.train_set.images.shape[1:]),
            "class_names": list(self.train_set.classes),
            "rng_state": self.rng.bit_generator.state,
            "module_rng_states": {k: g.bit_generator.state
                                  for k, g in _generators(self.model).items()},
            "scheduler": self.sched.state_dict() if self.sched is not None else None,
            "partial_epoch": self._partial,
            "epoch_start_rng_state": self._epoch_start_rng if self._partial else None,
        }

    def save(self, name: str) -> Path:
        opt = self.opt if name == "last" else None
        return save_checkpoint(self.out / f"{name}.safetensors", self.model, opt, **self._meta())

    def resume(self, path: str | Path | None = None) -> None:
        """Restore model, optimizer, scheduler, RNG states and history from a checkpoint."""
        path = Path(path) if path is not None else self.out / "last.safetensors"
        ckpt = load_checkpoint(path)
        meta = ckpt.meta
        saved = meta.get("config", {})
        ours = asdict(self.cfg)
        differ = [f"{k}: saved {saved.get(k)!r}, now {ours[k]!r}" for k in ours
                  if k not in _RESUME_FREE and saved.get(k) != ours[k]]
        if differ:
            raise ValueError(
                f"--resume: {path} was written by a run with other settings ("
                + "; ".join(differ) + "). Resume with the same options, or train afresh "
                "with a different --out."
            )
        if ckpt.optimizer_state is None:
            raise ValueError(
                f"--resume: {path} has no optimizer state (only 'last' checkpoints do)."
            )
        self.model.load_state_dict(ckpt.model_state)
        self.opt.load_state_dict(ckpt.optimizer_state)
        if self.sched is not None and meta.get("scheduler") is not None:
            self.sched.load_state_dict(meta["scheduler"])
        self.rng.bit_generator.state = meta["rng_state"]
        for name, g in _generators(self.model).items():
            if name in meta.get("module_rng_states", {}):
                g.bit_generator.state = meta["module_rng_states"][name]
        self.epoch = int(meta["epoch"])
        self.step = int(meta["step"])
        self.history = list(meta["history"])
        self.best_val_acc = float(meta["best_val_acc"])
        self._partial = meta.get("partial_epoch")
        where = f"epoch {self.epoch}"
        if self._partial:
            self._epoch_start_rng = meta["epoch_start_rng_state"]
            where = f"epoch {self.epoch + 1}, batch {self._partial['batches']}"
        self.log(f"resumed from {path} at {where} (step {self.step})")

    # -- the loop -----------------------------------------------------------------------------
    def evaluate(self, data: Dataset, batch: int = 500) -> tuple[float, float, np.ndarray]:
        """Mean loss, accuracy and predictions of the model (eval mode) on ``data``."""
        return evaluate_model(self.model, data, self.loss, batch=batch, dtype=self.dtype)

    def train_epoch(self) -> EpochResult:
        """One pass over the training set, then the held-out score.

        Resumes mid-epoch when the checkpoint was written by an interruption: the generator is
        put back to its state at the start of the epoch, so the same permutation and
        augmentations are drawn, and the batches already trained on are drawn and skipped.
        """
        cfg = self.cfg
        self.model.train()
        t0 = time.perf_counter()
        if self._partial:
            self.rng.bit_generator.state = self._epoch_start_rng
            done, tot_loss = int(self._partial["batches"]), float(self._partial["loss_sum"])
            tot_correct, seen = float(self._partial["correct"]), float(self._partial["seen"])
        else:
            self._epoch_start_rng = copy.deepcopy(self.rng.bit_generator.state)
            done, tot_loss, tot_correct, seen = 0, 0.0, 0.0, 0.0
        bar = _progress(self.steps_per_epoch, f"epoch {self.epoch + 1}/{cfg.epochs}",
                        self.progress)
        bar.update(done)
        for i, (x, yb) in enumerate(self.loader):
            if i < done:
                continue  # trained on before the interruption: drawn only to replay the rng
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught below
                logits = self.model.forward(x)
                loss = self.loss.forward(logits, yb)
                if not math.isfinite(loss):
                    bar.close()
                    self._diverged(f"loss became {loss}", tot_loss / max(seen, 1))
                self.opt.zero_grad()
                self.model.backward_params(self.loss.backward())
                self.opt.step()
            if self.sched is not None:
                self.sched.step()
            self.step += 1
            n = len(yb)
            tot_loss += loss * n
            tot_correct += float(np.sum(np.argmax(logits, axis=1) == yb))
            seen += n
            bar.update(1)
            bar.set_postfix(loss=f"{tot_loss / seen:.4f}", acc=f"{tot_correct / seen:.3f}")
            if self._stop is not None and i + 1 < self.steps_per_epoch:
                bar.close()
                self._interrupt({"batches": i + 1, "loss_sum": tot_loss,
                                 "correct": tot_correct, "seen": seen})
        bar.close()
        self._partial = None
        train_seconds = time.perf_counter() - t0
        with np.errstate(over="ignore", invalid="ignore"):
            val_loss, val_acc, _ = self.evaluate(self.val_set)
        if not math.isfinite(val_loss):
            self._diverged(f"held-out loss became {val_loss} after the epoch",
                           tot_loss / max(seen, 1))
        self.epoch += 1
        return EpochResult(self.epoch, tot_loss / seen, tot_correct / seen, val_loss, val_acc,
                           time.perf_counter() - t0, seen / max(train_seconds, 1e-9))

    def _diverged(self, what: str, last_loss: float) -> None:
        kept = (f"The last good checkpoint, {self.out / 'last.safetensors'} (epoch "
                f"{self.epoch}), is kept." if self.epoch else
                "No checkpoint was written: it diverged in the first epoch.")
        raise TrainingDiverged(
            f"{what} at step {self.step + 1} (epoch {self.epoch + 1}); last finite mean loss "
            f"{last_loss:.4f}. {kept} Try a smaller learning rate (--lr {self.cfg.lr / 10:g})."
        )

    def _interrupt(self, partial: dict) -> None:
        self._partial = partial
        path = self.save("last")
        self._partial = None
        raise TrainingInterrupted(
            f"{self._stop} received: stopped at step {self.step} (epoch {self.epoch + 1}, "
            f"batch {partial['batches']} of {self.steps_per_epoch}); saved {path}.", path)

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """While training, SIGINT/SIGTERM ask for a clean stop after the current step."""
        def ask(signum: int, _frame: object) -> None:
            self._stop = signal.Signals(signum).name

        self._stop = None
        try:
            old = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals cannot be caught here
            old = {}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def fit(self) -> list[dict]:
        """Run the remaining epochs: metrics.csv and checkpoints after each, curves.png at the end
        (or when stopped)."""
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            with self._stop_on_signals():
                while self.epoch < self.cfg.epochs:
                    self._run_epoch()
        finally:
            # Drawn once, also after an interruption: a figure per epoch would cost ~0.2 s each
            # (about a quarter of make run's time).
            if self.history:
                M.plot_curves(self.history, self.out / "curves.png")
        return self.history

    def _run_epoch(self) -> None:
        r = self.train_epoch()
        self.history.append(r.row())
        self.log(
            f"epoch {r.epoch:3d}/{self.cfg.epochs}  loss {r.train_loss:.4f}  "
            f"acc {r.train_acc:6.2%}  val_loss {r.val_loss:.4f}  val_acc {r.val_acc:6.2%}  "
            f"{r.seconds:5.1f}s  {r.images_per_s:,.0f} img/s"
        )
        if r.val_acc > self.best_val_acc:
            self.best_val_acc = r.val_acc
            self.save("best")
        self.save("last")
        M.write_metrics_csv(self.out / "metrics.csv", self.history)
        if self._stop is not None:  # the signal came in the epoch's last step: it is saved
            path = self.out / "last.safetensors"
            raise TrainingInterrupted(
                f"{self._stop} received: stopped after epoch {self.epoch}; saved {path}.", path)


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


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)
