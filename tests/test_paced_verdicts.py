"""Timing verdicts on real time read what the thread that sent each retry asked to sleep
(``observe/pacing.py``, ``runtime/pacing.py``).

Two false verdicts on real time, known limits until now (session 18's closing note):

- a herd of fixed-backoff clients queued one behind another (a shared slot) shows waits
  spread 0.3 s apart on the wire, and passed ``assert_backoff(jitter=True)`` and the storm
  verdict;
- lockstep clients whose waits their own work spread (a busy machine) were read against
  the probe's model, which leaves that work out, and were cleared.

Their threads asked the same sleep: with it noted, the rest of each wait is noise
(queueing, work), and the herd is never shown jittered.  A retry queued past the cap
was failed; its thread asked no more than the cap, so it is insufficient evidence now.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.client
import itertools
import queue
import random
import select
import socket
import sys
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import tenacity
from simulated import herd

from pytest_resilience import HttpService, Resilience
from pytest_resilience.assertions import (
    InsufficientEvidence,
    ResilienceAssertionError,
    check_backoff,
    check_no_retry_storm,
)
from pytest_resilience.assertions.operations import answered_at, operations
from pytest_resilience.assertions.timing import Noise
from pytest_resilience.clock import real_monotonic
from pytest_resilience.http.records import Exchange
from pytest_resilience.observe.join import Trace
from pytest_resilience.observe.pacing import Pacing
from pytest_resilience.runtime.pacing import PacingRecorder, Sent, Sleep
from pytest_resilience.runtime.virtual import virtual_time

BACKOFF = 0.3


def _charge(api: HttpService, key: str | None) -> int:
    """One attempt on a new connection (keyless with no ``key``); its status."""
    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        headers = {} if key is None else {"Idempotency-Key": key}
        conn.request("POST", "/charges", body=b"{}", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def _run(clients: list[threading.Thread]) -> None:
    for client in clients:
        client.start()
    for client in clients:
        client.join()


def _neither_clears(resilience: Resilience, api: HttpService, match: str | None = None) -> None:
    """Neither jitter verdict clears ``api``'s retries: each is insufficient evidence (its
    message matching ``match``, if given)."""
    with pytest.raises(InsufficientEvidence, match=match):
        api.assert_backoff(jitter=True, min_factor=1)
    with pytest.raises(InsufficientEvidence, match=match):
        resilience.assert_no_retry_storm(api)


def _queued_client(
    api: HttpService, key: str, slot: contextlib.AbstractContextManager[object]
) -> None:
    """A charge with a fixed backoff and no jitter, sent through one shared slot (a pool of
    one connection), held until its answer is read."""
    for attempt in range(2):
        with slot:
            status = _charge(api, key)
        if status != 503 or attempt == 1:
            return
        time.sleep(BACKOFF)


def _queued_herd(
    resilience: Resilience,
    clients: int = 5,
    slot: contextlib.AbstractContextManager[object] | None = None,
) -> HttpService:
    """``clients`` such charges fail together; each retry's answer is held 0.3 s, so the
    retries queue for the slot: their waits read 0.3, 0.6, 0.9 ... s."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=clients)
    api.route("POST", "/charges").delay(0.3, count=clients)
    shared = threading.Semaphore(1) if slot is None else slot
    _run(
        [
            threading.Thread(target=_queued_client, args=(api, f"c{n}", shared))
            for n in range(clients)
        ]
    )
    retries = sorted(op.attempts[1].started_at for op in operations(api.exchanges))
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(retries))
    return api


def test_a_queued_herd_is_not_shown_jittered_on_real_time(resilience: Resilience) -> None:
    """Five clients, one fixed 0.3 s backoff: the wire shows waits 0.3 s apart, which passed
    both verdicts.  Each thread asked 300 ms; the rest of its wait it was queued."""
    api = _queued_herd(resilience)
    with pytest.raises(InsufficientEvidence, match="slept from 300 to 300 ms"):
        api.assert_backoff(jitter=True, min_factor=1)
    with pytest.raises(InsufficientEvidence, match="slept from"):
        resilience.assert_no_retry_storm(api)


