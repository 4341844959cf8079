"""Shared by the training, checkpoint and fault tests: a smaller dataset and a full disk."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal

import numpy as np
import pytest

import rot180.train.checkpoint as checkpoint_mod
import rot180.train.trainer as trainer_mod


def subset_loader(real, n_train: int, n_test: int, seed: int):
    """``real`` (a ``load_dataset``) cut to a seeded random subset of each split."""
    def first_few(name, *, split="train", **kwargs):
        ds = real(name, split=split, **kwargs)
        n = n_train if split == "train" else n_test
        pick = np.sort(np.random.default_rng(seed).permutation(len(ds))[:n])
        return dataclasses.replace(ds, images=ds.images[pick], labels=ds.labels[pick])

    return first_few


def use_subsets(monkeypatch: pytest.MonkeyPatch, n_train: int, n_val: int, seed: int) -> None:
    """Make the trainer's ``load_dataset`` return a seeded random subset of each split."""
    monkeypatch.setattr(trainer_mod, "load_dataset",
                        subset_loader(trainer_mod.load_dataset, n_train, n_val, seed))


def signal_at_step(t, step: int, sig: signal.Signals) -> None:
    """Deliver ``sig`` to this process right after optimizer step number ``step`` of the
    trainer ``t``."""
    real_step = t.opt.step

    def step_then_signal() -> None:
        real_step()
        if t.step + 1 == step:   # t.step is incremented after opt.step returns
            signal.raise_signal(sig)

    t.opt.step = step_then_signal


class _FullDisk:
    """A file object whose first write lands half its data, then fails with ENOSPC."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def fill_disk_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write (checkpoints, metrics, figures) runs out of space half-way through the file."""
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return _FullDisk(f) if "w" in mode else f   # reading (resume) still works

    monkeypatch.setattr(checkpoint_mod.os, "fdopen", fdopen)


def fill_disk_under(monkeypatch: pytest.MonkeyPatch, directory: os.PathLike) -> None:
    """Like :func:`fill_disk_on_write`, and also every ``open(path, "w...")`` of a file in
    ``directory`` (what a direct ``savefig(path)`` does) fails half-way with ENOSPC."""
    import builtins

    fill_disk_on_write(monkeypatch)
    real_open, where = builtins.open, os.path.realpath(directory)

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and any(c in mode for c in "wax") \
                and os.path.realpath(os.path.dirname(os.fspath(file))) == where:
            return _FullDisk(f)
        return f

    monkeypatch.setattr(builtins, "open", open_)

