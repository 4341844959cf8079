"""Checks of a checkpoint a run resumes from: its settings against the run's, and its loop state."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..functional import _validation as V
from . import metrics as M
from .checkpoint import Checkpoint, CheckpointError
from .config import TrainConfig

__all__ = ["check_resume", "resume_state"]

# Fields that may differ between a run and its resumption: where files go, and how they are read
# (``epochs`` may grow once the run is finished: see "Extending a finished run" in
# rot180.train.trainer).
_RESUME_FREE = ("out", "data_root", "download", "epochs")
# Settings added after checkpoints were first written: a checkpoint without one ran with this.
_ADDED_LATER = {"sync_bn": False}


def check_resume(cfg: TrainConfig, ckpt: Checkpoint, path: Path, world_size: int = 1
                 ) -> tuple[dict[str, Any], int, bool]:
    """Whether the run ``cfg`` may resume from ``ckpt``: its loop state (:func:`resume_state`),
    the epochs the saved run planned, and whether ``cfg`` extends it (a larger ``epochs``).

    ``world_size``: the number of ranks of this run, which must be the saved run's (a checkpoint
    without ``world_size`` was written by one process). Another number of ranks would change the
    global batch (``ranks * batch_size``), hence the schedule's steps and every update, so it
    is refused rather than resumed into a different run.
    """
    meta = ckpt.meta
    saved_ranks = meta.get("world_size", 1)
    if saved_ranks != world_size:
        raise ValueError(
            f"--resume: {path} was written by a run on {saved_ranks!r} process(es) "
            f"(global batch {saved_ranks!r} x --batch-size), this one has {world_size}. Resume "
            f"with the same number of ranks (mpiexec -n {saved_ranks!r}), or train afresh with "
            "a different --out.")
    saved = meta.get("config", {})
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: its config is not a JSON object.")
    ours = asdict(cfg)
    differ = [f"{k}: saved {saved.get(k, _ADDED_LATER.get(k))!r}, now {ours[k]!r}" for k in ours
              if k not in _RESUME_FREE and saved.get(k, _ADDED_LATER.get(k)) != ours[k]]
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
    state = resume_state(meta, path)
    planned = saved.get("epochs")
    try:
        planned = V.integer(planned, "config.epochs")
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: config.epochs must be an int >= 1, got "
                              f"{planned!r}.") from None
    extend = planned != cfg.epochs
    if extend and (state["epoch"] != planned or state["partial_epoch"]):
        raise ValueError(
            f"--resume --epochs {cfg.epochs}: the run in {path} is not finished (epoch "
            f"{state['epoch']} of {planned}); resume it with --epochs {planned} first, then "
            "extend it."
        )
    if extend and cfg.epochs < planned:
        raise ValueError(
            f"--resume --epochs {cfg.epochs}: the run in {path} already trained "
            f"{planned} epochs; to extend it pass more (e.g. --epochs {planned + 10})."
        )
    return state, planned, extend


def resume_state(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """The loop's counters from a checkpoint's metadata, each checked for type and range."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: {what}. The checkpoint is damaged or was not written "
                               "by rot180 train; train afresh or resume from another run.")

    def count(key: str, default: int | None = None) -> int:
        v = meta.get(key, default)
        try:
            if isinstance(v, int) and v >= 2**53:
                raise ValueError
            return V.integer(v, key, low=0)
        except (TypeError, ValueError):
            raise bad(f"{key} must be an int >= 0, got {type(v).__name__} {v!r:.60}") from None

    def number(value: object, low: float, high: float) -> bool:
        try:
            V.real(value, "value", low=low, high=high)
        except (TypeError, ValueError):
            return False
        return True

    epoch, step = count("epoch"), count("step")
    start = count("schedule_start_epoch", 0)
    if start > epoch:
        raise bad(f"schedule_start_epoch {start} is after epoch {epoch}")
    history = meta.get("history")
    if not isinstance(history, list) or len(history) != epoch or not all(
            isinstance(r, dict) and all(_is_number(r.get(c)) for c in M.METRIC_COLUMNS)
            for r in history):
        raise bad(f"history must be a list of {epoch} rows with {list(M.METRIC_COLUMNS)}")
    best = meta.get("best_val_acc")
    if not number(best, -1, 1):
        raise bad(f"best_val_acc must be a number in [-1, 1], got {best!r:.60}")
    partial = meta.get("partial_epoch")
    if partial is not None:
        keys = ("batches", "loss_sum", "correct", "seen")
        if not isinstance(partial, dict) or not all(
                number(partial.get(k), 0, math.inf) for k in keys):
            raise bad(f"partial_epoch must hold numbers >= 0 for {list(keys)}")
        if not isinstance(meta.get("epoch_start_rng_state"), dict):
            raise bad("a mid-epoch checkpoint needs epoch_start_rng_state")
    return {"epoch": epoch, "step": step, "schedule_start_epoch": start,
            "history": [dict(r) for r in history], "best_val_acc": float(best),
            "partial_epoch": partial}


def _is_number(value: object) -> bool:
    """A real number (a history entry: any value, NaN included, as a run may log one)."""
    try:
        V.real(value, "value", finite=False)
    except TypeError:
        return False
    return True
