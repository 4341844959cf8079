"""Batch chunks on the caller's thread and a small team of others, with BLAS held at one thread.

numpy runs only its BLAS products on several cores; the copies, sums and transposes around them
run on one. With two threads that leaves ~25 % of a convolution single-threaded, and waking
OpenBLAS's own workers for every product costs more (the first copy after a multi-threaded
product is slow while they spin). Instead, the engine hands whole batch chunks (gather, product,
output write) to a team of Python threads (:mod:`._team`: the caller runs one chunk of each
round, the others wait for work by spinning a moment, then sleeping), each of which runs
*single-threaded* BLAS: numpy releases the GIL in copies, ufuncs and ``matmul``, so every step
of a chunk runs in parallel.

Thread count (:func:`workers`): ``tuning(threads=n)`` when set (honoured as asked, not capped
by the CPUs, so that a 3-way split can be tested on 2 cores); otherwise as many workers as
numpy's BLAS would use (``threadpoolctl`` limits, ``OPENBLAS_NUM_THREADS`` and the like are
honoured), capped by the CPUs; with 1 everything stays on the caller's thread. Inside a chunk
(a team thread, or the caller while its round runs) it is 1: nested engine calls run plainly
there.

BLAS limits go through ``threadpoolctl`` (one :class:`~threadpoolctl.ThreadpoolController`
per process, made at first use: it scans the loaded libraries, ~1 ms; an install without
threadpoolctl knows no BLAS: one worker unless ``tuning(threads=n)``, BLAS never limited; a
BLAS loaded after that first use is not seen). Most BLAS builds
(OpenBLAS with pthreads, BLIS) have one process-wide thread count; libraries whose count is
per thread (MKL, OpenBLAS built with OpenMP) are set to one thread in each team thread once and
never touched elsewhere (the caller's own chunk runs with the caller's count, as a serial run).
For a process-wide count:

* Every engine run (a call's chunks on a team, or on the caller's thread) holds BLAS at 1
  thread (:func:`held`). Runs are reference-counted: the first to open records the user's
  counts and sets 1, the last to close restores them (~10 us the pair), so runs from several
  user threads go on at the same time, and each splits its work by the recorded user count
  (:func:`workers`), not by the 1. A product big enough to share is split over the engine's
  threads (:func:`rot180.functional._products.matmul`), never handed to BLAS's threads.
* Why never BLAS's own threads: after a multi-threaded product, OpenBLAS's idle workers spin
  for ~0.1 s (2**28 cycles; ``OPENBLAS_THREAD_TIMEOUT``) and take a core from the engine's
  threads. In whole training steps that cost a third of the time (BENCHMARKS.md, issue 13:
  ``resnet_small(16)`` 82 -> 62 ms, ``vgg_small(32)`` 135 -> 91 ms on 2 cores).
* The small lock behind this guards counters only and is never held while chunks run. A
  chunk that raises closes its run as usual (the chunks not started are cancelled, the
  running ones waited for), so the count is restored and no counter leaks.

Determinism: the work is split into chunks from the shapes and the thread count alone, each
chunk writes its own slice of the output, anything summed over chunks is summed by the caller
in chunk order (:func:`map_chunks` returns results in order), and every product runs on
single-threaded BLAS, so results do not depend on thread timing, on what other user threads
run at the same time, or on which BLAS count the user set (beyond the split it implies).

Chunks run in a copy of the caller's :mod:`contextvars` context (one per chunk): they see the
caller's :func:`~rot180.functional.tuning` settings and, with numpy >= 2, its ``errstate``.

What this cannot control: numpy products outside rot180 in another user thread run with BLAS
at 1 while an engine run is open. A BLAS limit set from another thread while a run is open
(``threadpool_limits``, a library's ``set_num_threads``) applies to the products that follow.
The last run to close restores the recorded count only if BLAS is still at the 1 it set, so a
newer user setting stands; but a ``threadpool_limits`` block entered while a run is open
records that 1 and restores it when it ends. So set BLAS limits while no other thread runs
convolutions (around the whole workload). A forked child starts with no run open and BLAS
restored, and gets team threads of its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

try:                    # a core dependency; an install without it runs chunks on one thread
    from threadpoolctl import ThreadpoolController
except ImportError:     # pragma: no cover - tests/test_cli_startup.py runs it in a subprocess
    ThreadpoolController = None

from . import _team
from ._tuning import get_tuning

T = TypeVar("T")
R = TypeVar("R")


# --- numpy's BLAS, through threadpoolctl ------------------------------------------------------

def _per_thread(lib: object) -> bool:
    """Whether threadpoolctl sets this library's count for the calling thread only: MKL (its
    ``_Local`` setter) and OpenBLAS on the OpenMP threading layer."""
    return (getattr(lib, "internal_api", "") == "mkl"
            or getattr(lib, "threading_layer", "") == "openmp")


def _count(lib: object) -> int:
    return max(1, int(getattr(lib, "num_threads", None) or 1))


class _Blas:
    """The BLAS libraries threadpoolctl finds once numpy's is loaded, split by the scope of
    their thread count, and the one numpy calls (its count is the user's count)."""

    def __init__(self) -> None:
        np.ones((2, 2)) @ np.ones((2, 2))       # make sure the library is loaded
        libs = ([] if ThreadpoolController is None else
                list(ThreadpoolController().select(user_api="blas").lib_controllers))
        self.shared = [lib for lib in libs if not _per_thread(lib)]
        self.local = [lib for lib in libs if _per_thread(lib)]
        root = Path(np.__file__).resolve().parent     # wheels: numpy.libs/ or numpy/.dylibs/
        own = [lib for lib in libs
               if any(Path(lib.filepath).resolve().is_relative_to(folder)
                      for folder in (root, root.parent / "numpy.libs"))]
        self.numpy = (own or libs or [None])[0]
        kinds = {type(lib) for lib in self.shared}
        self.releases = [k.clear_controlling_thread for k in kinds
                         if hasattr(k, "clear_controlling_thread")]
        self.numpy_shared = next((i for i, lib in enumerate(self.shared) if lib is self.numpy),
                                 -1)

    def counts(self) -> list[int]:
        return [_count(lib) for lib in self.shared]

    def set_shared(self, counts: Sequence[int]) -> None:
        # threadpoolctl (3.8 here) lets one thread at a time change OpenBLAS's process-wide count
        # and silently ignores the others. A region must set its count whichever thread opens
        # or closes it (else a chunk's bits would depend on which thread last held a
        # threadpool_limits block), so it takes that control for its change and hands it back.
        for release in self.releases:
            release(force=True)
        for lib, n in zip(self.shared, counts, strict=True):
            lib.set_num_threads(n)
        for release in self.releases:
            release()


_BLAS: _Blas | None = None
_CPUS = os.cpu_count() or 1                     # os.cpu_count() costs ~20 us a call
_LOCK = threading.Lock()                        # guards _BLAS creation


def _blas() -> _Blas:
    global _BLAS
    if _BLAS is None:
        with _LOCK:
            if _BLAS is None:
                _BLAS = _Blas()
    return _BLAS


# --- BLAS at one thread while the engine runs -------------------------------------------------

class _Regions:
    """Engine runs open in this process (see the module docstring): the first to open records
    the user's counts and sets BLAS to one thread, the last to close restores them. Only
    counters: the lock is never held while chunks run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held = 0                           # open runs, all threads together
        self.saved: list[int] | None = None     # the user's counts, while runs hold 1
        self.opened = 0                         # pooled runs opened (for tests, plans)

    def open(self, blas: _Blas) -> None:
        with self.lock:
            if not self.held:
                counts = blas.counts()
                if any(n != 1 for n in counts):
                    self.saved = counts
                    blas.set_shared([1] * len(counts))
            self.held += 1

    def close(self, blas: _Blas) -> None:
        with self.lock:
            self.held -= 1
            if not self.held and self.saved is not None:
                # Restore what is still ours; a count someone changed meanwhile stands.
                now = blas.counts()
                blas.set_shared([s if n == 1 else n
                                 for s, n in zip(self.saved, now, strict=True)])
                self.saved = None

    def user_count(self, blas: _Blas) -> int:
        """numpy's BLAS count as the user set it (the recorded one while runs hold 1)."""
        lib = blas.numpy
        if lib is None:
            return 1
        saved = self.saved
        if saved is not None and blas.numpy_shared >= 0:
            with self.lock:                     # re-read: the last run may just close
                saved = self.saved
                if saved is not None:
                    return saved[blas.numpy_shared]
        return _count(lib)


_REGIONS = _Regions()


def _after_fork() -> None:
    """A forked child inherits counters (and perhaps a held lock) of threads it does not have:
    start afresh, with BLAS restored where a region of the parent held it at 1."""
    global _REGIONS
    saved = _REGIONS.saved
    _REGIONS = _Regions()
    if saved is not None and _BLAS is not None:
        _BLAS.set_shared(saved)


os.register_at_fork(after_in_child=_after_fork)


# --- the team ---------------------------------------------------------------------------------

# Set in team threads, and in a thread while its pooled chunks run: nested engine calls run
# plainly there.
_INSIDE = threading.local()
_HELD = threading.local()                       # depth of held() on this thread


def workers() -> int:
    """How many threads :func:`map_chunks` runs on: ``tuning(threads=n)``'s ``n`` where set,
    else numpy's BLAS thread count as the user set it, capped by the CPUs; 1 inside chunks
    (no nesting)."""
    if getattr(_INSIDE, "flag", False):
        return 1
    asked = get_tuning().threads
    if asked is not None:
        return asked
    return min(_REGIONS.user_count(_blas()), _CPUS)


def _init_worker() -> None:
    _INSIDE.flag = True
    for lib in _blas().local:                   # a per-thread count: this thread's, once
        lib.set_num_threads(1)
    # As the engine's entry points (_clipped.quiet): NaN from inf * 0 is the caller's data.
    # (numpy >= 2 keeps errstate in a context variable: chunks run in the caller's context.)
    np.seterr(invalid="ignore", over="ignore")


@contextlib.contextmanager
def held() -> Iterator[None]:
    """numpy's BLAS at one thread on every thread while the block runs (nested: nothing more).

    Every engine run holds it: a product of ours never wakes OpenBLAS's own workers, whose
    spinning after each multi-threaded product (~0.1 s, OPENBLAS_THREAD_TIMEOUT) took a core
    from the engine's threads (BENCHMARKS.md, issue 13). A caller that runs many engine calls
    back to back (a training step) may hold it around all of them: one set and restore."""
    if getattr(_INSIDE, "flag", False) or getattr(_HELD, "depth", 0):
        yield
        return
    blas, regions = _blas(), _REGIONS
    if not blas.shared:                         # no process-wide count to hold
        yield
        return
    regions.open(blas)
    _HELD.depth = 1
    try:
        yield
    finally:
        _HELD.depth = 0
        if regions is _REGIONS:                 # (else forked meanwhile: a fresh count)
            regions.close(blas)


def map_chunks(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``fn`` over ``items``; results lazily and in item order.

    ``threads > 1`` (and more than one item): a pooled run, in rounds of ``threads`` items on
    the caller and ``threads - 1`` team threads (:mod:`._team`), each chunk in a copy of the
    caller's context; inside a chunk (the caller's own included), nested engine calls run
    plainly. Otherwise a serial run here, where a nested call (a product too big for one
    thread: :func:`._products.matmul`) may still pool. Either way numpy's BLAS is held at one
    thread meanwhile (:func:`held`). If a chunk raises, its round is waited for, the later
    rounds never start, the run closes and the first failing item's exception propagates.
    Results come in item order, a round at a time, so a caller summing them does so in a
    fixed order and holds at most ``threads`` of them; consume the iterator to the end (or
    close it).
    """
    items = list(items)
    if getattr(_INSIDE, "flag", False):
        yield from map(fn, items)
        return
    if not (threads > 1 and len(items) > 1):
        with held():                            # a serial run: nested calls may still pool
            yield from map(fn, items)
        return
    with held():
        with _REGIONS.lock:
            _REGIONS.opened += 1
        team = _team.acquire(threads - 1, _init_worker)
        _INSIDE.flag = True
        try:
            # A round of `threads` chunks at a time (the caller runs the first), its results
            # yielded once the round is done: a call never runs on more threads than planned,
            # and nothing runs while this generator is suspended.
            for r in range(0, len(items), threads):
                part = items[r:r + threads]
                yield from team.round(fn, part, [contextvars.copy_context() for _ in part])
        finally:
            _team.give_back(team)
            _INSIDE.flag = False


def run_chunks(fn: Callable[[T], object], items: Iterable[T], threads: int) -> None:
    """:func:`map_chunks` for its effects only (each chunk writes its own part of an output)."""
    with contextlib.closing(map_chunks(fn, items, threads)) as parts:
        for _ in parts:
            pass


def sum_chunks(fn: Callable[[T], np.ndarray], items: Iterable[T], threads: int) -> np.ndarray:
    """The sum of ``fn`` over ``items`` (partial kernel gradients), added in item order, never
    in completion order, so the bits do not depend on thread timing. ``items`` is not empty."""
    # closing: an exception here (or a KeyboardInterrupt between two results) must still close
    # the region, not leave it open in a suspended generator that a traceback keeps alive.
    with contextlib.closing(map_chunks(fn, items, threads)) as parts:
        acc = next(parts)
        for part in parts:
            acc += part
    return acc
