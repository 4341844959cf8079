"""Gradient averaging across ranks: flat buckets, reduced while the backward pass goes on.

As Horovod and PyTorch's DDP do, the parameters are grouped, in reverse order of registration
(roughly the order the backward pass finishes them), into flat buckets of about
``bucket_bytes``. Each parameter-holding layer's ``backward`` (and ``backward_params``) is
wrapped on the instance; when the last layer holding a bucket's parameters has run its
backward, the bucket's gradients are copied into its flat buffer and its reduction starts,
non-blocking, while the layers below keep computing. :meth:`GradientBuckets.finish` waits for
the rest and leaves the average in every ``param.grad``, before the optimizer step.

Fixed summation order. ``MPI_Iallreduce`` may add the ranks' contributions in any order (it
depends on the algorithm the library picks for the size and the rank), so two ranks could end
a step with weights a rounding apart. Each bucket is therefore reduced in two non-blocking
collectives, which move the same bytes per rank as a ring allreduce, ``2 (N-1)/N`` of the
bucket (a reduce-scatter, then an allgather)::

    flat (L padded to N c) = [chunk 0 | chunk 1 | ... | chunk N-1]
    Ialltoall   rank r receives chunk r of every rank:           recv (N, c)
    sum         s_r = ((recv[0] + recv[1]) + ...) + recv[N-1]    rank order, then / N
    Iallgather  every rank receives s_0 .. s_{N-1}:               the averaged flat buffer

The sums are the same bits on every rank and in every run. The first collectives run on one
communicator, the second on another, each started in bucket order on every rank (MPI requires
collectives on a communicator to be started in the same order everywhere): a bucket's
allgather starts, in order, as soon as its alltoall is seen complete, checked at every later
layer's backward and in :meth:`finish`.

Shape: a bucket of parameters of ``p_i`` values holds ``L = sum p_i`` values, padded to a
multiple of ``N``; buffers are the model's dtype.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from ..nn import Module, Parameter

__all__ = ["GradientBuckets", "plan_buckets", "DEFAULT_BUCKET_BYTES"]

#: About 4 MiB a bucket: few enough calls that latency does not dominate (lenet5, 0.5 MB of
#: float64 gradients, is one bucket), several for larger models so the first ones overlap the
#: rest of the backward pass. ``benchmarks/distributed.py`` measures the trade-off.
DEFAULT_BUCKET_BYTES = 4 * 2**20


def plan_buckets(params: list[Parameter], bucket_bytes: int) -> list[list[int]]:
    """Indices into ``params`` (registration order) grouped into buckets: reverse order,
    a new bucket once one holds ``bucket_bytes`` (a larger parameter gets one of its own)."""
    buckets: list[list[int]] = [[]]
    size = 0
    for i in reversed(range(len(params))):
        nbytes = params[i].grad.nbytes
        if buckets[-1] and size + nbytes > bucket_bytes:
            buckets.append([])
            size = 0
        buckets[-1].append(i)
        size += nbytes
    return [b for b in buckets if b]


class _Bucket:
    def __init__(self, params: list[Parameter], ranks: int) -> None:
        self.params = params
        self.sizes = [p.grad.size for p in params]
        n = sum(self.sizes)
        self.chunk = -(-n // ranks)
        dt = params[0].grad.dtype
        self.send = np.zeros((ranks, self.chunk), dt)   # holds the result after the allgather
        self.recv = np.empty((ranks, self.chunk), dt)
        self.total = np.empty(self.chunk, dt)
        self.request: Any = None

    def pack(self) -> None:
        flat, at = self.send.reshape(-1), 0
        for p, n in zip(self.params, self.sizes, strict=True):
            flat[at:at + n] = p.grad.reshape(-1)
            at += n

    def average(self, ranks: int) -> None:
        np.copyto(self.total, self.recv[0])
        for row in self.recv[1:]:
            self.total += row
        self.total /= ranks

    def unpack(self) -> None:
        flat, at = self.send.reshape(-1), 0
        for p, n in zip(self.params, self.sizes, strict=True):
            p.grad[...] = flat[at:at + n].reshape(p.grad.shape)
            at += n


class GradientBuckets:
    """Average the gradients of ``model`` over the ranks of ``world`` (a
    :class:`~rot180.train.distributed.World`), bucket by bucket, during the backward pass.

    Use around each backward: :meth:`begin`, ``model.backward_params(dy)``, :meth:`finish`.
    :attr:`wait_seconds` sums the time :meth:`finish` spent waiting; :meth:`close` removes the
    hooks.
    """

    def __init__(self, model: Module, world: Any, bucket_bytes: int = DEFAULT_BUCKET_BYTES
                 ) -> None:
        self.world = world
        self.ranks = world.size
        params = list(model.parameters())
        if not params:
            raise ValueError("GradientBuckets: the model has no parameters to average.")
        self.plan = plan_buckets(params, bucket_bytes)
        self.buckets = [_Bucket([params[i] for i in b], self.ranks) for b in self.plan]
        where = {id(params[i]): k for k, b in enumerate(self.plan) for i in b}
        # Which layers hold which parameters (a shared parameter: every layer holding it).
        self._owners: list[tuple[Module, list[int]]] = []
        self._holders = [0] * len(self.buckets)
        seen: set[int] = set()
        for _, mod in model.named_modules():
            if id(mod) in seen or not mod._parameters:
                continue
            seen.add(id(mod))
            ks = [where[id(p)] for p in mod._parameters.values()]
            self._owners.append((mod, ks))
            for k in ks:
                self._holders[k] += 1
        self._left: list[int] = []
        self._done: set[int] = set()
        self._started: list[bool] = []
        self._stage1: deque[_Bucket] = deque()
        self._stage2: list[_Bucket] = []
        self.wait_seconds = 0.0
        self._active = False
        for mod, ks in self._owners:
            self._wrap(mod, ks)

    # -- hooks ---------------------------------------------------------------------------------
    def _wrap(self, mod: Module, ks: list[int]) -> None:
        for name in ("backward", "backward_params"):
            inner = getattr(mod, name)

            def hooked(dy: np.ndarray, _inner: Any = inner, _mod: Module = mod,
                       _ks: list[int] = ks) -> Any:
                out = _inner(dy)
                if self._active:
                    self._finished(_mod, _ks)
                return out

            object.__setattr__(mod, name, hooked)

    def close(self) -> None:
        """Remove the hooks (the layers' own methods are used again)."""
        for mod, _ in self._owners:
            for name in ("backward", "backward_params"):
                mod.__dict__.pop(name, None)

    def _finished(self, mod: Module, ks: list[int]) -> None:
        if id(mod) in self._done:      # backward_params that ran backward: counted once
            return
        self._done.add(id(mod))
        for k in ks:
            self._left[k] -= 1
        for k in sorted(set(ks)):
            if self._left[k] == 0 and not self._started[k]:
                self._start(k)
        self._progress()

    # -- the two collectives -------------------------------------------------------------------
    def _start(self, k: int) -> None:
        b = self.buckets[k]
        self._started[k] = True
        b.pack()
        b.request = self.world.grad_comm.Ialltoall(b.send, b.recv)
        self._stage1.append(b)

    def _second(self, b: _Bucket) -> None:
        b.average(self.ranks)
        b.request = self.world.gather_comm.Iallgather(b.total, b.send)
        self._stage2.append(b)

    def _progress(self) -> None:
        """Start, in order, the allgathers of the buckets whose alltoall has completed."""
        while self._stage1 and self._stage1[0].request.Test():
            self._second(self._stage1.popleft())

    def begin(self) -> None:
        """Arm the hooks for one backward pass."""
        self._left = list(self._holders)
        self._done = set()
        self._started = [False] * len(self.buckets)
        self._active = True

    def finish(self) -> None:
        """Start what the hooks did not (a layer that took no part), wait for every bucket and
        leave the average over ranks in each ``param.grad``."""
        t0 = time.perf_counter()
        self._active = False
        for k in range(len(self.buckets)):
            if not self._started[k]:
                self._start(k)
        while self._stage1:
            b = self._stage1.popleft()
            b.request.Wait()
            self._second(b)
        for b in self._stage2:
            b.request.Wait()
            b.unpack()
        self._stage2 = []
        self.wait_seconds += time.perf_counter() - t0
