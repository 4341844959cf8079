"""Batch chunks on a small pool of threads, and the per-thread scratch buffers they use.

numpy runs only its BLAS products on several cores; the copies, sums and transposes around them
run on one. With two threads that leaves ~25 % of a convolution single-threaded, and waking
OpenBLAS's own workers for every product costs more (the first copy after a multi-threaded
product is slow while they spin). Instead, the engine hands whole batch chunks (gather, product,
output write) to a pool of Python threads, each of which runs *single-threaded* BLAS: numpy
releases the GIL in copies, ufuncs and ``matmul``, so every step of a chunk runs in parallel.

Thread count: as many workers as numpy's BLAS would use (``threadpoolctl`` limits, ``OPENBLAS_
NUM_THREADS`` and the like are honoured; with 1 everything stays on the caller's thread). While
the workers run, OpenBLAS is set to one thread through ``openblas_set_num_threads`` (found with
``ctypes`` in the library numpy loaded) and restored afterwards. Its ``_local`` variant would
be neater but changes the process-wide count in OpenBLAS 0.3.31 (measured). With another BLAS,
or without those symbols, chunks run serially.

Determinism: the work is split into chunks from the shapes and the thread count alone, each
chunk writes its own slice of the output, and anything summed over chunks is summed by the
caller in chunk order (:func:`map_chunks` returns results in order), so results do not depend
on thread timing. One region runs at a time, so no call sees a thread count another set.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

# --- per-thread scratch -----------------------------------------------------------------------

# One reusable flat buffer per (tag, dtype) and thread, grown to the largest request. Fresh
# large allocations are served by mmap and page-fault on first touch on every call; reusing the
# same pages removes that cost. A tag is never handed out twice at once within a thread, and
# nothing escapes the engine: results are always fresh arrays.
_SCRATCH = threading.local()
_SCRATCH_KEEP_MAX = 64 * 2**20      # larger requests are not kept between calls


def scratch(shape: tuple[int, ...], dtype: np.dtype, tag: str) -> np.ndarray:
    """An uninitialised ``shape`` buffer backed by memory reused across calls (per thread)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    if size * dtype.itemsize > _SCRATCH_KEEP_MAX:
        return np.empty(shape, dtype)
    pool = _SCRATCH.__dict__.setdefault("pool", {})
    buf = pool.get((tag, dtype.str))
    if buf is None or buf.size < size:
        buf = pool[(tag, dtype.str)] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


# --- numpy's OpenBLAS, through ctypes ---------------------------------------------------------

class _Blas:
    """``get_num_threads`` and ``set_num_threads`` of numpy's OpenBLAS (None if not found)."""

    def __init__(self) -> None:
        self.get: Callable[[], int] | None = None
        self.set: Callable[[int], None] | None = None
        np.ones((2, 2)) @ np.ones((2, 2))       # make sure the library is loaded
        for path in self._candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            get = self._symbol(lib, ("scipy_openblas_get_num_threads64_",
                                     "openblas_get_num_threads64_", "openblas_get_num_threads"))
            set_ = self._symbol(lib, ("scipy_openblas_set_num_threads64_",
                                      "openblas_set_num_threads64_", "openblas_set_num_threads"))
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes, set_.restype = [ctypes.c_int], None
                self.get, self.set = get, set_
                return

    @staticmethod
    def _symbol(lib: ctypes.CDLL, names: Iterable[str]):
        return next((getattr(lib, n) for n in names if hasattr(lib, n)), None)

    @staticmethod
    def _candidates() -> list[str]:
        found = []
        try:                                    # Linux: the libraries this process mapped
            with open("/proc/self/maps") as fh:
                found = sorted({f[-1] for f in map(str.split, fh)
                                if len(f) >= 6 and "openblas" in f[-1].lower()})
        except OSError:
            pass
        root = Path(np.__file__).resolve().parent
        for folder in (root.parent / "numpy.libs", root / ".dylibs"):
            found += sorted(str(p) for p in folder.glob("*openblas*"))
        return found

    def threads(self) -> int:
        """Threads numpy's BLAS uses now (1 when its thread count cannot be changed)."""
        if self.get is None:
            return 1
        return max(1, int(self.get()))


