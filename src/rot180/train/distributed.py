"""Data-parallel training on MPI: who the ranks are, what each one reads, and how they agree.

``mpiexec -n 4 rot180 train ...`` (or ``srun rot180 train ...`` under Slurm) starts four copies of
the same command. Each is a *rank*; this module gives the trainer what it needs to make them one
run (:mod:`rot180.train._buckets` averages the gradients):

* :func:`world` finds out whether this process was started by an MPI launcher (the environment
  variables of MPICH's hydra, Open MPI, Slurm's ``srun``, or ``--mpi``) and only then imports
  ``mpi4py``; a plain ``rot180 train``, or a launch of one rank, gets :class:`Single` and runs
  exactly as before.
* Sharding, as PyTorch's ``DistributedSampler(shuffle=True, drop_last=False)``: every rank draws
  the same permutation ``perm`` of the ``n`` training images from the same generator; it is
  padded, by repeating its start, to ``T = ceil(n / N) N`` entries, and rank ``r`` takes
  ``padded[r::N]`` (:func:`shard_indices`), cut into batches of ``b``. Batch ``k`` of rank ``r``
  is therefore ``padded[kNb + r + N j]`` for ``j < b``: the ``N`` ranks' ``k``-th batches together
  are the global batch ``padded[kNb : (k+1)Nb]``, the very batch ``k`` of one process with batch
  ``Nb`` (when ``N`` divides ``n``, no padding). :class:`ShardLoader` augments that *global*
  batch (from the shared generator, on every rank) and keeps the rank's samples, so a sample's
  shift and flip do not depend on which rank trains it, and the generator stays in step on
  every rank.
* :func:`check_agreement`: the ranks compare every setting and a fingerprint of the data
  (``Allgather``) and refuse to start, naming the difference, if any rank disagrees.
* :func:`abort_on_error`: a rank that raises prints its rank and the exception and calls
  ``MPI_Abort``, which stops every other rank (never a hang in a collective).

Reductions of numbers (metrics, BatchNorm statistics) go through :meth:`World.sum`: an
``Allgather`` of each rank's values, summed in rank order on every rank, so every rank gets the
same bits and a run repeats bit for bit, whatever algorithm the MPI library picks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..data import Dataset, normalize
from ..nn import Module

__all__ = ["Single", "World", "world", "launched_by_mpi", "shard_indices", "ShardLoader",
           "check_agreement", "data_fingerprint", "abort_on_error", "RanksDisagree",
           "CollectiveError", "raise_on_every_rank",
           "shard_range"]

#: Environment variables an MPI launcher sets in every rank, with the world size as value:
#: MPICH / Intel MPI (hydra: PMI_SIZE), Open MPI, Slurm's srun (SLURM_STEP_NUM_TASKS is set
#: for the tasks of a job step only, not in the batch script itself), PMIx launchers.
LAUNCH_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "PMIX_SIZE",
                    "MPI_LOCALNRANKS")


class CollectiveError(ValueError):
    """Raised on *every* rank alike (the ranks shared what went wrong first), so no rank needs
    to abort the others: each exits with the message, rank 0 prints it."""


class RanksDisagree(CollectiveError):
    """The ranks hold different settings, data or versions (:func:`check_agreement`)."""


def raise_on_every_rank(w: Single, problem: BaseException | None) -> None:
    """Where some ranks hit a problem before a collective (a checkpoint refused, a run
    directory taken), make every rank raise it, as :class:`CollectiveError`, rather than leave
    the others waiting; one process re-raises ``problem`` itself. Call it on every rank."""
    if w.size == 1:
        if problem is not None:
            raise problem
        return
    texts = w.allgather_object(None if problem is None else str(problem))
    failed = [(r, t) for r, t in enumerate(texts) if t is not None]
    if failed:
        rank, text = failed[0]
        alike = len(failed) == w.size and len(set(texts)) == 1
        raise CollectiveError(text if alike else f"rank {rank} of {w.size}: {text}")


def launched_by_mpi(env: Mapping[str, str] | None = None) -> bool:
    """Whether an MPI launcher started this process with more than one rank (read from the
    environment only: nothing is imported)."""
    env = os.environ if env is None else env
    for name in LAUNCH_VARIABLES:
        value = env.get(name, "")
        if value.strip().isdigit() and int(value) > 1:
            return True
    return False


class Single:
    """The world of a process started on its own: rank 0 of 1. Every collective is the
    identity, so the trainer runs exactly as without this module."""

    rank, size, local_size = 0, 1, 1
    is_root = True
    comm = None

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64)

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    def allgather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def broadcast_model(self, model: Module, *, buffers_only: bool = False) -> None:
        return None

    def abort(self, code: int = 1) -> None:  # pragma: no cover - a single process just exits
        raise SystemExit(code)

    def describe(self) -> str:
        return "1 process"


class World(Single):
    """The ranks of an MPI launch (``mpi4py``'s ``COMM_WORLD``), with three duplicates: two for
    the gradient buckets' non-blocking collectives (see :mod:`rot180.train._buckets`), one for
    everything else, so that collectives of the kinds never match each other up.
    """

    def __init__(self, comm: Any, shared: Any = None) -> None:
        self.world_comm = comm
        self.comm = comm.Dup()
        self.grad_comm = comm.Dup()
        self.gather_comm = comm.Dup()
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        # Ranks on this machine (MPI_COMM_TYPE_SHARED), which share its cores.
        self.local_size = 1 if shared is None else comm.Split_type(shared).Get_size()

    def sum(self, values: np.ndarray) -> np.ndarray:
        """The sum over ranks of ``values`` (float64), added in rank order: the same bits on
        every rank and in every run (an ``Allreduce`` may add in any order).

        Shape: ``(K,)`` in and out.
        """
        mine = np.ascontiguousarray(values, np.float64).reshape(-1)
        rows = np.empty((self.size, mine.size))
        self.comm.Allgather(mine, rows)
        total = rows[0].copy()
        for row in rows[1:]:
            total += row
        return total

    # Objects travel as JSON in byte buffers (not mpi4py's pickled objects: nothing a peer
    # sends is ever unpickled).
    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (JSON-serialisable) on every rank."""
        data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if self.is_root else None
        n = np.array([0 if data is None else data.size], np.int64)
        self.comm.Bcast(n, root=0)
        buf = data.copy() if data is not None else np.empty(int(n[0]), np.uint8)
        self.comm.Bcast(buf, root=0)
        return json.loads(buf.tobytes().decode())

    def allgather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (JSON-serialisable), in rank order."""
        data = np.frombuffer(json.dumps(obj).encode(), np.uint8).copy()
        sizes = np.empty(self.size, np.int64)
        self.comm.Allgather(np.array([data.size], np.int64), sizes)
        buf = np.empty(int(sizes.sum()), np.uint8)
        self.comm.Allgatherv(data, [buf, sizes.tolist()])
        ends = np.cumsum(sizes)
        return [json.loads(buf[e - n:e].tobytes().decode()) for n, e in zip(sizes, ends,
                                                                          strict=True)]

    def broadcast_model(self, model: Module, *, buffers_only: bool = False) -> None:
        """Rank 0's parameters (unless ``buffers_only``) and buffers (BatchNorm's running
        statistics) to every rank, in place: one ``Bcast`` per array, in ``state_dict`` order."""
        for _, mod in model.named_modules():
            arrays = [] if buffers_only else [p.data for p in mod._parameters.values()]
            arrays += [getattr(mod, name) for name in mod._buffers]
            for array in arrays:
                flat = array.reshape(-1)            # a view (0-d arrays too), checked
                if not np.shares_memory(flat, array):
                    raise ValueError(f"broadcast_model: an array of {type(mod).__name__} is "
                                     "not contiguous; it cannot be received in place.")
                self.comm.Bcast(flat, root=0)

    def abort(self, code: int = 1) -> None:
        self.world_comm.Abort(code)

    def describe(self) -> str:
        return f"{self.size} MPI ranks"


def world(force: bool = False) -> Single:
    """:class:`World` under an MPI launch of more than one rank (or with ``force``, ``--mpi``),
    else :class:`Single`. ``mpi4py`` is imported only then."""
    if not (force or launched_by_mpi()):
        return Single()
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(
            "rot180 train was started by an MPI launcher (or with --mpi), but mpi4py is not "
            "installed. Install it with pip install 'rot180[mpi]' (mpi4py and MPICH), or, on a "
            "cluster, pip install mpi4py against the system's MPI.") from None
    comm = MPI.COMM_WORLD
    return World(comm, MPI.COMM_TYPE_SHARED) if comm.Get_size() > 1 else Single()


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_rank(local_ranks: int, *, cpus: int | None = None, usable: int | None = None,
                     env: Mapping[str, str] | None = None) -> int | None:
    """The BLAS (and engine) threads each rank should use, or ``None`` to leave them alone (the
    user set one of :data:`THREAD_VARIABLES`). A rank the launcher bound to fewer cores than the
    machine has (``srun --cpus-per-task``) uses those; unbound ranks share the machine's cores
    equally (``mpiexec -n 4`` on 8 cores: 2 each), so they do not fight over them."""
    env = os.environ if env is None else env
    if any(env.get(name) for name in THREAD_VARIABLES):
        return None
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    if usable is None:
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    if usable < cpus:
        return max(1, usable)
    return max(1, cpus // max(1, local_ranks))


# -- what each rank reads ---------------------------------------------------------------------

def shard_indices(perm: np.ndarray, size: int, rank: int) -> np.ndarray:
    """The indices rank ``rank`` of ``size`` takes from the epoch's order ``perm``, as
    ``torch.utils.data.DistributedSampler(shuffle=True, drop_last=False)`` does from its own
    permutation: pad ``perm`` by repeating it from the start to ``ceil(n / size) size``
    entries, then take every ``size``-th from ``rank``.

    Shape: ``(n,)`` -> ``(ceil(n / size),)``.
    """
    perm = np.asarray(perm)
    return _padded(perm, size)[rank::size]


def _padded(perm: np.ndarray, size: int) -> np.ndarray:
    total = math.ceil(len(perm) / size) * size
    pad = total - len(perm)
    if pad == 0:
        return perm
    reps = math.ceil(pad / len(perm))
    return np.concatenate([perm, np.tile(perm, reps)[:pad]])


def shard_range(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous part ``[lo, hi)`` of ``n`` held-out images (sizes differ by at
    most one; every image is scored once)."""
    return n * rank // size, n * (rank + 1) // size


