"""Where a sleep was slept from (``runtime/pacing.py``, ``Sleep.site``), and how a wait
slept from two places counts as asked (``observe/pacing.py``, ``Pacing.asked``).

A backoff and a queue slept through (a lock polled with ``time.sleep``, a
reserve-then-sleep rate limiter) are called from different places in the client's code,
so only the least that one place asked counts: the rest may be queueing, and lockstep
clients queued so are never shown jittered (``test_paced_verdicts.py``: the polled lock
and the token bucket).  A backoff slept in chunks comes from one place and counts whole.
"""

from __future__ import annotations

import _thread
import asyncio
import random
import sys
import threading
import time

import anyio
import pytest
from paced import _charge, _neither_clears, _queued_herd, _run
from processes import wait_for

from pytest_resilience import Resilience
from pytest_resilience.assertions import InsufficientEvidence
from pytest_resilience.assertions.operations import operations
from pytest_resilience.observe.join import Trace
from pytest_resilience.observe.pacing import Pacing
from pytest_resilience.runtime import pacing
from pytest_resilience.runtime.pacing import Sent, Sleep


def _places() -> list[int]:
    return [sleep.site for sleep in pacing._slept()]


def _nap() -> None:
    time.sleep(0.001)


def test_sleeps_from_one_line_share_a_place_and_from_two_lines_do_not(
    resilience: Resilience,
) -> None:
    resilience.http_service("payments")  # the recording is the resilience fixture's
    for _ in range(3):
        time.sleep(0.001)
    assert len(set(_places())) == 1
    time.sleep(0.001)
    assert len(set(_places())) == 2


def test_a_helper_called_from_two_lines_sleeps_from_two_places(resilience: Resilience) -> None:
    """The place is the path of the innermost frames, not the line that called
    ``time.sleep`` alone: a retry library's sleep helper serves its backoff and, where the
    same helper is called from elsewhere, that call is another place."""
    resilience.http_service("payments")
    _nap()
    _nap()
    assert len(set(_places())) == 2


def test_asyncio_and_anyio_sleeps_are_placed_by_the_lines_that_awaited_them(
    resilience: Resilience,
) -> None:
    """``asyncio.sleep`` is placed by the coroutine that awaited it; anyio's ``sleep`` goes
    through two functions of anyio's own (``anyio.sleep``, its backend's ``sleep``) before
    ``asyncio.sleep``, and the place still reaches the line of the code under test."""
    resilience.http_service("payments")

    async def body() -> list[int]:
        for _ in range(2):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.001)
        await anyio.sleep(0.001)
        await anyio.sleep(0.001)
        return _places()

    places = asyncio.run(body())
    assert len(places) == 5
    assert places[0] == places[1]
    assert len(set(places)) == 4


def test_a_wait_slept_from_two_places_asks_the_least_of_them() -> None:
    """Per place, all its sleeps (chunks); across places, the least; sleeps before the
    answer are not the wait's."""
    trace = Trace(1, "d", 0, True, opened_at=10.0, ended_at=20.0, port=5000)
    retry = (
        Sleep(10.1, 0.9, site=3),  # before the answer: not this wait's
        Sleep(10.3, 0.2, site=1),  # the backoff, in two chunks from one place
        Sleep(10.5, 0.1, site=1),
        Sleep(10.6, 0.25, site=2),  # a lock polled from another place
    )
    sends = [Sent(5000, 80, 10.1, 7, 0, ()), Sent(5000, 80, 11.0, 7, 1, retry)]
    paced = Pacing.join(sends, {3: trace}, since=0.0, tap=80)
    assert paced.asked(3, 11.02, 10.25, (3, 10.15)) == pytest.approx(0.25)  # 0.3 and 0.25
    assert paced.places(3, 11.02, 10.25, (3, 10.15)) == 2
    assert paced.asked(3, 11.02, 10.45, (3, 10.15)) == pytest.approx(0.1)  # 0.1 and 0.25
    assert paced.asked(3, 11.02, 10.55, (3, 10.15)) == pytest.approx(0.25)  # one place
    assert paced.places(3, 11.02, 10.55, (3, 10.15)) == 1
    one_place = [sends[0], Sent(5000, 80, 11.0, 7, 1, retry[1:3])]
    alone = Pacing.join(one_place, {3: trace}, since=0.0, tap=80)
    assert alone.asked(3, 11.02, 10.25, (3, 10.15)) == pytest.approx(0.3)


def test_a_sleep_in_a_thread_started_from_c_is_noted_without_a_caller(
    resilience: Resilience,
) -> None:
    """Found by review: ``sys._getframe(1)`` in the sleep's wrapper raised ValueError
    (after the sleep, into the code under test) when the wrapper was the thread's first
    Python frame, as in a thread ``_thread.start_new_thread`` started on ``time.sleep``."""
    resilience.http_service("payments")
    raised: list[BaseException | None] = []
    unraisable = sys.unraisablehook
    sys.unraisablehook = lambda hook: raised.append(hook.exc_value)
    try:
        before = _thread._count()
        _thread.start_new_thread(time.sleep, (0.2,))
        wait_for(lambda: _thread._count() > before, timeout=10, what="the thread to start")
        wait_for(lambda: _thread._count() == before, timeout=10, what="the thread to end")
    finally:
        sys.unraisablehook = unraisable
    assert raised == []


def test_a_herd_that_slept_from_one_place_is_not_told_of_two(resilience: Resilience) -> None:
    """The note on places is said only where a wait was slept from two: the herd queued
    behind a plain lock slept its backoff alone (``paced._queued_herd``)."""
    api = _queued_herd(resilience)
    with pytest.raises(InsufficientEvidence, match="slept from 300 to 300 ms") as raised:
        api.assert_backoff(jitter=True, min_factor=1)
    assert "two places" not in str(raised.value)


def test_equal_jitter_written_as_two_sleeps_is_never_called_jitter_free(
    resilience: Resilience,
) -> None:
    """The price of the rule: five clients with "equal jitter" (half of a 300 ms backoff
    fixed, half drawn), written as two sleeps on two lines.  The drawn half is the least
    asked, so the fixed half counts as noise, and the fleet is undecided, saying why;
    it is never called jitter-free or a storm (its drawn halves lie 20-143 ms)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=5)

    def client(n: int) -> None:
        draw = random.Random(n)
        if _charge(api, f"e{n}") == 503:
            time.sleep(0.15)
            time.sleep(draw.uniform(0, 0.15))
            _charge(api, f"e{n}")

    _run([threading.Thread(target=client, args=(n,)) for n in range(5)])
    assert [len(op.attempts) for op in operations(api.exchanges)] == [2] * 5
    _neither_clears(resilience, api, match="from two places")
