"""The engine's thread team (rot180.functional._team): rounds, both waits (spin and sleep), errors,
teams per caller, and the compiled spin (_teamc) on its own."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rot180.functional import _parallel as P
from rot180.functional import _team
from rot180.functional._tuning import tuning

TIMEOUT = 60

WAITS = {
    "spin": {"SPIN_NS": 50_000_000, "JOIN_SPIN_NS": 50_000_000},
    "sleep": {"SPIN_NS": 0, "JOIN_SPIN_NS": 0},
    "short spins": {"SPIN_NS": 1_000, "JOIN_SPIN_NS": 1_000},
    "no helper": {"_teamc": None},
    "more members than CPUs": {"_CPUS": 1},
}


@pytest.fixture(params=list(WAITS))
def wait(request, monkeypatch):
    """Each way a member waits. Fresh teams, so that none started under another setting (a
    worker spinning with an old SPIN_NS) carries over."""
    for name, value in WAITS[request.param].items():
        monkeypatch.setattr(_team, name, value)
    _retire_free_teams()
    yield request.param
    _retire_free_teams()


def _retire_free_teams() -> None:
    """Empty the free list in place (the module keeps using the same list) and stop its teams."""
    with _team._FREE_LOCK:
        free = list(_team._FREE)
        _team._FREE.clear()
    for team in free:
        team.retire()


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_rounds_give_every_result_in_item_order(wait, threads):
    for n in [2, threads, threads + 1, 3 * threads + 2]:
        got = list(P.map_chunks(lambda i: (i, threading.current_thread().name), range(n),
                                threads))
        assert [i for i, _ in got] == list(range(n))
        here = threading.current_thread().name
        # The caller runs the first item of each round; a worker the others, unless it had not
        # taken its job when the caller's was done (then the caller ran that one too).
        assert all(name == here for i, (_, name) in enumerate(got) if i % threads == 0)
        assert all(name == here or name.startswith("rot180-chunk-") for _, name in got)


def test_the_caller_runs_a_job_its_worker_has_not_taken(wait, monkeypatch):
    """A worker slow to wake (here held back 30 ms before it looks at its slot) finds its job
    run by the caller; the counts stay in step, so the rounds after run on the worker again."""
    _retire_free_teams()
    late = threading.Event()
    original = _team.Team._next_job

    def slow(self, w, seen, done):
        v = original(self, w, seen, done)
        if not late.is_set():
            time.sleep(0.03)
        return v

    monkeypatch.setattr(_team.Team, "_next_job", slow)
    here = threading.current_thread().name
    for _ in range(3):
        got = list(P.map_chunks(lambda i: (i, threading.current_thread().name), range(4), 2))
        assert got == [(i, here) for i in range(4)]
    late.set()
    time.sleep(0.1)                             # the worker catches up with the stolen posts

    def chunk(i: int) -> tuple[int, str]:
        if i % 2 == 0:
            time.sleep(0.005)                   # the caller's own: time for the worker
        return i, threading.current_thread().name

    names = set()
    for _ in range(5):
        got = list(P.map_chunks(chunk, range(4), 2))
        assert [i for i, _ in got] == list(range(4))
        names |= {n for _, n in got}
    assert here in names and any(n.startswith("rot180-chunk-") for n in names)


def test_a_sleeping_worker_and_a_sleeping_caller_are_woken(wait, monkeypatch):
    """A worker asleep between two calls, and a caller asleep while a worker's chunk runs
    longer than its spin, are each woken by the other side's signal."""
    monkeypatch.setattr(_team, "SPIN_NS", min(_team.SPIN_NS, 1_000_000))
    monkeypatch.setattr(_team, "JOIN_SPIN_NS", min(_team.JOIN_SPIN_NS, 1_000_000))

    def chunk(i: int) -> int:
        if i == 1:
            time.sleep(0.02)                    # longer than the caller's spin
        return i * i

    for _ in range(3):
        assert list(P.map_chunks(chunk, range(4), 2)) == [0, 1, 4, 9]
        time.sleep(0.01)                        # longer than the worker's spin


@pytest.mark.parametrize("failing", [0, 1, 2])
def test_the_first_failing_item_raises_after_its_round_and_later_rounds_never_run(
        wait, failing):
    ran, finished = [], threading.Event()

    def chunk(i: int) -> int:
        ran.append(i)
        if i == failing:
            raise ValueError(f"item {i}")
        if i == 1:                              # the worker's item ends after the caller's
            time.sleep(0.02)
            finished.set()
        return i

    with pytest.raises(ValueError, match=f"item {failing}"):
        list(P.map_chunks(chunk, range(6), 3))
    assert sorted(ran) == [0, 1, 2]             # round 0 only
    if failing != 1:
        assert finished.is_set()                # the round was waited for
    assert list(P.map_chunks(lambda i: -i, range(5), 3)) == [0, -1, -2, -3, -4]


def test_a_keyboard_interrupt_in_the_callers_chunk_waits_for_the_round():
    finished = threading.Event()

    def chunk(i: int) -> None:
        if i == 0:
            raise KeyboardInterrupt
        time.sleep(0.02)
        finished.set()

    with pytest.raises(KeyboardInterrupt):
        P.run_chunks(chunk, [0, 1], 2)
    assert finished.is_set()
    assert P._REGIONS.held == 0 and P.workers() >= 1