class ShardLoader:
    """This rank's batches of a :class:`~rot180.data.Dataset`, ``batch_size`` each, in the
    :func:`shard_indices` order (see the module docstring).

    Each epoch draws, from ``rng`` (the same generator state on every rank), the permutation and
    then, per global batch, the augmentation of the whole global batch of ``size * batch_size``
    images, exactly the draws one process with batch ``size * batch_size`` makes; the rank keeps
    positions ``rank::size`` of it.

    Shape: batches ``x (b, C, H, W)`` in ``dtype``, ``y (b,)`` int64, ``b <= batch_size`` (the
    last batch of an epoch may be shorter, equally on every rank).
    """

    def __init__(self, data: Dataset, *, batch_size: int, rank: int, size: int,
                 rng: np.random.Generator, augment: bool, dtype: np.dtype) -> None:
        self.data, self.batch_size, self.rank, self.size = data, batch_size, rank, size
        self.rng = rng
        self.augment = data.augmentation if augment else None
        self.dtype = dtype
        self.per_rank = math.ceil(len(data) / size)

    def __len__(self) -> int:
        return -(-self.per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        d = self.data
        padded = _padded(self.rng.permutation(len(d)), self.size)
        step = self.size * self.batch_size
        for start in range(0, len(padded), step):
            idx = padded[start:start + step]
            raw = d.images[idx]
            if self.augment is not None:
                raw = self.augment(raw, self.rng)
            mine = slice(self.rank, None, self.size)
            x = normalize(raw[mine], mean=d.mean, std=d.std, max_value=d.max_value,
                          dtype=self.dtype)
            yield x, d.labels[idx][mine].astype(np.int64, copy=False)


# -- agreement and faults ---------------------------------------------------------------------

def data_fingerprint(data: Dataset) -> str:
    """SHA-256 (first 16 hex digits) of a data set's images, labels and normalisation."""
    h = hashlib.sha256()
    h.update(str((data.images.shape, str(data.images.dtype), data.mean, data.std,
                  data.max_value)).encode())
    h.update(np.ascontiguousarray(data.images).tobytes())
    h.update(np.ascontiguousarray(data.labels, np.int64).tobytes())
    return h.hexdigest()[:16]


def check_agreement(w: Single, facts: Mapping[str, Any]) -> None:
    """Refuse to start unless every rank holds the same ``facts`` (settings, data fingerprints,
    versions): :class:`RanksDisagree` on every rank, naming each fact that differs and what the
    ranks hold."""
    if w.size == 1:
        return
    mine = {k: json.dumps(v, sort_keys=True, default=str) for k, v in facts.items()}
    every = w.allgather_object(mine)
    differ = []
    for key in sorted(set().union(*every)):
        values = [row.get(key, "<missing>") for row in every]
        if len(set(values)) > 1:
            held = "; ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            differ.append(f"{key} ({held})")
    if differ:
        raise RanksDisagree(
            f"the {w.size} ranks disagree on " + ", ".join(differ) + ". Every rank must run "
            "the same command on the same data: check that each node sees the same files and "
            "rot180 version (a shared file system, one virtual environment).")


@contextlib.contextmanager
def abort_on_error(w: Single, out: Callable[[str], None] | None = None) -> Iterator[None]:
    """Around a rank's work: an exception that is not raised alike on every rank (anything but
    :class:`CollectiveError`) is printed with the rank and then ``MPI_Abort`` stops every rank,
    so none waits forever in a collective. A single process re-raises as usual."""
    try:
        yield
    except CollectiveError:
        raise
    except BaseException as exc:
        if w.size == 1 or (isinstance(exc, SystemExit) and not exc.code):
            raise
        write = out or (lambda text: print(text, file=sys.stderr, flush=True))
        # A user's error (a bad option, a missing file) in a line; anything else with its trace.
        detail = ("" if isinstance(exc, ValueError | TypeError | OSError) else
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        if isinstance(exc, KeyboardInterrupt):   # Ctrl-C outside the loop (which saves)
            detail, what = "", "interrupted (SIGINT) outside the training loop"
        else:
            what = f"failed: {type(exc).__name__}: {exc}"
        write(f"{detail}rot180: rank {w.rank} of {w.size} {what}\n"
              "rot180: stopping every rank (MPI_Abort).")
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        time.sleep(0.5)   # the launcher forwards what was printed before Abort kills the job
        w.abort(1)
        os._exit(1)   # MPICH's Abort may return before the launcher's kill arrives
