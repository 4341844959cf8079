"""Launched by tests/test_distributed_mpi.py under ``mpiexec -n N``: one epoch of 20 steps of
each case given on the command line, on every rank; rank 0 writes ``<out>/<case>.safetensors``
(the weights, the epoch's training and held-out loss in the metadata).

A case is ``model:data:val_fraction:batch:bn`` with ``bn`` one of ``rank`` (each rank's own
statistics) or ``sync`` (``--sync-bn``); ``val_fraction`` is chosen so that the training images
are exactly 20 global batches (no padding). Run it without mpiexec to get the one-process run.

    mpiexec -n 2 python tests/mpi_cases.py OUT lenet5:mnist5k:0.1:90:rank
"""

from __future__ import annotations

import sys
from pathlib import Path

from rot180.train import distributed
from rot180.train.checkpoint import save_checkpoint
from rot180.train.config import TrainConfig
from rot180.train.trainer import Trainer

STEPS = 20


def run_case(case: str, out: Path, world: distributed.Single) -> None:
    model, data, val_fraction, batch, bn = case.split(":")
    cfg = TrainConfig(model=model, data=data, epochs=1, batch_size=int(batch), dtype="float64",
                      val_fraction=float(val_fraction), sync_bn=bn == "sync",
                      out=str(out / case.replace(":", "_")))
    t = Trainer(cfg, progress=False, log=lambda _line: None, world=world)
    if len(t.train_set) != STEPS * world.size * cfg.batch_size or t.steps_per_epoch != STEPS:
        raise ValueError(f"{case}: {len(t.train_set)} training images are not {STEPS} global "
                         f"batches of {world.size} x {cfg.batch_size}")
    r = t.train_epoch()
    if world.is_root:
        save_checkpoint(out / f"{case}.safetensors", t.model, None, train_loss=r.train_loss,
                        val_loss=r.val_loss, val_acc=r.val_acc, world_size=world.size)


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    world = distributed.world()
    with distributed.abort_on_error(world):
        for case in argv[1:]:
            run_case(case, out, world)


if __name__ == "__main__":
    main(sys.argv[1:])
