"""Virtual time: what a review of the scheduler found, each test failing before its fix.

The scheduler's behaviour, test by test, is in ``test_virtual_time.py``.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sys
import threading
import time
import types

import pytest
import time_machine

from pytest_resilience.assertions.timing import real_between
from pytest_resilience.clock import (
    CLOCK,
    machinery_thread,
    real_monotonic,
    real_sleep,
    timer_source,
)
from pytest_resilience.runtime.scheduler import Scheduler, VirtualClock
from pytest_resilience.runtime.timers import Timer
from pytest_resilience.runtime.virtual import close_left_open, outside_the_block, virtual_time


def test_a_future_of_an_executor_made_before_the_block_is_waited_for_in_real_time() -> None:
    """Its workers are outside the block: a jump must not time the result out while one
    works (it did: TimeoutError after 0 real s)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(int).result()  # its worker exists before the block
        with virtual_time():
            sleeper = threading.Thread(target=time.sleep, args=(600,))
            sleeper.start()
            assert pool.submit(lambda: (real_sleep(0.1), "done")[1]).result(timeout=10) == "done"
            sleeper.join()


def test_waits_still_open_when_the_block_ends_go_on_in_real_time() -> None:
    """They returned False, raised TimeoutError, or joined a live thread."""
    results: dict[str, object] = {}
    with virtual_time():
        ready = threading.Event()
        waiter = threading.Thread(target=lambda: results.setdefault("wait", ready.wait()))
        waiter.start()
        joiner = threading.Thread(
            target=lambda: (waiter.join(), results.setdefault("alive", waiter.is_alive()))
        )
        joiner.start()
        time.sleep(1)
    assert results == {}
    ready.set()
    joiner.join()
    assert results == {"wait": True, "alive": False}


def test_a_thread_whose_start_fails_leaves_the_participants() -> None:
    """It stayed a running participant: every later sleep took real time."""
    thread = threading.Thread(target=int)
    with virtual_time() as clock:
        thread.start()
        thread.join()
        with pytest.raises(RuntimeError, match="threads can only be started once"):
            thread.start()
        time.sleep(30)
    assert clock.real < 30


def test_the_plugins_timers_scheduled_beside_a_sleeping_test_never_deadlock() -> None:
    """A machinery thread scheduling marker-window actions while the test sleeps: the
    scheduler's lock and the timer's were taken in opposite orders, and hung."""
    finished = threading.Event()
    give_up = threading.Event()

    def body() -> None:
        with virtual_time():
            timer = Timer(lambda exc: None, "test-timer")
            stop = threading.Event()

            def feeder() -> None:
                while not stop.is_set():
                    timer.at(CLOCK.now() + 1e6, lambda: None)
                    # A real pause lets the test's thread run: a feeder yielding with
                    # sleep(0) starved it for over 60 s beside two CPU hogs (stress run 18
                    # of 20, session 23), and the block it left open slowed every later
                    # virtual-time test of that worker.
                    real_sleep(0.0002)

            feeding = machinery_thread(feeder, "pytest-resilience-test-feeder")
            feeding.start()
            for _ in range(2000):
                if give_up.is_set():
                    break
                time.sleep(0.001)
            stop.set()
            feeding.join()
            timer.stop()
        finished.set()

    runner = threading.Thread(target=body, daemon=True)  # outside any block: a real join
    runner.start()
    runner.join(timeout=60)
    done = finished.is_set()
    give_up.set()  # a run that timed out leaves no block open behind it, unless hung
    runner.join(timeout=10)
    assert done, "deadlocked"


def test_a_second_blocks_wall_and_monotonic_clocks_move_together() -> None:
    """The wall clock travelled from the real time, the monotonic one carried the
    offset: 100 s apart in the second block of a test."""
    with virtual_time():
        time.sleep(100)
    with virtual_time():
        # time-machine moves CLOCK_REALTIME too: the system's wall time through its hatch.
        real_now, real_wall_now = real_monotonic(), time_machine.escape_hatch.time.time()
        monotonic_ahead = time.monotonic() - real_now
        wall_ahead = time.time() - real_wall_now
    assert monotonic_ahead >= 99  # the jump: 100 s less the real time the sleep took
    assert abs(wall_ahead - monotonic_ahead) < 1


def test_a_module_that_cannot_be_read_does_not_stop_the_block() -> None:
    class Lazy(types.ModuleType):
        def __getattribute__(self, name: str) -> object:
            raise ImportError("an optional dependency is missing")

    sys.modules["lazy_module_of_a_library"] = Lazy("lazy_module_of_a_library")
    try:
        with virtual_time() as clock:
            time.sleep(10)
        assert clock.virtual >= 10
    finally:
        del sys.modules["lazy_module_of_a_library"]


def test_a_thread_outside_the_block_keeps_its_real_timeouts() -> None:
    """Its queue's timeout was read on the jumped clock and ended early."""
    work: queue.Queue[int] = queue.Queue()
    waited: list[float] = []

    def consumer() -> None:
        began = real_monotonic()
        with pytest.raises(queue.Empty):
            work.get(timeout=0.3)
        waited.append(real_monotonic() - began)

    outside = threading.Thread(target=consumer)
    outside.start()
    with virtual_time():
        time.sleep(60)
        with work.not_empty:
            work.not_empty.notify()  # a wake-up without an item
    outside.join()
    assert waited[0] >= 0.3


