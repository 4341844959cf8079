"""The chunk pool (:mod:`rot180.functional._parallel`) with real threads and the real BLAS.

BLAS limits are read back through threadpoolctl; nothing is mocked. Overlap is shown without
timing: chunks from two user threads meet at a :class:`threading.Barrier` (with a timeout, so
a regression fails instead of hanging), which only works if both regions are open at once.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import rot180.functional as F
from rot180.functional import _parallel as P
from rot180.functional import _team
from rot180.functional._tuning import get_tuning, tuning

TIMEOUT = 60                                    # seconds; only reached when something hangs


def blas_threads() -> int:
    """numpy's BLAS thread count now, as threadpoolctl reports it."""
    lib = P._blas().numpy
    if lib is None:
        pytest.skip("threadpoolctl finds no BLAS library to limit")
    return next(i["num_threads"] for i in threadpool_info() if i["filepath"] == lib.filepath)


@pytest.fixture
def two_blas_threads():
    """The user's BLAS count is 2 (so a region's 1 is visible), whatever the machine has."""
    if P._blas().numpy is None or not P._blas().shared:
        pytest.skip("needs a BLAS with a process-wide thread count")
    with threadpool_limits(2, user_api="blas"):
        assert blas_threads() == 2
        yield


def run_threads(target, n: int) -> None:
    """``target(i)`` on ``n`` user threads; re-raises the first failure."""
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            target(i)
        except BaseException as e:             # noqa: BLE001 - re-raised below
            errors.append(e)

    # Each user thread runs in a copy of this one's context, so the tuning in force here (e.g.
    # pytest --rot180-force=NAME) is the one its calls see, as for the serial expectation.
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(body, i))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a user thread hung"
    if errors:
        raise errors[0]


