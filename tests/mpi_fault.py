"""Launched by tests/test_distributed_mpi.py: ``rot180 train ARGS...`` on every rank, where rank
``RANK`` fails at its ``STEP``-th loss: ``raise`` raises a RuntimeError, ``exit`` ends the process
at once (``os._exit(3)``, as a crash would), ``none`` fails nothing.

    mpiexec -n 2 python tests/mpi_fault.py raise RANK STEP train --data digits8x8 ...
"""

from __future__ import annotations

import os
import sys

from rot180 import cli
from rot180.nn import SoftmaxCrossEntropy
from rot180.train import distributed


def inject(mode: str, rank: int, step: int) -> None:
    if mode == "none" or distributed.world().rank != rank:
        return
    real = SoftmaxCrossEntropy.forward
    calls = [0]

    def forward(self, logits, labels):   # noqa: ANN001 - the loss's own signature
        calls[0] += 1
        if calls[0] == step:
            if mode == "exit":
                os._exit(3)
            raise RuntimeError(f"injected failure at step {step}")
        return real(self, logits, labels)

    SoftmaxCrossEntropy.forward = forward


if __name__ == "__main__":
    inject(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    sys.exit(cli.main(sys.argv[4:]))
