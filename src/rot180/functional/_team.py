"""A team of worker threads for :func:`rot180.functional._parallel.map_chunks`: the caller and
``size`` workers run a call's chunks in rounds, and members wait for work by spinning a moment,
then sleeping.

Why not :class:`concurrent.futures.ThreadPoolExecutor` (what the engine used until issue 13's
eighth pass): its threads sleep on a lock between jobs, and on this machine's virtual CPUs a
two-chunk run cost 27 us back to back and 361 us after 0.1 s idle, as long as a whole small
chunk takes; and the caller sat idle while the pool ran every chunk, so each call paid two
wake-ups (an empty two-chunk run now: 22-25 us back to back). A BatchNorm or a ReLU
of a few MiB could not be shared at all (``_fused.PARALLEL_MIN_BYTES`` was 8 MiB). Here:

* **Rounds.** Items ``r*n .. r*n + n - 1`` (``n`` the call's thread count) are round ``r``: the
  caller runs the first, worker ``w`` the ``w + 1``-th. The caller waits for the round, then
  yields its results in item order, and posts the next round only when those are taken; so a
  call runs on at most ``n`` threads, keeps at most ``n`` results alive, and a suspended
  :func:`~._parallel.map_chunks` has no work in flight.
* **The wait.** Each member waits on its own 64-byte cell of an int64 array, a counter:
  ``_teamc.wait_change`` (C, the GIL released) spins until the cell changes or its time
  (:data:`SPIN_NS` for a worker's next job, :data:`JOIN_SPIN_NS` for the caller's round)
  passes, yielding the CPU every few microseconds; then the member sleeps on the team's
  condition variable until it changes. The caller posts a job under the GIL (the job is a
  Python object the worker reads under the GIL, so the cell is only a signal); a worker
  reports a finished job from ``wait_change``, once it has let the GIL go, so that the
  caller spinning for it takes a free GIL (a contended one puts the taker to sleep: a
  wake-up again), and it waits :data:`SETTLE_NS` after seeing a job for the same reason.
  The caller's asleep flag is a cell too, watched by the spinning worker; the flags and
  cells are written and read in an order that lets no wake-up be lost (see ``_next_job``).
  Without the compiled ``_teamc``, or with more members than CPUs (a spinning member would
  take the core another one needs), members sleep at once.
* **Taking over.** A job its worker has not taken when the caller's own chunk is done (the
  worker was asleep and is still waking) is run by the caller, so a call after an idle moment
  costs at most what one thread takes; the worker, once awake, finds its slot empty.
* **Teams.** One per concurrent caller: a caller takes a free team with at least the workers it
  needs (the smallest such) or starts one, and gives it back when its call ends. Starting a
  larger team retires the smaller free ones, so threads (and their per-thread scratch) scale
  with the largest count asked and with how many user threads pool at once, not with how
  many counts were asked. A forked child starts with no teams (the parent's threads are not
  in it).

Worker threads are daemons named ``rot180-chunk-<w>``; each runs ``initializer`` once, first.
A chunk that raises is stored as the chunk's result; the round still waits for every member
(they write the call's output) and then raises the first failing item's exception, in item
order, and the later rounds never start.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from contextvars import Context
from typing import Any

import numpy as np

from ._tuning import _helper_default

try:                    # optional compiled helper (setup.py): without it members never spin
    from . import _teamc
except ImportError:     # pragma: no cover - the NumPy-only install (tests/test_team.py)
    _teamc = None
if not _helper_default():   # ROT180_PURE_NUMPY=1: none of our C (tuning(helper=) is per call,
    _teamc = None           # the team per process; the spin changes no result either way)

# How long a member spins for its next job (the caller's next call) before it sleeps: 2 ms
# covers the Python code between one engine call of a training step and the next, and is the
# most it burns a core for nothing after the last call. Measured with train_step.py (steps
# whose calls come back to back gained; BENCHMARKS.md, "Issue 13, eighth pass"). Tests set 0
# (sleep at once) and a long spin.
SPIN_NS = 2_000_000
# How long the caller spins for the end of its round before it sleeps: its members run the
# round's chunks meanwhile, each on a core of its own, so the spin takes no one's core; 10 ms,
# so that the wake-up after (0.03-0.4 ms) costs at most a few per cent of the wait.
JOIN_SPIN_NS = 10_000_000
# How long a worker that saw its job keeps spinning before it asks for the GIL, so that the
# caller, which posted the job and runs its own chunk's first Python lines, has released it
# (``_teamc.c``: an empty round 37-40 -> 22-25 us, resnet_small(16)'s step 59.8 -> 57.7 ms).
SETTLE_NS = 2_000
_LINE = 8               # int64s per 64-byte cache line: one cell per line, none shared
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_KEEP = 4               # free teams kept; one more given back retires the smallest

Job = tuple[Context, Callable[[Any], Any], Any]


class Team:
    """``size`` worker threads and the caller (member ``size``), each waiting on its own cell."""

    def __init__(self, size: int, initializer: Callable[[], None]) -> None:
        self.size = size
        self.pid = os.getpid()
        # One cache line each: the jobs posted to worker w (line w), the jobs it finished (line
        # size + w), and whether the caller sleeps, waiting for a round's end (line 2 size).
        self.cells = np.zeros((2 * size + 1) * _LINE, np.int64)
        self.posted = [0] * size
        # Worker w's posted job, taken by list.pop (atomic under the GIL): by the worker, or by
        # the caller if the worker has not taken it when the caller's own chunk is done.
        self.slots: list[list[Job | None]] = [[] for _ in range(size)]
        self.results: list[tuple[bool, Any]] = [(True, None)] * size
        self.asleep = [False] * size          # workers asleep on cond (read under the GIL)
        self._caller_asleep = 2 * size * _LINE          # cell index: the caller sleeps
        self.cond = threading.Condition(threading.Lock())
        self.initializer = initializer
        self.threads = [threading.Thread(target=self._serve, args=(w,), daemon=True,
                                         name=f"rot180-chunk-{w}") for w in range(size)]
        for t in self.threads:
            t.start()

    # --- the wait -------------------------------------------------------------------------

    def _spins(self) -> bool:
        return _teamc is not None and self.size + 1 <= _CPUS

    def _sleep(self, cell: int, seen: int, member: int) -> int:
        """Sleep on the condition until ``cells[cell]`` is not ``seen``; its value."""
        with self.cond:
            self._mark_asleep(member, 1)
            while (v := int(self.cells[cell])) == seen:
                self.cond.wait()
            self._mark_asleep(member, 0)
        return v

    def _mark_asleep(self, member: int, value: int) -> None:
        """Set or clear ``member``'s asleep flag (under the condition's lock)."""
        if member < self.size:                  # read by the poster, under the GIL
            self.asleep[member] = bool(value)
        elif _teamc is not None:
            # The caller's flag is read by spinning workers outside the GIL: a fenced store,
            # so the caller's next read of its cell cannot pass it (else both could miss).
            _teamc.store(self.cells, self._caller_asleep, value)
        else:
            self.cells[self._caller_asleep] = value

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _next_job(self, w: int, seen: int, done: int | None) -> int:
        """Worker ``w``: report job ``done`` finished (None: none yet), then wait for the job
        after ``seen``; its number."""
        post, done_cell = w * _LINE, (self.size + w) * _LINE
        if self._spins():
            # The report is written with the GIL released (the caller, spinning for it, then
            # takes a free GIL), and the spin watches the caller's flag: a caller that went
            # to sleep meanwhile is woken here, under the GIL.
            v = _teamc.wait_change(self.cells, post, seen, SPIN_NS,
                                   signal=-1 if done is None else done_cell,
                                   value=0 if done is None else done,
                                   watch=-1 if done is None else self._caller_asleep,
                                   settle_ns=SETTLE_NS)
            if done is not None and self.cells[self._caller_asleep]:
                self._wake()
                if v == seen:
                    v = _teamc.wait_change(self.cells, post, seen, SPIN_NS,
                                           settle_ns=SETTLE_NS)
            if v != seen:
                return v
        elif done is not None:
            self.cells[done_cell] = done
            if self.cells[self._caller_asleep]:
                self._wake()
        return self._sleep(post, seen, w)

    # --- the workers ----------------------------------------------------------------------

    def _serve(self, w: int) -> None:
        self.initializer()
        seen, done = 0, None
        while True:
            seen = self._next_job(w, seen, done)
            done = seen
            try:
                job = self.slots[w].pop()
            except IndexError:                  # the caller ran it
                continue
            if job is None:                     # retired
                return
            self.results[w] = _run(job)
            del job

    def _post(self, w: int, job: Job | None) -> None:
        """Give worker ``w`` its next job (None: stop), then wake it if it sleeps (it sets its
        flag under the GIL, as this runs: it sees the new count or is woken)."""
        self.slots[w].append(job)
        self.posted[w] += 1
        self.cells[w * _LINE] = self.posted[w]
        if self.asleep[w]:
            self._wake()

    def retire(self) -> None:
        """Stop the workers (a free team only): each takes a None job and returns."""
        for w in range(self.size):
            self._post(w, None)

    def _join(self, workers: Sequence[int]) -> None:
        """Wait until each of ``workers`` finished its job, even through a KeyboardInterrupt
        (they write the call's output, and the team is reused), which is raised once they
        have."""
        interrupted: BaseException | None = None
        for w in workers:
            cell, goal = (self.size + w) * _LINE, self.posted[w]
            seen = int(self.cells[cell])
            # (A job the caller ran is reported too, once its worker wakes: values between.)
            while seen != goal and self._spins():
                v = _teamc.wait_change(self.cells, cell, seen, JOIN_SPIN_NS)
                if v == seen:
                    break
                seen = v
            while seen != goal:
                try:
                    seen = self._sleep(cell, seen, self.size)
                except BaseException as exc:    # noqa: BLE001 - re-raised below
                    interrupted = exc
                    self._mark_asleep(self.size, 0)
                    seen = int(self.cells[cell])
        if interrupted is not None:
            raise interrupted

    # --- a round --------------------------------------------------------------------------

    def round(self, fn: Callable[[Any], Any], items: Sequence[Any],
              contexts: Sequence[Context]) -> list[Any]:
        """``fn(items[i])`` in ``contexts[i]`` for every ``i`` (at most ``size + 1`` items):
        item 0 here, item ``w + 1`` on worker ``w``; the results in item order once all are
        done, or the first failing item's exception."""
        workers = len(items) - 1
        started, outcomes = 0, [None] * (workers + 1)
        ran_here: list[int] = []
        try:
            for w in range(workers):
                self._post(w, (contexts[w + 1], fn, items[w + 1]))
                started = w + 1
            outcomes[0] = _run((contexts[0], fn, items[0]))
            # A job its worker has not taken yet (it was asleep and is still waking, 0.03-0.4
            # ms): run it here rather than wait (after an idle moment, a call costs at most
            # what one thread takes).
            for w in range(started):
                try:
                    job = self.slots[w].pop()
                except IndexError:
                    continue
                ran_here.append(w)
                outcomes[w + 1] = _run(job)
        finally:
            self._join([w for w in range(started) if w not in ran_here])
        for w in range(workers):
            if w not in ran_here:
                outcomes[w + 1], self.results[w] = self.results[w], (True, None)
        for ok, value in outcomes:
            if not ok:
                raise value
        return [value for _, value in outcomes]


def _run(job: Job) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)`` of one chunk."""
    ctx, fn, item = job
    try:
        return True, ctx.run(fn, item)
    except BaseException as exc:                # noqa: BLE001 - the round re-raises it
        return False, exc


# --- the free teams -------------------------------------------------------------------------

_FREE: list[Team] = []
_FREE_LOCK = threading.Lock()


def acquire(size: int, initializer: Callable[[], None]) -> Team:
    """A free team of at least ``size`` workers (the smallest such), else a new one; free
    teams smaller than a new one are retired."""
    with _FREE_LOCK:
        fits = [t for t in _FREE if t.size >= size]
        if fits:
            team = min(fits, key=lambda t: t.size)
            _FREE.remove(team)
            return team
        smaller = list(_FREE)
        _FREE.clear()
    for old in smaller:
        old.retire()
    return Team(size, initializer)


def give_back(team: Team) -> None:
    """Return ``team`` to the free list (one of a forked-from parent is dropped)."""
    if team.pid != os.getpid():
        return
    with _FREE_LOCK:
        _FREE.append(team)
        extra = None
        if len(_FREE) > _KEEP:
            extra = min(_FREE, key=lambda t: t.size)
            _FREE.remove(extra)
    if extra is not None:
        extra.retire()


def teams() -> list[Team]:
    """The free teams, largest last (for tests)."""
    with _FREE_LOCK:
        return sorted(_FREE, key=lambda t: t.size)


def _after_fork() -> None:
    global _FREE_LOCK
    _FREE.clear()
    _FREE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
