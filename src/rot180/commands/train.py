"""``rot180 train``: train a model on a dataset with the hand-derived backward pass."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields

from ..train.trainer import (
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)

HELP = "train a CNN (default: LeNet-5 on the embedded 5,000 MNIST digits)"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = TrainConfig()
    p = sub.add_parser("train", help=HELP, description=HELP + ".")
    p.add_argument("--model", default=d.model, help="lenet5 | vgg_small | resnet_small "
                   "(default: %(default)s)")
    p.add_argument("--data", default=d.data, help="mnist5k | digits8x8 | mnist | fashion-mnist "
                   "| kmnist | cifar10 (default: %(default)s)")
    p.add_argument("--data-root", default=None, help="directory holding the files of --data")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--download", action="store_true",
                   help="fetch missing files of mnist/fashion-mnist/kmnist/cifar10 "
                        "(SHA-256 checked)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype)
    p.add_argument("--out", default=d.out, help="output directory (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in OUT/last.safetensors")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the per-epoch progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    trainer = Trainer(cfg, progress=args.progress)
    n_train, n_val = len(trainer.train_set), len(trainer.val_set)
    print(f"training {cfg.model} on {cfg.data}: {n_train} images, {n_val} held out; "
          f"{cfg.optimizer} lr={cfg.lr} batch={cfg.batch_size} epochs={cfg.epochs} "
          f"seed={cfg.seed} -> {cfg.out}")
    if args.resume:
        trainer.resume()
    try:
        history = trainer.fit()
    except TrainingDiverged as err:  # an outcome, not a bug: no traceback, the message says why
        print(f"rot180: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:
        print(f"rot180: {stop}\nresume with: {resume_command(cfg)}", file=sys.stderr)
        return 130
    best = max(history, key=lambda r: r["val_acc"]) if history else None
    if best is not None:
        print(f"best held-out accuracy {best['val_acc']:.2%} (epoch {best['epoch']}); "
              f"checkpoints in {cfg.out}/best.safetensors and last.safetensors; "
              f"curves in {cfg.out}/curves.png")
    return 0


def resume_command(cfg: TrainConfig) -> str:
    """The shell command that continues this run: its non-default options plus ``--resume``."""
    default = TrainConfig()
    words = ["rot180", "train"]
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if value == getattr(default, f.name) and f.name != "out":
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else {"augment": "--no-augment"}.get(f.name, ""))
        elif value is not None:
            words += [flag, str(value)]
    return shlex.join([w for w in words if w] + ["--resume"])