def three_calls(shape, kernel, seed=0):
    """conv, conv_grad_input and conv_grad_weight of one layer, as closures."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(kernel).astype(np.float32)
    d = rng.standard_normal(F.conv(x, w).shape).astype(np.float32)
    return [lambda: F.conv(x, w), lambda: F.conv_grad_input(d, w, x.shape),
            lambda: F.conv_grad_weight(x, d, w.shape)]


# (B, C, *S) x (M, C, *k) large enough for the pool (>= 5e7 multiply-adds, above
# parallel_min_macs): the helper's 2-D path and, in 3-D, the NumPy im2col path.
LAYERS = [((8, 32, 32, 32), (32, 32, 3, 3)), ((4, 16, 16, 16, 16), (16, 16, 3, 3, 3))]


@pytest.mark.parametrize(("shape", "kernel"), LAYERS)
def test_concurrent_calls_give_the_serial_bits(two_blas_threads, shape, kernel):
    calls = three_calls(shape, kernel)
    with tuning(threads=2, parallel_min_macs=0):
        opened = P._REGIONS.opened
        expected = [f() for f in calls]
        if get_tuning().force != "clipped":             # clipped opens serial runs only
            assert P._REGIONS.opened - opened == 3      # each call used the pool

        def loop(i: int) -> None:
            with tuning(threads=2, parallel_min_macs=0):
                for _ in range(20):
                    for f, want in zip(calls, expected, strict=True):
                        np.testing.assert_array_equal(f(), want)

        run_threads(loop, 4)
    assert blas_threads() == 2
    assert (P._REGIONS.held, P._REGIONS.saved) == (0, None)


def test_every_run_serial_or_pooled_gives_the_one_thread_bits(two_blas_threads):
    # OpenBLAS's products depend on its thread count; every engine run holds it at one (its
    # own workers would spin after each product and take a core from the engine's threads),
    # so a serial run beside another thread's pooled runs computes the same bits as they do.
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 400, 700))
    b = b.T.copy()
    with threadpool_limits(1, user_api="blas"):
        at_one = a @ b

    def serial(i: int) -> None:
        for _ in range(30):
            (got,) = P.map_chunks(lambda _: a @ b, [0], 1)
            np.testing.assert_array_equal(got, at_one)

    def pooled(i: int) -> None:
        for _ in range(30):
            for got in P.map_chunks(lambda _: a @ b, [0, 1], 2):
                np.testing.assert_array_equal(got, at_one)

    run_threads(lambda i: (serial if i % 2 else pooled)(i), 4)
    assert blas_threads() == 2


def test_held_sets_one_thread_once_and_restores(two_blas_threads):
    with P.held():
        assert blas_threads() == 1 and P._REGIONS.held == 1
        with P.held():                          # nested: nothing more
            assert P._REGIONS.held == 1
        assert list(P.map_chunks(lambda _: blas_threads(), [0, 1], 2)) == [1, 1]
        assert P._REGIONS.held == 1 and P.workers() == min(2, os.cpu_count() or 1)
    assert blas_threads() == 2 and (P._REGIONS.held, P._REGIONS.saved) == (0, None)


@pytest.mark.parametrize("threads", [1, 2])
def test_regions_of_two_user_threads_are_open_at_once(threads):
    # Item 0 of each thread's call waits for item 0 of the other's: it passes only when both
    # calls run at the same time (a process-wide lock times it out: BrokenBarrierError).
    meet = threading.Barrier(2, timeout=TIMEOUT)
    counts = []

    def chunk(item: int) -> int:
        if item == 0:
            meet.wait()
            counts.append(blas_threads())
        return item

    def call(i: int) -> None:
        assert list(P.map_chunks(chunk, [0, 1], threads)) == [0, 1]

    with threadpool_limits(2, user_api="blas"):
        run_threads(call, 2)
        assert blas_threads() == 2
    if threads > 1 and P._blas().shared:
        assert counts == [1, 1]                 # both ran with BLAS at one thread


def test_a_serial_run_holds_blas_at_one_while_another_thread_pools(two_blas_threads):
    inside, release, ran = threading.Event(), threading.Event(), []

    def serial(_: int) -> None:
        inside.set()
        assert release.wait(TIMEOUT)
        ran.append(("serial", blas_threads()))

    def pooled(item: int) -> None:
        ran.append(("pooled", blas_threads()))

    t = threading.Thread(target=lambda: P.run_chunks(serial, [0], 1))
    t.start()
    assert inside.wait(TIMEOUT)
    assert blas_threads() == 1
    u = threading.Thread(target=lambda: P.run_chunks(pooled, [0, 1], 2))
    u.start()
    u.join(TIMEOUT)                             # no waiting: both kinds want one thread
    assert sorted(ran) == [("pooled", 1), ("pooled", 1)]
    release.set()
    t.join(TIMEOUT)
    assert ran[-1] == ("serial", 1)
    assert blas_threads() == 2


def test_blas_count_is_restored_after_a_region_and_when_a_chunk_raises(two_blas_threads):
    seen = []
    P.run_chunks(lambda _: seen.append(blas_threads()), [0, 1, 2], 2)
    assert seen == [1, 1, 1] and blas_threads() == 2

    started = []

    def chunk(item: int) -> int:
        started.append(item)
        if item == 1:
            raise RuntimeError("chunk 1 failed")
        return item

    with pytest.raises(RuntimeError, match="chunk 1 failed"):
        list(P.map_chunks(chunk, range(40), 2))
    assert blas_threads() == 2
    assert (P._REGIONS.held, P._REGIONS.saved) == (0, None)
    # Later calls still open and close regions normally.
    assert list(P.map_chunks(lambda i: i * i, range(5), 2)) == [0, 1, 4, 9, 16]
    assert blas_threads() == 2


def test_an_abandoned_iterator_closes_its_region(two_blas_threads):
    parts = P.map_chunks(lambda i: blas_threads(), range(6), 2)
    assert next(parts) == 1
    parts.close()
    assert blas_threads() == 2 and P._REGIONS.held == 0


def test_explicit_threads_split_three_ways_with_the_bits_of_one():
    """Batch chunks (im2col's, the helper off) are cut from the shapes alone and summed in
    chunk order, so three threads give one thread's bits. (The helper's kernel gradient, which
    3-D calls reach through the depth fold with it on, cuts its blocks by the thread count:
    the same bits for the same thread count only.)"""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 16, 16, 16, 16)).astype(np.float32)
    d = rng.standard_normal((4, 16, 14, 14, 14)).astype(np.float32)
    with threadpool_limits(1, user_api="blas"):     # the same BLAS count inside and out
        with tuning(threads=1, helper=False):
            assert P.workers() == 1
            one = F.conv_grad_weight(x, d, (16, 16, 3, 3, 3))
        with tuning(threads=3, parallel_min_macs=0, helper=False):
            assert P.workers() == 3                 # not capped by BLAS's 1 or the CPUs
            opened = P._REGIONS.opened
            three = F.conv_grad_weight(x, d, (16, 16, 3, 3, 3))
            if get_tuning().force != "clipped":     # clipped opens serial runs only
                assert P._REGIONS.opened == opened + 1
                assert max(t.size for t in _team.teams()) >= 2     # the caller and two
    np.testing.assert_array_equal(three, one)


def test_workers_follow_blas_inside_a_region_and_are_one_inside_a_chunk(two_blas_threads):
    with tuning(threads=None):
        assert P.workers() == min(2, os.cpu_count() or 1)
        inner = list(P.map_chunks(lambda _: (P.workers(), blas_threads()), [0, 1], 2))
        assert inner == [(1, 1), (1, 1)]            # nested calls run plainly
        # Another user thread, while a region holds BLAS at 1, splits by the user's 2.
        seen, meet = [], threading.Barrier(2, timeout=TIMEOUT)

        def chunk(item: int) -> None:
            if item == 0:
                meet.wait()                     # the other thread reads workers() meanwhile
                meet.wait()

        t = threading.Thread(target=lambda: P.run_chunks(chunk, [0, 1], 2))
        t.start()
        meet.wait()
        seen.append((P.workers(), blas_threads()))
        meet.wait()
        t.join(TIMEOUT)
    if P._blas().shared:
        assert seen == [(min(2, os.cpu_count() or 1), 1)]


def test_chunks_see_the_callers_tuning_in_the_pool():
    with tuning(chunk_bytes=12345, threads=2):
        got = list(P.map_chunks(
            lambda _: (get_tuning().chunk_bytes, threading.current_thread().name), range(4), 2))
    assert [g[0] for g in got] == [12345] * 4
    # Rounds of two: the caller runs items 0 and 2, a team thread items 1 and 3 (or the caller,
    # if that thread had not taken its job when the caller's was done).
    here = threading.current_thread().name
    assert got[0][1] == got[2][1] == here
    assert all(name == here or name.startswith("rot180-chunk") for _, name in got[1::2])
    assert get_tuning().chunk_bytes != 12345
    # A worker thread outside any call has the defaults again.
    (fresh,) = P.map_chunks(lambda _: get_tuning().chunk_bytes, [0], 1)
    assert fresh == get_tuning().chunk_bytes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_starts_with_no_region_and_blas_restored(two_blas_threads):
    inside, release = threading.Event(), threading.Event()

    def chunk(item: int) -> None:
        if item == 0:
            inside.set()
            assert release.wait(TIMEOUT)

    t = threading.Thread(target=lambda: P.run_chunks(chunk, [0, 1], 2))
    t.start()
    assert inside.wait(TIMEOUT)
    assert blas_threads() == 1
    with warnings.catch_warnings():             # Python >= 3.12 warns on fork with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:                                # the child: report through the exit status
        ok = (blas_threads() == 2 and P._REGIONS.held == 0
              and list(P.map_chunks(lambda i: i + 1, [0, 1], 2)) == [1, 2])
        os._exit(0 if ok else 1)
    release.set()
    t.join(TIMEOUT)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert blas_threads() == 2


def test_an_exception_between_two_results_still_closes_the_region(two_blas_threads):
    """The consumer's own code failing between two chunk results (here ``acc += part`` on
    mismatched shapes), with the traceback kept alive as a REPL keeps it, must not leave the
    region open: BLAS at one thread and every later call on this thread serial (a review found
    the suspended generator's ``finally`` never ran)."""
    kept = []
    with tuning(threads=2):
        try:
            P.sum_chunks(lambda i: np.ones(3 + i), [0, 1, 2], 2)
        except ValueError as e:                 # operands could not be broadcast
            kept.append(e)
        assert kept, "the mismatched partial sums should have raised"
        assert P._REGIONS.held == 0 and blas_threads() == 2
        assert P.workers() == 2                 # not stuck "inside a chunk"


def test_clipped_products_give_a_quiet_calls_bits_while_another_thread_pools(
        two_blas_threads):
    """The clipped tap loops (an inf weight reroutes there) run as a serial run, at one BLAS
    thread like every run: while another user thread's pooled runs go on, their bits are
    those of a quiet call."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 32, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    w[0, 0, 0, 0] = np.inf
    quiet = F.conv(x, w, padding=1)
    big = three_calls(*LAYERS[0])[0]
    stop = threading.Event()

    def hammer(_: int) -> None:
        with tuning(threads=2, parallel_min_macs=0):
            while not stop.is_set():
                big()

    t = threading.Thread(target=contextvars.copy_context().run, args=(hammer, 0))
    t.start()
    try:
        for _ in range(10):
            np.testing.assert_array_equal(F.conv(x, w, padding=1), quiet)
    finally:
        stop.set()
        t.join(TIMEOUT)
    assert not t.is_alive()


def test_many_thread_counts_share_one_pool():
    """Each tuning(threads=n) used to keep its own pool (and its threads' scratch) forever; now
    a larger team retires the smaller free ones, and each call runs on at most n threads."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 16, 16, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3, 3)).astype(np.float32)
    for n in range(2, 13):                      # the rule's realisations (clipped pools nothing)
        with tuning(threads=n, parallel_min_macs=0, force=None):
            F.conv(x, w)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [t for t in threading.enumerate() if t.name.startswith("rot180-chunk")]
        if len(alive) <= 11:
            break
        time.sleep(0.05)
    assert len(alive) <= 11, f"{len(alive)} chunk threads alive after asking for 2..12"
    assert max(t.size for t in _team.teams()) >= 11        # and the caller: 12


def test_a_call_keeps_at_most_its_thread_count_of_chunks_in_flight():
    """A pool larger than a call's thread count (grown by an earlier call) still runs the call
    on at most that many threads at once."""
    with tuning(threads=8, parallel_min_macs=0):
        list(P.map_chunks(lambda i: i, range(8), 8))        # the pool has 8 threads now
    lock, running, most = threading.Lock(), [0], [0]

    def chunk(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    assert list(P.map_chunks(chunk, range(12), 3)) == list(range(12))
    assert most[0] <= 3