def test_held_back_time_is_counted_once_per_thread() -> None:
    """Ten waits ending in real time together added their whole spans each."""
    held = threading.Lock()
    held.acquire()
    with virtual_time() as clock:
        blocker = threading.Thread(target=held.acquire, name="blocker")
        blocker.start()
        sleepers = [threading.Thread(target=time.sleep, args=(0.1,)) for _ in range(10)]
        for sleeper in sleepers:
            sleeper.start()
        for sleeper in sleepers:
            sleeper.join()
        held.release()
        blocker.join()
    assert clock.held["blocker"] <= clock.real


def test_the_real_time_between_two_instants_leaves_the_jumps_out() -> None:
    """What a timing verdict bounds a wait's noise by on virtual time
    (``assertions/waits.py`` ``real_bound``): its real time, not its virtual time."""
    with virtual_time():
        before = CLOCK.now()
        time.sleep(30)
        after = CLOCK.now()
        time.sleep(5)
        later = CLOCK.now()
    assert after - before >= 30
    assert 0 <= real_between(before, after, CLOCK.jumps) < 1
    assert 0 <= real_between(after, later, CLOCK.jumps) < 1
    assert real_between(before, later, CLOCK.jumps) < 1
    assert [size for _, size in CLOCK.jumps] == pytest.approx([30, 5], abs=0.5)
    CLOCK.rewind()
    assert CLOCK.jumps == [] and CLOCK.offset == 0


def test_a_wait_on_io_whose_jump_check_fails_leaves_the_waiters() -> None:
    """An exception while looking for a jump left the thread among the waiters: the clock
    then jumped while it ran."""
    with virtual_time():
        scheduler = CLOCK.virtual
        assert isinstance(scheduler, Scheduler)
        sleeper = threading.Thread(target=time.sleep, args=(50,))
        sleeper.start()

        def ready() -> bool:
            raise ValueError("I/O operation on closed epoll object")

        leaver = threading.Thread(target=real_sleep, args=(0.1,))  # looks for a jump as it ends
        leaver.start()
        with pytest.raises(ValueError):
            scheduler.wait_io(CLOCK.now() + 100, lambda left: None, ready, lambda: None)
        before = CLOCK.now()
        real_sleep(0.3)  # this thread runs: no jump may happen meanwhile
        assert CLOCK.now() - before < 1
        leaver.join()
        time.sleep(60)
        sleeper.join()


def test_the_plugins_schedule_waits_in_real_time_outside_the_block() -> None:
    """``load``'s pacing waits through ``CLOCK.sleep``: what a wider-scoped fixture runs
    while a test opens a block (:func:`outside_the_block`) paces on real time, as every
    other patch acts there (it jumped the clock instead)."""
    with virtual_time() as clock, outside_the_block():
        started = real_monotonic()
        CLOCK.sleep(0.05)
        took = real_monotonic() - started
    assert took >= 0.05
    assert clock.jumps == 0


def test_a_notice_sent_while_the_scheduler_looks_for_a_jump_does_not_deadlock() -> None:
    """A garbage collection while the scheduler holds its lock (looking for a jump) runs
    finalizers, and urllib3's pool's notifies a condition made in the block: that notice
    took the lock again on the same thread and hung every participant (from a review: 4
    hangs in 12 runs of requests sessions left in cycles).  Here the notice comes from a
    timer source asked for its deadline, as such a finalizer would."""
    finished = threading.Event()

    class NotifyingSource:
        def __init__(self, condition: threading.Condition) -> None:
            self.condition = condition

        def next_deadline(self) -> float | None:
            with self.condition:
                self.condition.notify()
            return None

        def fire_due(self) -> None:
            pass

    def body() -> None:
        with virtual_time():
            source = NotifyingSource(threading.Condition())  # made in the block
            timer_source(source)
            time.sleep(5)
        finished.set()

    runner = threading.Thread(target=body, daemon=True)  # outside any block: a real join
    runner.start()
    runner.join(timeout=20)
    assert finished.is_set(), "deadlocked"


def test_a_stray_of_a_closed_block_is_out_of_later_blocks_with_its_threads_but_its_own() -> None:
    """The plugin ends a block its test left open (``close_left_open``): the thread still
    inside it, and the threads it starts, take no part in a later block, whose jumps their
    work would hold back; a block the stray opens itself is virtual for it (found by
    review: it ran on real time, and held everyone's jumps back as that block's first)."""
    entered, leave, reopen, child_go = (threading.Event() for _ in range(4))
    done, child_working = threading.Event(), threading.Event()
    own: list[VirtualClock] = []

    def busy_sleeper() -> None:
        while not done.is_set():
            time.sleep(0.001)
            child_working.set()
            until = real_monotonic() + 0.005
            while real_monotonic() < until:
                pass

    def stray() -> None:
        with virtual_time():
            entered.set()
            leave.wait(10)
        child_go.wait(10)
        threading.Thread(target=busy_sleeper, name="stray-child", daemon=True).start()
        reopen.wait(10)
        with virtual_time() as clock:
            time.sleep(30)
        own.append(clock)

    thread = threading.Thread(target=stray, name="stray", daemon=True)
    thread.start()
    try:
        assert entered.wait(10)
        assert close_left_open() == "stray"
        leave.set()
        with virtual_time() as clock:
            child_go.set()  # its child starts inside this block, and sleeps while it works
            assert child_working.wait(10)
            time.sleep(5)
        assert clock.real < 2, clock.real
        reopen.set()
        thread.join(10)
        assert own and own[0].real < 2, own
    finally:
        done.set()
        leave.set()
        reopen.set()
        child_go.set()
        thread.join(10)
