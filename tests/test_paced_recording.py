"""The recording behind the timing verdicts on real time (``runtime/pacing.py``): its
patches of ``time.sleep``, ``asyncio.sleep``, the sockets' sends and the module globals
bound to them are given back, whatever a test or a module-scoped fixture patched
meanwhile; a virtual block inside a real-time test stays virtual, as does an event
waited on under a recording opened inside a virtual block; a body that sleeps or yields
often is not slowed down and holds no growing record; a finished test's ``Resilience``
is let go.

The verdicts read from what it records are tested in ``test_paced_verdicts.py``.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time

import pytest

from pytest_resilience import Resilience
from pytest_resilience.clock import real_monotonic
from pytest_resilience.runtime.pacing import PacingRecorder
from pytest_resilience.runtime.virtual import virtual_time


def test_an_event_wait_stays_virtual_under_a_recording_opened_in_a_virtual_block() -> None:
    """Found by review: a recording opened inside a block on virtual time puts its
    wrappers above virtual time's; a first design's wrapper of ``Condition.wait`` met
    virtual time's test of who called a wait, which took its frame for the plugin's own,
    and an event made in the block waited 3 s in real time."""
    with virtual_time(), PacingRecorder().recording():
        began = real_monotonic()
        time.sleep(3)
        assert not threading.Event().wait(3)
        took = real_monotonic() - began
    assert took < 1


def _batch(n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        time.sleep(0)
    return (time.perf_counter() - began) / n


def test_a_polling_body_does_not_slow_down_as_it_sleeps(resilience: Resilience) -> None:
    """Found by review: each noted sleep copied the caller's list of sleeps since its last
    I/O, so the n-th sleep of a body polling without I/O cost O(n) (40,000 ``sleep(0)``:
    15.1 s against 2.9 s)."""
    resilience.http_service("payments")
    first = _batch(2000)
    _batch(40000)
    later = _batch(2000)
    assert later < 3 * first, f"{first * 1e6:.0f} us a sleep, then {later * 1e6:.0f} us"


PATCHED_IN_THE_BODY = """
import socket
import time

import pytest

REAL = time.sleep


def test_counts_its_sleeps(resilience, monkeypatch):
    slept = []
    sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (slept.append(s), sleep(s)))
    time.sleep(0.01)
    assert slept == [0.01]


def test_time_sleep_is_given_back():
    assert time.sleep is REAL, time.sleep


def test_interrupted(resilience):
    raise KeyboardInterrupt
"""


def test_the_recording_gives_every_patch_back(inner: pytest.Pytester, url: str) -> None:
    """Found by review: a body's ``monkeypatch`` of ``time.sleep`` saved the recording's
    wrapper and put it back at teardown, after the recording (then the body's) had ended,
    so later tests noted each sleep twice.  The recording spans setup to teardown now;
    a run cut short by Ctrl-C gives the patches back too."""
    sleep, send = time.sleep, vars(socket.socket).get("send")
    inner.makepyfile(PATCHED_IN_THE_BODY)
    result = inner.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--toxiproxy={url}", no_reraise_ctrlc=True
    )
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert time.sleep is sleep and asyncio.sleep.__module__ == "asyncio.tasks"
    assert vars(socket.socket).get("send") is send


# -- Found by the second review ------------------------------------------------------


# The recording's undo clobbers a wider-scoped fixture's patch of time.sleep

MODULE_WIDE_FAKE_SLEEP = """
import time

import pytest

CALLS = []


@pytest.fixture(scope="module")
def no_waiting():
    # A module-wide fake sleep, the documented way to patch beyond one test.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "sleep", CALLS.append)
        yield CALLS


def test_first(resilience, no_waiting):
    time.sleep(30)
    assert CALLS == [30]


def test_second(resilience, no_waiting):
    began = time.monotonic()
    time.sleep(2)
    assert time.monotonic() - began < 1, "slept for real: the module's fake sleep is gone"
    assert CALLS == [30, 2]
"""


def test_a_module_scoped_patch_of_time_sleep_outlives_the_first_test(
    inner: pytest.Pytester, url: str
) -> None:
    """The recording saves ``time.sleep`` before the fixtures' setup and sets it back after
    teardown, whatever was set meanwhile: a module-scoped fixture set up in the first
    test's setup loses its patch at that test's teardown, and the second test sleeps for
    real (the same for a ``mock.patch`` of ``time.sleep`` or of a module's bound ``sleep``)."""
    inner.makepyfile(MODULE_WIDE_FAKE_SLEEP)
    result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=2)


LEFT_BEHIND = """
import time

import pytest


@pytest.fixture(scope="module")
def counted():
    with pytest.MonkeyPatch.context() as mp:
        sleep = time.sleep
        mp.setattr(time, "sleep", lambda s: sleep(s))
        yield


def test_first(resilience, counted):
    pass


def test_last(counted):  # the module's last test does not use resilience
    pass
"""


def test_a_module_scoped_patch_leaves_no_recording_wrapper_behind(
    inner: pytest.Pytester, url: str
) -> None:
    """The same fixture, torn down after a test that records nothing: its undo puts back
    what it saw at setup, the first test's recording wrapper, which then stays
    ``time.sleep`` for the rest of the process."""
    sleep = time.sleep
    inner.makepyfile(LEFT_BEHIND)
    try:
        result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
        result.assert_outcomes(passed=2)
        assert time.sleep is sleep, time.sleep
    finally:
        time.sleep = sleep


# Every real-time test's Resilience is kept until the session ends

KEPT = """
import gc
import time
import weakref

SEEN = []


def test_uses_the_service(resilience):
    api = resilience.http_service("payments")
    SEEN.append(weakref.ref(resilience))


def test_the_previous_test_is_let_go():
    # Within a deadline: on a loaded machine the service's last thread may still be
    # ending (it held the service, and through it the test's Resilience, once, for a while).
    deadline = time.monotonic() + 10
    while SEEN[0]() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert SEEN[0]() is None, gc.get_referrers(SEEN[0]())
"""


def test_a_finished_tests_resilience_is_let_go(inner: pytest.Pytester, url: str) -> None:
    """``item.stash[PACING]`` (plugin.py) keeps each item's recorder for the session, and
    the recorder's ``tapped`` is the bound method ``Resilience._tapped``: every test's
    Resilience (services, exchanges, timeline) and every send noted stay in memory until
    the session ends."""
    inner.makepyfile(KEPT)
    result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=2)


