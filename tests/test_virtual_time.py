"""Virtual time (slice 1: threads and ``time``): waits of the code under test end at once
and move one clock forward, for every thread of it together.

Each test here would take real minutes if the clock did not jump, so each one also says,
from the real clock, that it did not wait them out.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import math
import queue
import sys
import threading
import time
import types

import pytest
import requests
from freezegun import freeze_time

from pytest_resilience import ConfigurationError, HttpService, Resilience
from pytest_resilience.clock import (
    CLOCK,
    machinery_thread,
    real_monotonic,
    real_sleep,
    real_wall,
)
from pytest_resilience.runtime.virtual import virtual_time

READS = ("monotonic", "perf_counter", "time")


def test_a_sleep_ends_at_once_and_moves_every_clock_alike() -> None:
    originals = {name: getattr(time, name) for name in (*READS, "sleep")}
    real_before = real_monotonic()
    with virtual_time() as clock:
        before = {name: getattr(time, name)() for name in READS}
        before_ns = {name: getattr(time, f"{name}_ns")() for name in READS}
        plugin_before = CLOCK.now()
        time.sleep(30)
        after = {name: getattr(time, name)() for name in READS}
        after_ns = {name: getattr(time, f"{name}_ns")() for name in READS}
        plugin_after = CLOCK.now()
    real = real_monotonic() - real_before

    assert real < 30, "the sleep was waited out"
    for name in READS:
        assert 30 <= after[name] - before[name] <= 30 + real
        assert 30e9 <= after_ns[name] - before_ns[name] <= (30 + real) * 1e9
    assert 30 <= plugin_after - plugin_before <= 30 + real
    assert clock.jumps == 1
    assert 30 <= clock.virtual <= 30 + real
    assert clock.real <= real
    # After the block, the time module is as it was.
    assert {name: getattr(time, name) for name in (*READS, "sleep")} == originals


def test_threads_started_in_the_block_wake_at_their_deadlines_in_order() -> None:
    woke: list[tuple[str, float]] = []
    lock = threading.Lock()

    def sleeper(name: str, waits: list[float]) -> None:
        for wait in waits:
            time.sleep(wait)
            with lock:
                woke.append((name, time.monotonic() - start))

    with virtual_time() as clock:
        start = time.monotonic()
        threads = [
            threading.Thread(target=sleeper, args=("a", [5, 5])),
            threading.Thread(target=sleeper, args=("b", [1, 3, 4])),
            threading.Thread(target=sleeper, args=("c", [7])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert clock.real < 8, "the sleeps were waited out"
    assert [name for name, _ in woke] == ["b", "b", "a", "c", "b", "a"]
    expected = [1, 4, 5, 7, 8, 10]
    for (_, at), due in zip(woke, expected, strict=True):
        assert due <= at <= due + clock.real
    assert 10 <= clock.virtual <= 10 + clock.real


def test_a_lockstep_herd_started_in_the_block_stays_in_lockstep() -> None:
    """Twenty threads retrying on one doubling schedule: each retry of one lies within the
    real time of the whole block of the same retry of every other.  Were a thread
    counted only from its first wait, the first to sleep would jump ahead of the rest."""
    stamps: dict[int, list[float]] = {n: [] for n in range(20)}

    def client(n: int) -> None:
        for retry in range(5):
            stamps[n].append(time.monotonic())
            time.sleep(2.0**retry)

    with virtual_time() as clock:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert clock.real < 1, "the sleeps were waited out"
    for retry in range(5):
        at = [stamps[n][retry] for n in range(20)]
        assert max(at) - min(at) <= clock.real
    assert 31 <= clock.virtual <= 31 + clock.real


def test_a_thread_blocked_where_the_clock_cannot_see_holds_the_jumps_back() -> None:
    """A participant waiting on a lock (in C) counts as running: the main thread's sleep
    ends in real time, and the blocked thread is named for it."""
    held = threading.Lock()
    held.acquire()
    blocker = threading.Thread(target=held.acquire, name="blocker")

    with virtual_time() as clock:
        blocker.start()
        began = real_monotonic()
        time.sleep(0.2)
        waited = real_monotonic() - began
        held.release()
        blocker.join()

    assert waited >= 0.2
    assert clock.jumps == 0
    assert clock.held["blocker"] >= 0.2


def test_the_plugins_own_threads_wait_in_real_time_and_hold_nothing_back() -> None:
    waited: list[float] = []

    def machinery() -> None:
        began = real_monotonic()
        time.sleep(0.1)
        waited.append(real_monotonic() - began)

    with virtual_time() as clock:
        thread = machinery_thread(machinery, "pytest-resilience-test-machinery")
        thread.start()
        time.sleep(60)  # not held back by the machinery thread, which is not a participant
        thread.join()

    assert waited[0] >= 0.1
    assert clock.jumps == 1
    assert clock.virtual >= 60


def test_join_with_a_timeout_returns_at_its_virtual_deadline() -> None:
    with virtual_time() as clock:
        worker = threading.Thread(target=time.sleep, args=(100,))
        start = time.monotonic()
        worker.start()
        worker.join(timeout=10)
        timed_out_at = time.monotonic() - start
        alive = worker.is_alive()
        worker.join()
        ended_at = time.monotonic() - start

    assert alive
    assert 10 <= timed_out_at <= 10 + clock.real
    assert 100 <= ended_at <= 100 + clock.real
    assert clock.real < 10


@pytest.mark.parametrize(
    ("seconds", "error"),
    [(-1, ValueError), (math.nan, ValueError), (math.inf, OverflowError), ("1", TypeError)],
)
def test_a_sleep_time_sleep_refuses_is_refused_alike(seconds: object, error: type) -> None:
    with pytest.raises(error):
        time.sleep(seconds)  # type: ignore[arg-type]
    with virtual_time(), pytest.raises(error):
        time.sleep(seconds)  # type: ignore[arg-type]


def test_a_block_inside_a_block_goes_on_with_the_outer_clock() -> None:
    with virtual_time() as outer:
        with virtual_time() as inner:
            time.sleep(5)
        assert inner is outer
        time.sleep(5)
    assert 10 <= outer.virtual <= 10 + outer.real


def test_clocks_bound_before_the_block_are_reached_and_given_back() -> None:
    """``from time import monotonic`` (circuitbreaker's way) binds the real function in the
    module: the block swaps that global for the virtual one, and puts it back after."""
    bound = types.ModuleType("bound_clocks_of_a_client")
    exec("from time import monotonic, perf_counter, sleep", bound.__dict__)
    sys.modules[bound.__name__] = bound
    try:
        with virtual_time() as clock:
            before = bound.monotonic()
            bound.sleep(45)
            moved = bound.monotonic() - before
            late = types.ModuleType("imported_during_the_block")
            exec("from time import monotonic, sleep", late.__dict__)
            sys.modules[late.__name__] = late
        assert 45 <= moved <= 45 + clock.real
        assert clock.real < 45
        assert bound.monotonic is time.monotonic and bound.sleep is time.sleep
        assert late.monotonic is time.monotonic and late.sleep is time.sleep
    finally:
        sys.modules.pop("bound_clocks_of_a_client", None)
        sys.modules.pop("imported_during_the_block", None)


def test_a_clock_passed_as_a_default_argument_is_reached_and_given_back() -> None:
    """``clock=time.monotonic`` (the payments example's breaker, botocore's RetryHandler's
    ``sleep=time.sleep``) is bound when the function is defined."""
    client = types.ModuleType("client_with_a_default_clock")
    exec(
        "import time\n"
        "def elapsed_since(start, clock=time.monotonic):\n"
        "    return clock() - start\n"
        "class Breaker:\n"
        "    def __init__(self, *, clock=time.monotonic, sleep=time.sleep):\n"
        "        self.clock, self.sleep = clock, sleep\n",
        client.__dict__,
    )
    client.__dict__["__name__"] = client.__name__
    client.elapsed_since.__module__ = client.Breaker.__module__ = client.__name__
    sys.modules[client.__name__] = client
    try:
        with virtual_time() as clock:
            start = time.monotonic()
            breaker = client.Breaker()
            breaker.sleep(30)
            assert 30 <= client.elapsed_since(start) <= 30 + clock.real
            assert 30 <= breaker.clock() - start <= 30 + clock.real
        assert client.elapsed_since.__defaults__ == (time.monotonic,)
        assert client.Breaker.__init__.__kwdefaults__ == {
            "clock": time.monotonic,
            "sleep": time.sleep,
        }
        assert clock.real < 30
    finally:
        del sys.modules[client.__name__]


def test_the_wall_clock_and_datetime_move_with_each_jump_and_come_back_after() -> None:
    with virtual_time() as clock:
        wall, now = time.time(), dt.datetime.now(dt.timezone.utc)
        time.sleep(3600)
        wall_moved = time.time() - wall
        now_moved = (dt.datetime.now(dt.timezone.utc) - now).total_seconds()
    assert 3600 <= wall_moved <= 3600 + clock.real
    assert 3600 <= now_moved <= 3600 + clock.real
    assert abs(time.time() - real_wall()) < 1  # after the block: the system's time again


def test_virtual_time_inside_freezegun_is_refused_in_one_sentence() -> None:
    with freeze_time("2026-01-01"), pytest.raises(ConfigurationError) as refused, virtual_time():
        pass  # pragma: no cover - never entered
    assert str(refused.value).startswith(
        "virtual time cannot start inside freezegun's freeze_time ("
    )
    assert str(refused.value).endswith(
        "); end the frozen block first, or use time-machine to move the wall clock."
    )
    assert time.sleep.__module__ == "time" and CLOCK.virtual is None


# -- waits on other participants: events, conditions, queues, executors ------------------


def test_an_event_a_participant_sets_wakes_its_waiter_at_that_instant() -> None:
    woke: list[float] = []

    def waiter() -> None:
        ready.wait()
        woke.append(time.monotonic())

    with virtual_time() as clock:
        ready = threading.Event()  # made in the block: its waits are virtual
        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(20)  # the waiter waits for the event: it holds no jump back
        set_at = time.monotonic()
        ready.set()
        time.sleep(5)  # the waiter runs before this jump
        thread.join()

    assert clock.real < 5 and clock.jumps == 2
    assert set_at <= woke[0] <= set_at + clock.real


def test_timeouts_of_events_conditions_and_queues_made_in_the_block_are_virtual() -> None:
    with virtual_time() as clock:
        event, condition, work = threading.Event(), threading.Condition(), queue.Queue[int]()
        start = time.monotonic()
        assert not event.wait(30)
        after_event = time.monotonic() - start
        with condition:
            assert not condition.wait_for(lambda: False, timeout=40)
        after_condition = time.monotonic() - start
        with pytest.raises(queue.Empty):
            work.get(timeout=50)
        after_queue = time.monotonic() - start

    assert clock.real < 30
    assert 30 <= after_event <= 30 + clock.real
    assert 70 <= after_condition <= 70 + clock.real
    assert 120 <= after_queue <= 120 + clock.real


def test_a_thread_pool_made_in_the_block_runs_its_sleepers_on_virtual_time() -> None:
    """Its idle workers wait on a queue virtual time sees (ThreadPoolExecutor's own
    SimpleQueue waits in C and would hold every jump back)."""
    with virtual_time() as clock:
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            waits = [
                pool.submit(lambda n=n: (time.sleep(10 * n), time.monotonic())[1])
                for n in range(1, 9)
            ]
            ends = [future.result() - start for future in waits]

    assert clock.real < 10
    # Four workers: the first four end at 10..40 s, the next four 50..80 s after those.
    for n, end in enumerate(ends, start=1):
        due = 10 * n + (10 * (n - 4) if n > 4 else 0)
        assert due <= end <= due + clock.real
    assert not clock.held or max(clock.held.values()) < clock.virtual / 2


def test_a_wait_on_an_event_made_before_the_block_is_real_and_not_jumped_past() -> None:
    """A thread outside the block (a fixture's worker) sets an event made before it: the
    participant's wait with a timeout must not be jumped past while a sleeper waits."""
    done = threading.Event()
    go = threading.Event()
    outside = threading.Thread(target=lambda: (go.wait(), real_sleep(0.05), done.set()))
    outside.start()
    with virtual_time() as clock:
        sleeper = threading.Thread(target=time.sleep, args=(600,))
        sleeper.start()
        go.set()
        assert done.wait(timeout=10), "jumped past the timeout of a real wait"
        sleeper.join()
    outside.join()
    assert clock.virtual >= 600


def test_the_plugins_own_waits_stay_real_while_another_participant_sleeps(
    resilience: Resilience,
) -> None:
    """Making a service waits on the plugin's loop (a future's result, 10 s at most): were
    that wait virtual, the sleeper beside it would jump the clock past its timeout."""
    with resilience.virtual_time() as clock:
        sleeper = threading.Thread(target=time.sleep, args=(600,))
        sleeper.start()
        api: HttpService = resilience.http_service("api")
        api.respond(200, json={"ok": True})
        assert requests.get(api.url + "/x", timeout=5).status_code == 200
        before_the_jump = clock.virtual
        sleeper.join()

    assert before_the_jump < 10
    assert clock.virtual >= 600