def test_callers_in_several_threads_run_on_teams_of_their_own():
    meet = threading.Barrier(3, timeout=TIMEOUT)
    idents: dict[int, set[int]] = {}

    def user(k: int) -> None:
        def chunk(i: int) -> int:
            if i == 0:
                meet.wait()                     # both callers inside a round at once
            return threading.get_ident()
        got: set[int] = set()
        for _ in range(5):
            got.update(P.map_chunks(chunk, range(4), 4))
        idents[k] = got - {threading.get_ident()}

    users = [threading.Thread(target=user, args=(k,)) for k in (1, 2)]
    for t in users:
        t.start()
    for _ in range(5):
        meet.wait()
    for t in users:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in users)
    assert len(idents[1]) == len(idents[2]) == 3 and not idents[1] & idents[2]


def test_free_teams_are_capped_and_the_retired_ones_stop():
    _retire_free_teams()
    made = [_team.Team(2, lambda: None) for _ in range(_team._KEEP + 2)]
    for team in made:
        _team.give_back(team)
    assert len(_team.teams()) == _team._KEEP
    kept = {id(t) for t in _team.teams()}
    retired = [t for t in made if id(t) not in kept]
    for team in retired:
        for thread in team.threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive()
    # A larger team retires the smaller free ones.
    big = _team.acquire(5, lambda: None)
    assert big.size == 5 and _team.teams() == []
    for team in made:
        if id(team) in kept:
            for thread in team.threads:
                thread.join(TIMEOUT)
                assert not thread.is_alive()
    _team.give_back(big)
    assert _team.acquire(3, lambda: None) is big     # the smallest that fits
    _team.give_back(big)
    _retire_free_teams()


def test_pooled_runs_give_the_serial_bits_with_every_wait(wait):
    import rot180.functional as F
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    dz = rng.standard_normal((8, 24, 20, 20)).astype(np.float32)
    with tuning(threads=1):
        one = (F.conv(x, w, padding=1), F.conv_grad_input(dz, w, x.shape, padding=1))
    with tuning(threads=2, parallel_min_macs=0):
        two = (F.conv(x, w, padding=1), F.conv_grad_input(dz, w, x.shape, padding=1))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)


# --- the compiled spin -------------------------------------------------------------------------

teamc = pytest.importorskip("rot180.functional._teamc") if _team._teamc is None else _team._teamc


def test_wait_change_returns_the_new_value_or_seen_after_its_spin():
    cells = np.zeros(16, np.int64)
    t0 = time.perf_counter()
    assert teamc.wait_change(cells, 3, 0, 2_000_000) == 0
    assert time.perf_counter() - t0 >= 0.0015
    cells[3] = 7
    assert teamc.wait_change(cells, 3, 0, 10**12) == 7       # changed already: at once

    def later() -> None:
        time.sleep(0.01)
        cells[5] = 2

    t = threading.Thread(target=later)
    t.start()
    assert teamc.wait_change(cells, 5, 0, 10**10) == 2       # the GIL released meanwhile
    t.join(TIMEOUT)


def test_wait_change_settles_after_a_change_only():
    cells = np.zeros(8, np.int64)
    cells[0] = 1
    t0 = time.perf_counter()
    assert teamc.wait_change(cells, 0, 0, 10**10, settle_ns=20_000_000) == 1
    assert time.perf_counter() - t0 >= 0.015
    t0 = time.perf_counter()
    assert teamc.wait_change(cells, 0, 1, 1_000, settle_ns=10**10) == 1     # no change: none
    assert time.perf_counter() - t0 < 1.0


def test_wait_change_writes_its_signal_and_stops_at_a_watched_flag():
    cells = np.zeros(16, np.int64)
    assert teamc.wait_change(cells, 0, 0, 1000, signal=8, value=41) == 0
    assert cells[8] == 41
    teamc.store(cells, 15, 1)
    t0 = time.perf_counter()
    assert teamc.wait_change(cells, 0, 0, 10**10, watch=15) == 0
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("cells, kw, error, match", [
    (np.zeros(4, np.float64), {}, TypeError, "cells must be a contiguous 1-D int64 array"),
    (np.zeros((2, 2), np.int64), {}, TypeError, "with 2 axes"),
    (np.zeros(8, np.int64)[::2], {}, TypeError, "contiguous"),
    ([0, 0], {}, TypeError, "cells must be a writable int64 array, got list"),
    (np.zeros(4, np.int64), {"index": 4}, ValueError, r"index must be in \[0, 4\), got 4"),
    (np.zeros(4, np.int64), {"signal": -2}, ValueError, r"signal must be in \[0, 4\) or -1"),
    (np.zeros(4, np.int64), {"watch": 9}, ValueError, r"watch must be in \[0, 4\) or -1"),
])
def test_wait_change_names_a_wrong_argument(cells, kw, error, match):
    kw = {"index": 0, **kw}
    with pytest.raises(error, match=match):
        teamc.wait_change(cells, kw.pop("index"), 1, 0, **kw)


def test_a_read_only_array_is_refused():
    cells = np.zeros(4, np.int64)
    cells.flags.writeable = False
    with pytest.raises(TypeError, match="writable int64 array"):
        teamc.store(cells, 0, 1)