# A task's zero-second yields pile up until its next send


def test_a_task_yielding_without_sending_holds_no_growing_record(resilience: Resilience) -> None:
    """``asyncio.sleep(0)`` is the asyncio yield (anyio's ``checkpoint``, in every
    ``SocketStream.receive`` with data queued: anyio/_backends/_asyncio.py).  Each is noted
    in the task's list, which only the task's own send clears (a read in the loop's
    callback is no task's): a task streaming a long download holds ~110 bytes per yield
    (22 MB per 200,000), though a 0 s sleep can never be the longest asked."""
    import asyncio
    import tracemalloc

    resilience.http_service("payments")

    async def stream(yields: int) -> int:
        began = tracemalloc.get_traced_memory()[0]
        for _ in range(yields):
            await asyncio.sleep(0)
        return tracemalloc.get_traced_memory()[0] - began

    tracemalloc.start()
    try:
        held = asyncio.run(stream(50_000))
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, f"{held / 1e6:.1f} MB held by 50,000 yields"


# Found by the third review


SLEEPER = """
from time import sleep


def nap(seconds):
    sleep(seconds)
"""

STALE_IN_A_MODULE = """
import pytest

import sleeper_r3


@pytest.fixture(scope="module")
def quiet():
    # A module-wide patch of a client module's bound sleep (mock.patch("client.sleep")).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sleeper_r3, "sleep", lambda s: None)
        yield


def test_first(resilience, quiet):
    pass


def test_last(quiet):  # the module's last test records nothing: the undo puts back W1
    pass
"""

LATER = """
import os

import pytest

import sleeper_r3
from pytest_resilience.runtime import pacing


def test_real_time_notes_the_clients_sleep(resilience):
    sleeper_r3.nap(0.01)
    assert pacing._slept(), f"unnoted: sleeper_r3.sleep is {sleeper_r3.sleep!r}"


@pytest.mark.virtual_time
def test_virtual_time_does_not_sleep_for_real(resilience):
    began = os.times().elapsed
    sleeper_r3.nap(3)
    assert os.times().elapsed - began < 1, "slept 3 s for real on virtual time"
"""


def test_a_stale_wrapper_left_in_a_module_global_is_reached_by_later_tests(
    inner: pytest.Pytester, url: str
) -> None:
    """A module-scoped patch of a client module's ``sleep`` set up inside test 1's
    recording and undone after it leaves test 1's (inert) wrapper bound in the client
    module: later recordings do not swap it (they swap what is bound to the real sleep),
    nor does virtual time (time.sleep is the real one again), nor the session-end sweep
    (time/asyncio attributes only)."""
    inner.makepyfile(sleeper_r3=SLEEPER, test_a=STALE_IN_A_MODULE, test_b=LATER)
    inner.syspathinsert()
    try:
        result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
        left = getattr(sys.modules.get("sleeper_r3"), "sleep", None)
        result.assert_outcomes(passed=4)
        assert not hasattr(left, "__pacing__"), f"left in the module after the session: {left!r}"
    finally:
        sys.modules.pop("sleeper_r3", None)


BLOCK_IN_REAL_TIME = """
import os
import time

import sleeper_r3b
from pytest_resilience.runtime import pacing


def test_block(resilience):
    with resilience.virtual_time():
        began = os.times().elapsed
        sleeper_r3b.nap(3)
        time.sleep(3)
        import late_r3b
        late_r3b.nap(3)
        assert os.times().elapsed - began < 1
    sleeper_r3b.nap(0.01)
    assert pacing._slept()
    late_r3b.nap(0.01)
    assert len(pacing._slept()) == 2


def test_after():
    import late_r3b
    assert not hasattr(time.sleep, "__pacing__")
    assert not hasattr(sleeper_r3b.sleep, "__pacing__"), sleeper_r3b.sleep
    assert not hasattr(late_r3b.sleep, "__pacing__"), late_r3b.sleep
"""


def test_a_virtual_block_inside_a_real_time_test(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(sleeper_r3b=SLEEPER, late_r3b=SLEEPER, test_block=BLOCK_IN_REAL_TIME)
    inner.syspathinsert()
    try:
        result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
        result.assert_outcomes(passed=2)
    finally:
        sys.modules.pop("sleeper_r3b", None)
        sys.modules.pop("late_r3b", None)