_BLAS: _Blas | None = None
_CPUS = os.cpu_count() or 1                     # os.cpu_count() costs ~20 us a call
_LOCK = threading.Lock()
# Held while chunks run (see map_chunks); a second user thread waits for it.
_REGION = threading.Lock()
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
# Set in pool workers, and in the thread holding _REGION: nested engine calls run plainly.
_INSIDE = threading.local()
# The BLAS thread count a region replaced (0: none active). Other threads read it, so that
# they split work by the user's thread count, not by the 1 set for the region.
_REPLACED = 0


def _blas() -> _Blas:
    global _BLAS
    if _BLAS is None:
        with _LOCK:
            if _BLAS is None:
                _BLAS = _Blas()
    return _BLAS


def workers() -> int:
    """How many threads :func:`map_chunks` runs on: numpy's BLAS thread count, capped by the
    CPUs; 1 inside a region (no nesting) or when BLAS's thread count cannot be changed."""
    if getattr(_INSIDE, "flag", False):
        return 1
    return min(_REPLACED or _blas().threads(), _CPUS)


def _init_worker() -> None:
    _INSIDE.flag = True
    # As the engine's entry points (_clipped.quiet): NaN from inf * 0 is the caller's data.
    np.seterr(invalid="ignore", over="ignore")


def _pool(n: int) -> ThreadPoolExecutor:
    key = (os.getpid(), n)                      # a forked child needs threads of its own
    pool = _POOLS.get(key)
    if pool is None:
        with _LOCK:
            pool = _POOLS.get(key)
            if pool is None:
                pool = _POOLS[key] = ThreadPoolExecutor(
                    n, thread_name_prefix="rot180-chunk", initializer=_init_worker)
    return pool


def map_chunks(fn: Callable[[T], R], items: Iterable[T], threads: int) -> Iterator[R]:
    """``fn`` over ``items``; results lazily and in item order.

    ``threads > 1``: on that many pool threads, with numpy's BLAS set to one thread meanwhile
    and restored afterwards (several threads each calling a multi-threaded product
    oversubscribe the cores badly, and OpenBLAS's count is process-wide). Otherwise here, BLAS
    untouched. One caller at a time: a second user thread waits, so that nobody's products
    run with a thread count another thread set.
    Results come in item order, so a caller summing them does so in a fixed order while later
    chunks still run; consume the iterator to the end.
    """
    global _REPLACED
    items = list(items)
    blas = _blas()
    if getattr(_INSIDE, "flag", False) or blas.set is None:
        yield from map(fn, items)
        return
    pooled = threads > 1 and len(items) > 1
    with _REGION:
        _INSIDE.flag = True
        before = blas.threads()
        try:
            if pooled:
                _REPLACED = before
                blas.set(1)
            yield from _pool(threads).map(fn, items) if pooled else map(fn, items)
        finally:
            if pooled:
                blas.set(before)
                _REPLACED = 0
            _INSIDE.flag = False


def run_chunks(fn: Callable[[T], object], items: Iterable[T], threads: int) -> None:
    """:func:`map_chunks` for its effects only (each chunk writes its own part of an output)."""
    for _ in map_chunks(fn, items, threads):
        pass


def sum_chunks(fn: Callable[[T], np.ndarray], items: Iterable[T], threads: int) -> np.ndarray:
    """The sum of ``fn`` over ``items`` (partial kernel gradients), added in item order, never
    in completion order, so the bits do not depend on thread timing. ``items`` is not empty."""
    parts = map_chunks(fn, items, threads)
    acc = next(parts)
    for part in parts:
        acc += part
    return acc
