"""Shared helpers for the benchmarks: thread control, machine facts, matmul rate, timing.

Timing rule: warm every candidate up, then run the candidates interleaved in short blocks
(A A A, B B B, A A A, ...) so that a burst of load from elsewhere on the machine hits both
alike, and report medians.
"""

from __future__ import annotations

import datetime
import gc
import math
import os
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def blas_info() -> dict:
    """numpy's BLAS as threadpoolctl sees it: library, version, kernel (architecture), threads."""
    for entry in threadpool_info():
        if entry.get("user_api") == "blas" and "numpy" in entry.get("filepath", ""):
            return entry
    for entry in threadpool_info():
        if entry.get("user_api") == "blas":
            return entry
    return {}


def set_threads(n: int | None) -> int:
    """Use ``n`` threads in numpy's BLAS and in torch (default: what numpy's BLAS already uses)."""
    import torch

    if n is None:
        n = int(blas_info().get("num_threads") or os.cpu_count() or 1)
    threadpool_limits(limits=n, user_api="blas")
    torch.set_num_threads(n)
    return n


def machine_info(threads: int) -> dict:
    import torch

    blas = blas_info()
    env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS", "OMP_", "MKL_"))}
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "blas": f"{blas.get('internal_api', '?')} {blas.get('version', '?')}",
        "blas_kernel": blas.get("architecture", "?"),
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "env": env or "none of OPENBLAS_*/OMP_*/MKL_* set",
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def matmul_gflops(n: int = 2048, repeats: int = 9, clock: str = "wall") -> float:
    """Measured float32 ``np.matmul`` rate of an ``n x n`` square product, GFLOP/s.

    The best of ``repeats``: the rate the machine can reach, the yardstick for the layers.
    """
    now = CLOCKS[clock]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        t0 = now()
        np.matmul(a, b, out=out)
        times.append(now() - t0)
    return 2 * n**3 / min(times) / 1e9


def interleaved(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 2,
                clock: str = "wall", block: int = 3, pause: float = 0.0) -> list[float]:
    """Median seconds per call of each function: ``repeats`` timed calls each, run round-robin
    in blocks of ``block`` consecutive calls (A A A, pause, B B B, pause, A A A ...).

    Blocks and pauses rather than single alternating calls: both libraries keep their worker
    threads spinning for a while after a call (OpenBLAS for up to ~0.1 s, OpenMP briefly), and
    with every core in use the library that runs next fights the other's spinners. A user runs
    one library at a time; an untimed ``pause`` lets the spinners go to sleep between blocks.
    ``clock="cpu"`` measures process CPU time: with one thread it ignores time the process
    waits while other work occupies the cores (a shared machine), but with several it counts
    spinning too, so it is for one thread only.
    """
    now = CLOCKS[clock]
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    gc_was = gc.isenabled()
    gc.disable()
    try:
        while len(times[0]) < repeats:
            for f, ts in zip(fns, times, strict=True):
                if pause:
                    time.sleep(pause)
                for _ in range(min(block, repeats - len(ts))):
                    t0 = now()
                    f()
                    ts.append(now() - t0)
    finally:
        if gc_was:
            gc.enable()
    return [float(np.median(ts)) for ts in times]


class ForeignLoad:
    """Share of the machine's CPU time used by *other* processes between start and stop.

    Linux only (``/proc/stat``); ``None`` elsewhere. On a shared machine this says how much a
    run was disturbed: busy time of all CPUs minus this process's own user + system time.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [float(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        own = os.times()
        return sum(fields) / tick, idle / tick, own.user + own.system

    def fraction(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        total = end[0] - self.start[0]
        busy = total - (end[1] - self.start[1])
        foreign = busy - (end[2] - self.start[2])
        return max(0.0, foreign / total) if total > 0 else None


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))