def test_a_retry_queued_past_the_cap_is_insufficient_evidence_on_real_time(
    resilience: Resilience,
) -> None:
    """Each client asks 0.3 s, under a 0.4 s cap; four waited longer, queued for the slot.
    It was failed ("a retry waited 1205 ms ... above the cap"); the thread asked 300 ms."""
    api = _queued_herd(resilience)
    with pytest.raises(InsufficientEvidence, match="slept no longer than 300 ms"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


def test_a_client_that_asks_past_the_cap_is_failed(resilience: Resilience) -> None:
    """A sleep asked beyond the cap, and a wait beyond it by more than noise: failed, as
    without pacing (what a client asked never fails it by itself: a third review found a
    lock polled with ``time.sleep`` read as asked, and a queued client failed)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=1)
    assert _charge(api, "late") == 503
    time.sleep(0.6)
    assert _charge(api, "late") == 200
    with pytest.raises(ResilienceAssertionError, match="above the cap of 400 ms") as raised:
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)
    assert not isinstance(raised.value, InsufficientEvidence)


WORK = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)
"""Seconds of their own work six lockstep clients do between an answer and their sleep,
waiting outside the interpreter (a lookup, a disk write, a query): what a busy machine
stretches unevenly there, and the probe (a sleeping thread, which that work does not
hold back) never sees."""


def _work(seconds: float) -> None:
    """Work that waits outside the interpreter, unnoted (a wait in C; a sleep in C)."""
    select.select([], [], [], seconds)


def _working_client(
    api: HttpService,
    key: str,
    work: float,
    pause: Callable[[float], object] = time.sleep,
    working: Callable[[float], object] = _work,
) -> None:
    for attempt in range(3):
        if _charge(api, key) != 503 or attempt == 2:
            return
        working(work)
        pause(0.2)


def _working_herd(
    resilience: Resilience,
    pause: Callable[[float], object],
    working: Callable[[float], object] = _work,
) -> HttpService:
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=12)
    _run(
        [
            threading.Thread(target=_working_client, args=(api, f"w{n}", work, pause, working))
            for n, work in enumerate(WORK)
        ]
    )
    return api


@pytest.mark.parametrize("working", ["in C", "Event.wait"])
def test_lockstep_clients_spread_by_their_own_work_are_not_shown_jittered(
    resilience: Resilience, working: str
) -> None:
    """Six clients waiting 200 ms twice, spread up to 100 ms by their own work: against the
    probe's model of a quiet machine that spread is jitter, and both verdicts passed.  The
    work waits outside the interpreter, in C or on an event for something that did not
    come in time (a lookup given up to so long): the second review found the second
    design reading the latter as asked sleep, which let the herd through."""
    work = _work if working == "in C" else threading.Event().wait
    _neither_clears(resilience, _working_herd(resilience, time.sleep, work))


class _TimedPollSlot:
    """One slot taken with timed acquires in a loop (a checkout that wakes every 50 ms to
    check for shutdown): a semaphore waits on a condition, which nothing notes."""

    def __init__(self) -> None:
        self._slot = threading.Semaphore(1)

    def __enter__(self) -> None:
        while not self._slot.acquire(timeout=0.05):
            pass

    def __exit__(self, *exc: object) -> None:
        self._slot.release()


class _QueuePool:
    """A pool of one token, checked out with ``get(timeout=0.05)`` in a loop."""

    def __init__(self) -> None:
        self._tokens: queue.Queue[int] = queue.Queue()
        self._tokens.put(1)

    def __enter__(self) -> None:
        while True:
            with contextlib.suppress(queue.Empty):
                self._tokens.get(timeout=0.05)
                return

    def __exit__(self, *exc: object) -> None:
        self._tokens.put(1)


class _EventPolledSlot:
    """One slot whose release is signalled on an event, waited on 50 ms at a time between
    tries: the waits that run out are polls, not a sleep the client chose."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()

    def __enter__(self) -> None:
        while not self._lock.acquire(blocking=False):
            self._released.wait(0.05)
            self._released.clear()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        self._released.set()


NEVER: concurrent.futures.Future[None] = concurrent.futures.Future()
"""A future nothing completes."""


class _FuturesPolledSlot:
    """One slot, its release polled with ``concurrent.futures.wait(timeout=0.05)``: each
    call waits on an event of its own (``_base._Waiter``), so no second wait on one
    event shows the poll (found by the second review)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        while not self._lock.acquire(blocking=False):
            concurrent.futures.wait([NEVER], timeout=0.05)

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


TIMED_POLLS = [_TimedPollSlot, _QueuePool, _EventPolledSlot, _FuturesPolledSlot]


@pytest.mark.parametrize("slot", TIMED_POLLS, ids=lambda slot: slot.__name__)
def test_a_herd_queued_by_timed_polls_is_not_shown_jittered(
    resilience: Resilience, slot: type[contextlib.AbstractContextManager[object]]
) -> None:
    """Found by review: the queued herd, its slot polled with timed waits.  Noting every
    wait that ran out as asked (a first design: ``Condition.wait``; a second: the first
    wait on each event since the caller's I/O) read the polls as asked sleep, and both
    verdicts cleared the herd.  Only ``time.sleep`` and ``asyncio.sleep`` are noted: the
    threads asked 300 ms."""
    api = _queued_herd(resilience, slot=slot())
    with pytest.raises(InsufficientEvidence, match="slept from 300 to 300 ms"):
        api.assert_backoff(jitter=True, min_factor=1)
    with pytest.raises(InsufficientEvidence):
        resilience.assert_no_retry_storm(api)


@pytest.mark.parametrize("slot", TIMED_POLLS, ids=lambda slot: slot.__name__)
def test_a_retry_queued_past_the_cap_by_timed_polls_is_not_failed(
    resilience: Resilience, slot: type[contextlib.AbstractContextManager[object]]
) -> None:
    """Found by review: the same herd under a 0.4 s cap; with the polls read as asked,
    the queued clients were failed ("a retry waited 1508 ms ... above the cap")."""
    api = _queued_herd(resilience, slot=slot())
    with pytest.raises(InsufficientEvidence, match="slept no longer than 300 ms"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


def test_the_plugins_own_schedule_is_not_read_as_the_clients_sleep(
    resilience: Resilience,
) -> None:
    """Found by review: ``resilience.load`` waits for each call's slot on an event of the
    plugin's (``clock.real_sleep``), on the caller's thread.  A keyless client sleeps
    100 ms after each failure and is called twice a second: the next call's request is a
    retry of the failed operation, about 0.5 s after its answer, of which the client
    asked 0.1 s.  With the schedule read as asked, it was failed against a 0.2 s cap."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=2)

    def call() -> None:
        for _ in range(2):
            if _charge(api, None) == 200:
                return
            time.sleep(0.1)

    resilience.load(call, duration=1.0, rate=2, concurrency=1)
    with pytest.raises(InsufficientEvidence, match="slept no longer than 100 ms"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.2)


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


def test_pool_threads_ask_only_their_own_sleeps(resilience: Resilience) -> None:
    """Two pool threads run four lockstep clients' retries one after another: a thread's
    second retry comes a sleep and a request after its first, and had both of its sleeps
    been read as asked for it, the herd would have shown jitter.  Sleeps before the thread's
    last I/O are not the pause before its next request."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=4)
    keys = [f"p{n}" for n in range(4)]
    for key in keys:
        assert _charge(api, key) == 503

    def retry(key: str) -> int:
        time.sleep(BACKOFF)
        return _charge(api, key)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert list(pool.map(retry, keys)) == [200] * 4
    with pytest.raises(InsufficientEvidence, match="slept from 300 to 300 ms"):
        api.assert_backoff(jitter=True, min_factor=1)


SLEEPS = tuple(0.1 + 0.15 * n for n in range(8))
"""Sleeps eight jittered clients drew, fixed here so that the test rests on no draw."""


def _jittered_fleet(resilience: Resilience, pause: Callable[[float], object]) -> HttpService:
    """Eight clients failed together, each retrying after its sleep of :data:`SLEEPS`."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=len(SLEEPS))

    def client(key: str, wait: float) -> None:
        assert _charge(api, key) == 503
        pause(wait)
        assert _charge(api, key) == 200

    _run([threading.Thread(target=client, args=(f"j{n}", w)) for n, w in enumerate(SLEEPS)])
    return api


def test_what_the_clients_asked_leaves_a_jittered_fleet_cleared(resilience: Resilience) -> None:
    """What the clients asked only vetoes the probe's model: eight clients whose sleeps
    lie 150 ms apart are cleared as before, the sleeps confirming the spread."""
    api = _jittered_fleet(resilience, time.sleep)
    api.assert_backoff(jitter=True, min_factor=1)
    resilience.assert_no_retry_storm(api)


def test_what_a_retry_asked_is_the_sleeps_of_its_sender_since_its_last_io() -> None:
    """``Pacing.asked``: a request's sends share the socket's read count, the first of them
    carries the sleeps since the caller's last I/O, and those after the answer count; a
    request whose send is unknown has None; sends to another tap, or on the port once its
    connection ended, are another's.  No sleep noted is 0 when the same caller sent the
    attempt before, and not known (None) when another did (it may not have waited)."""
    trace = Trace(1, "d", 0, True, opened_at=10.0, ended_at=20.0, port=5000)
    sends = [
        Sent(5000, 80, 10.1, 7, 0, ()),  # the first request
        Sent(5000, 80, 11.0, 7, 1, (Sleep(10.3, 0.1), Sleep(10.5, 0.4))),  # the retry's head ...
        Sent(5000, 80, 11.01, 7, 1, ()),  # ... and its body
        Sent(5001, 80, 11.0, 8, 0, (Sleep(10.2, 0.7),)),  # another connection
        Sent(5000, 81, 10.9, 9, 0, (Sleep(10.4, 0.45),)),  # the same local port, another service
    ]
    pacing = Pacing.join(sends, {3: trace}, since=0.0, tap=80)
    first = (3, 10.15)
    assert pacing.asked(3, 11.02, 10.25, first) == pytest.approx(0.5)
    assert pacing.asked(3, 11.02, 10.4, first) == pytest.approx(0.4)
    assert pacing.asked(3, 11.02, 10.55, first) == 0.0
    assert pacing.asked(3, 10.05, 0.0, first) is None
    assert pacing.asked(4, 11.02, 0.0, first) is None
    handed = [sends[0], Sent(5000, 80, 11.0, 12, 1, (Sleep(10.3, 0.1),))]  # the retry, by a task
    other = Pacing.join(handed, {3: trace}, since=0.0, tap=80)
    assert other.asked(3, 11.02, 10.25, first) == pytest.approx(0.1)
    assert other.asked(3, 11.02, 10.55, first) is None
    later = Trace(2, "d", 0, False, opened_at=21.0, port=5000)
    again = Pacing.join(
        [*sends, Sent(5000, 80, 21.5, 9, 0, (Sleep(21.1, 0.3),))], {3: trace, 4: later}, 0.0, 80
    )
    assert [s.caller for s in again.sends[4]] == [9]


class _Unavailable(Exception):
    pass


def _fixed(api: HttpService, key: str, wait: float, start: float = 0.0) -> None:
    """tenacity with ``wait_fixed``: no jitter (``tenacity/wait.py`` ``wait_fixed.__call__``
    returns ``self.wait_fixed``; ``tenacity/nap.py`` ``sleep`` calls ``time.sleep``); it
    retries a 503 and a refused connection alike."""
    time.sleep(start)

    @tenacity.retry(
        wait=tenacity.wait_fixed(wait),
        stop=tenacity.stop_after_attempt(4),
        retry=tenacity.retry_if_exception_type((_Unavailable, OSError)),
        reraise=True,
    )
    def charge() -> None:
        if _charge(api, key) == 503:
            raise _Unavailable

    charge()


def test_a_fixed_backoff_across_a_refused_connection_is_not_shown_jittered(
    resilience: Resilience,
) -> None:
    """Found by review: six clients with one fixed 0.5 s backoff, 80 ms apart, the service
    down from 0.45 to 0.70 s.  The first three retries are refused (no record) and come
    0.5 s later: their clients slept twice in the wait, "asked" 1.0 s beside the others'
    0.5 s, and what they asked cleared them.  It only vetoes now: the probe's model
    decides, as before pacing."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=6)
    began = time.monotonic()
    clients = [
        threading.Thread(target=_fixed, args=(api, f"d{n}", 0.5, 0.08 * n)) for n in range(6)
    ]
    for client in clients:
        client.start()
    time.sleep(max(0.0, 0.45 - (time.monotonic() - began)))
    outage = api.down()
    time.sleep(max(0.0, 0.70 - (time.monotonic() - began)))
    outage.heal()
    for client in clients:
        client.join()
    with pytest.raises(InsufficientEvidence):
        api.assert_backoff(jitter=True, min_factor=1)


def _two_fixed_policies(resilience: Resilience) -> HttpService:
    """Found by review: five clients retry every 300 ms, a sixth (another configuration)
    every 450 ms; none jitters.  The sixth asked longer than the others' waits, and what
    it asked cleared the herd: it only vetoes now, and the probe's model is undecided."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=12)
    waits = [0.3] * 5 + [0.45]
    _run([threading.Thread(target=_fixed, args=(api, f"k{n}", w)) for n, w in enumerate(waits)])
    return api


def test_two_fixed_policies_side_by_side_are_not_shown_jittered(resilience: Resilience) -> None:
    api = _two_fixed_policies(resilience)
    _neither_clears(resilience, api)


class _PolledLock:
    """A lock taken by polling (try, sleep 5 ms, try again, as a file lock does): its
    sleeps are queueing, not a wait the client chose."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        while not self._lock.acquire(blocking=False):
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_herd_queued_by_a_polled_lock_is_not_shown_jittered(resilience: Resilience) -> None:
    """Found by review (a strict xfail until session 22): the queued herd above, its slot
    taken by polling with ``time.sleep``.  The polls read as asked sleep, so what the
    clients asked did not veto, and the probe's model cleared the herd (as before
    pacing).  Now the polls (``_PolledLock.__enter__``) and the backoff
    (``_queued_client``) are sleeps from two places, and only the lesser counts as asked:
    each client's wait holds its 300 ms backoff or less."""
    api = _queued_herd(resilience, slot=_PolledLock())
    _neither_clears(resilience, api, match="from two places")


def test_a_wait_past_the_cap_that_was_no_asked_sleep_is_not_shown_either_way(
    resilience: Resilience,
) -> None:
    """Found by review: a lone client sleeps 20 ms, then waits 1.2 s on a lock (a wait in
    C, which nothing notes), 0.8 s past a 0.4 s cap.  Nothing tells that wait from time
    queued behind others, or from a backoff waited in C: insufficient evidence, saying
    both (it was failed before pacing, as was a queued retry; the message read "queued
    behind others" alone)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=1)
    assert _charge(api, "solo") == 503
    time.sleep(0.02)
    held = threading.Lock()
    held.acquire()
    assert not held.acquire(timeout=1.2)
    assert _charge(api, "solo") == 200
    with pytest.raises(InsufficientEvidence, match="a wait the plugin does not see"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


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


TICK = 0.5


def test_clients_retrying_on_the_same_tick_are_not_cleared(resilience: Resilience) -> None:
    """Found by review (a false pass before pacing too): five clients arriving 40 ms apart
    each retry on the next 0.5 s tick of the wall clock; their retries reach the service
    within a few ms, a storm, yet their waits and sleeps differ by the arrival spread, and
    both verdicts cleared them.  A retry index clears only if its arrivals lie apart too."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=5)
    time.sleep(TICK - time.time() % TICK + 0.01)

    def client(n: int) -> None:
        time.sleep(0.04 * n)
        if _charge(api, f"a{n}") == 503:
            wait = TICK - time.time() % TICK
            time.sleep(wait if wait >= 0.2 else wait + TICK)
            _charge(api, f"a{n}")

    _run([threading.Thread(target=client, args=(n,)) for n in range(5)])
    retries = sorted(e.started_at for e in api.exchanges if e.status == 200)
    assert retries[-1] - retries[0] < 0.05  # one instant: a storm
    with pytest.raises(ResilienceAssertionError):
        resilience.assert_no_retry_storm(api)
    with pytest.raises(ResilienceAssertionError):
        api.assert_backoff(jitter=True, min_factor=1)


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


async def _async_queued_client(api: HttpService, key: str, slot: asyncio.Semaphore) -> None:
    """The queued client as a coroutine: httpx's async client, one shared slot, a fixed
    backoff slept with ``asyncio.sleep``."""
    async with httpx.AsyncClient(timeout=10) as client:
        for attempt in range(2):
            async with slot:
                answer = await client.post(
                    f"{api.url}/charges", content=b"{}", headers={"Idempotency-Key": key}
                )
            if answer.status_code != 503 or attempt == 1:
                return
            await asyncio.sleep(BACKOFF)


def test_a_queued_herd_of_tasks_is_not_shown_jittered(resilience: Resilience) -> None:
    """Five tasks on one event loop, queued behind one slot: a thread runs them all, so
    what each asked is noted per task (and a read in the loop's callbacks is no task's)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=5)
    api.route("POST", "/charges").delay(0.3, count=5)

    async def herd() -> None:
        slot = asyncio.Semaphore(1)
        await asyncio.gather(*(_async_queued_client(api, f"t{n}", slot) for n in range(5)))

    asyncio.run(herd())
    with pytest.raises(InsufficientEvidence, match="slept from 300 to 300 ms"):
        api.assert_backoff(jitter=True, min_factor=1)
    with pytest.raises(InsufficientEvidence, match="slept no longer than 300 ms"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


def test_what_tasks_asked_leaves_a_jittered_fleet_cleared(resilience: Resilience) -> None:
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=len(SLEEPS))

    async def client(key: str, wait: float) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            assert (
                await http.post(f"{api.url}/charges", headers={"Idempotency-Key": key})
            ).status_code == 503
            await asyncio.sleep(wait)
            assert (
                await http.post(f"{api.url}/charges", headers={"Idempotency-Key": key})
            ).status_code == 200

    async def herd() -> None:
        await asyncio.gather(*(client(f"a{n}", w) for n, w in enumerate(SLEEPS)))

    asyncio.run(herd())
    api.assert_backoff(jitter=True, min_factor=1)
    resilience.assert_no_retry_storm(api)


# -- Found by the second review ------------------------------------------------------


def _deadline_fixed(api: HttpService, key: str, wait: float) -> None:
    """A fixed backoff with no jitter, slept to a deadline taken at the answer (so that the
    client's own work after the answer is part of the wait, a common idiom):
    ``time.sleep(retry_at - time.monotonic())``.  The seconds asked differ between
    clients in the last few microseconds, never bit-identical."""
    for attempt in range(3):
        status = _charge(api, key)
        retry_at = time.monotonic() + wait
        if status != 503 or attempt == 2:
            return
        time.sleep(max(0.0, retry_at - time.monotonic()))


def test_two_fixed_policies_slept_to_a_deadline_are_not_shown_jittered(
    resilience: Resilience,
) -> None:
    """tests/test_paced_verdicts.py's two fixed policies (five clients at 300 ms, a sixth at
    450 ms, none jitters), each sleep taken as ``deadline - now``: no two asked sleeps are
    the very same, so the sixth's 450 ms clears the herd again."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=12)
    waits = [0.3] * 5 + [0.45]
    _run(
        [
            threading.Thread(target=_deadline_fixed, args=(api, f"k{n}", w))
            for n, w in enumerate(waits)
        ]
    )
    _neither_clears(resilience, api)


class _TokenBucket:
    """A client-side rate limiter shared by the clients (a token bucket of ``capacity``,
    one token every ``interval``): a caller takes its token and sleeps until it is due,
    as reserve-then-sleep limiters do (Guava's RateLimiter.acquire)."""

    def __init__(self, capacity: int, interval: float) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._tokens = float(capacity)
        self._interval = interval
        self._stamp = time.monotonic()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            refill = (now - self._stamp) / self._interval
            self._tokens = min(self._capacity, self._tokens + refill)
            self._stamp = now
            self._tokens -= 1
            due = max(0.0, -self._tokens * self._interval)
        time.sleep(due)


def test_a_herd_queued_by_a_token_bucket_is_not_shown_jittered(resilience: Resilience) -> None:
    """Five clients, one fixed 300 ms backoff, no jitter, behind a shared token bucket
    (burst 5, a token every 350 ms): the first attempts go at once, the retries queue for
    tokens.  The queue is a sleep, the longest of each client's, and the herd queued
    behind it was cleared (a strict xfail until session 22).  The bucket's sleep
    (``_TokenBucket.acquire``) and the backoff (``client``) are slept from two places,
    and only the lesser counts as asked."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=5)
    bucket = _TokenBucket(capacity=5, interval=0.35)

    def client(key: str) -> None:
        for attempt in range(2):
            bucket.acquire()
            if _charge(api, key) != 503 or attempt == 1:
                return
            time.sleep(0.3)

    _run([threading.Thread(target=client, args=(f"b{n}",)) for n in range(5)])
    _neither_clears(resilience, api)


CHUNK = 0.05


def _nap(seconds: float, stop: threading.Event | None = None) -> None:
    """An interruptible sleep: in chunks of 50 ms, so that a stop request is seen soon
    (daemons, workers with graceful shutdown)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            return
        time.sleep(min(CHUNK, left))


def _sleeps(timeline: list[Exchange], asked: Callable[[int, float], list[float]]) -> Pacing:
    """The sends of a simulated ``herd``'s retries, each after the sleeps ``asked(n, wait)``
    gives for operation n's wait, slept one after another from the answer before it."""
    sends = {}
    for n in range(len({e.idempotency_key for e in timeline})):
        mine = sorted((e for e in timeline if e.idempotency_key == f"op{n}"), key=_started)
        for a, b in itertools.pairwise(mine):
            since = answered_at(a)
            slept, at = [], since
            for seconds in asked(n, b.started_at - since - 0.002):
                slept.append(Sleep(at, seconds))
                at += seconds
            sends[b.connection] = (Sent(b.connection, 0, b.started_at, n, 0, tuple(slept)),)
    return Pacing(sends)


def _started(exchange: Exchange) -> float:
    return exchange.started_at


_DRAW = random.Random(7)
DRAWS = [_DRAW.uniform(0.1, 0.4) for _ in range(20)]
"""Twenty clients' backoffs drawn from 100-400 ms (seeded: the test rests on no draw)."""
QUIET = Noise([0.0005] * 400)
"""A quiet machine's probe: the probe's model clears these fleets, and the test asks
whether what the clients asked vetoes that."""


def test_jittered_clients_that_sleep_in_chunks_are_not_vetoed() -> None:
    """Found by review: a backoff slept in 50 ms chunks (an interruptible sleep) made every
    client's longest sleep 50 ms, and the fleet was left undecided.  All of a caller's
    sleeps in the wait are what it asked."""
    timeline = herd([[w + 0.002] for w in DRAWS])

    def chunks(n: int, wait: float) -> list[float]:
        whole, left = divmod(wait, CHUNK)
        return [CHUNK] * int(whole) + ([left] if left > 0 else [])

    pacing = _sleeps(timeline, chunks)
    check_backoff(timeline, min_factor=1, noise=QUIET, pacing=pacing)
    check_no_retry_storm(timeline, noise=QUIET, pacing=pacing)


def test_jitter_drawn_in_whole_milliseconds_is_not_vetoed() -> None:
    """Found by review: ``retrying`` draws its random wait in whole milliseconds
    (``retrying.py`` ``Retrying.random_sleep``: ``random.randint(min, max)``, slept as
    ``time.sleep(sleep / 1000.0)``), so two of twenty clients often draw the same sleep,
    which a rule against repeated sleeps took for no jitter."""
    draws = [round(w, 3) for w in DRAWS[:19]] + [round(DRAWS[0], 3)]  # one draw twice
    timeline = herd([[w + 0.002] for w in draws])
    pacing = _sleeps(timeline, lambda n, wait: [draws[n]])
    check_backoff(timeline, min_factor=1, noise=QUIET, pacing=pacing)
    check_no_retry_storm(timeline, noise=QUIET, pacing=pacing)


def test_the_probe_alone_would_clear_what_the_veto_stops() -> None:
    """The veto's own test: the same fleet whose clients all asked the least sleep (a
    queue spread their waits) is cleared by the probe's model alone, and not with what
    they asked."""
    timeline = herd([[w + 0.002] for w in DRAWS])
    check_no_retry_storm(timeline, noise=QUIET)
    least = min(DRAWS)
    with pytest.raises(InsufficientEvidence, match="slept from"):
        check_no_retry_storm(
            timeline, noise=QUIET, pacing=_sleeps(timeline, lambda n, wait: [least])
        )


def test_a_client_past_its_cap_in_chunks_is_failed(resilience: Resilience) -> None:
    """A lone client waits 1.2 s, three times a 0.4 s cap, slept in 50 ms chunks: every
    instant of the wait was a sleep it asked, yet its longest is 50 ms, under the cap, so
    the breach is "insufficient evidence"; before pacing it was failed."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=1)
    assert _charge(api, "late") == 503
    _nap(1.2)
    assert _charge(api, "late") == 200
    with pytest.raises(ResilienceAssertionError) as raised:
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)
    assert not isinstance(raised.value, InsufficientEvidence), raised.value


# Jitter drawn in whole milliseconds: two clients draw the same sleep


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


def test_a_retry_queued_past_the_cap_by_a_polled_lock_is_not_failed(
    resilience: Resilience,
) -> None:
    """Found by review: the queued herd (fixed 300 ms backoff under a 400 ms cap), its
    slot a lock taken by polling with ``time.sleep`` (filelock, redis-py's
    ``Lock.acquire``): with a plain lock this is insufficient evidence, the rest of each
    wait queueing.  The polls read as asked sleep, so nothing excused the wait, and the
    client was failed (a strict xfail until session 22).  Slept from two places, only
    the lesser counts: the backoff's 300 ms, or the polls where they were shorter."""
    api = _queued_herd(resilience, slot=_PolledLock())
    with pytest.raises(InsufficientEvidence, match="from two places"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


def test_the_arrivals_veto_keeps_the_async_clients_burst_of_five_as_decided() -> None:
    """examples/async_client's burst (full jitter under 50 ms x 2^k, cap 0.5 s), five
    quotes, 1,000 seeded fleets as test_timing_verdicts judges them: 18 insufficient
    without the arrivals veto ("five in 2-3%" in that test's docstring), 54 with it.  The
    arrivals' slack is 5% of the longest *arrival*, which holds the spread of the answers
    before (earlier retries' jitter), so later retry indices of a jittered herd clear less."""
    from test_timing_verdicts import _burst

    verdicts = _burst(5, 1000, random.Random(20261203))
    assert verdicts.count("insufficient") <= 30, verdicts.count("insufficient")


def test_a_herd_vetoed_by_its_arrivals_is_told_so() -> None:
    """Five clients 40 ms apart retrying on one tick: their waits lie 32% apart, and only
    the arrivals veto clears them.  The message says the waits are "too alike to rule
    out timing noise and jitter under x0.95-1.0" (they are 32% apart) and advises longer
    waits or more operations; it never names the arrivals."""
    timeline = herd([[0.5 - 0.04 * i + 0.002] for i in range(5)], spread=0.04)
    with pytest.raises(InsufficientEvidence, match="arrived closer together"):
        check_no_retry_storm(timeline, noise=Noise([0.0005] * 400))


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
