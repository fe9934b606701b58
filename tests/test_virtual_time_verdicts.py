"""Timing verdicts on virtual time read each wait's noise against the real time that wait
took (``assertions/timing.py``, ``Noise.real``): a wait's noise is real time, the jumps in
it cover only what the client asked to wait.  One wait held in real time (a client stalled
by a busy machine) used to weaken every wait's bound, and the herd's jitter went
undecided (once in ten stress runs of ``examples/payments`` on virtual time, session 16:
one wait took 193 ms of real time).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from paced import _charge, _queued_client
from records import T0, attempts, exchange
from simulated import herd, outcome, real_time

from pytest_resilience import HttpService, Resilience
from pytest_resilience.assertions import (
    InsufficientEvidence,
    ResilienceAssertionError,
    check_backoff,
    check_no_retry_storm,
)
from pytest_resilience.assertions.operations import InFlight, operations
from pytest_resilience.assertions.timing import Noise
from pytest_resilience.clock import real_monotonic

STALL = 0.7
"""Real seconds one client spends between an answer and its wait, as a stalled client would."""
WAITS = (0.02, 0.3, 0.6)
"""Waits three clients drew (fixed here, so that the test does not rest on a draw): hundreds
of ms apart, far beyond the real time each wait takes even on a loaded machine, and
within the stall, which bounded every wait before each was held to its own."""


def _retry_once(api: HttpService, key: str, wait: float, stall: float = 0.0) -> None:
    """One charge: a first attempt, ``stall`` real seconds of work on a 503, ``wait``
    seconds of sleep, then the retry."""
    for attempt in range(2):
        if _charge(api, key) != 503 or attempt == 1:
            return
        until = real_monotonic() + stall
        while real_monotonic() < until:  # real work: nothing to jump over
            pass
        time.sleep(wait)


@pytest.mark.virtual_time
def test_one_wait_held_in_real_time_leaves_the_others_jitter_shown(
    resilience: Resilience,
) -> None:
    """Three charges fail together and retry after their draws; a fourth, after they are
    done, is held 0.7 s of real time before its own wait.  The three waits lie 280-580 ms
    apart where each took a few ms of real time: no noise can spread them so, and jitter
    is shown, the stall notwithstanding (it was insufficient evidence: the bound of every
    wait was the stalled one's, and the probe's few samples could not decide)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=3)
    herd = [
        threading.Thread(target=_retry_once, args=(api, f"charge-{n}", wait))
        for n, wait in enumerate(WAITS)
    ]
    for client in herd:
        client.start()
    for client in herd:
        client.join()
    api.route("POST", "/charges").fail(503, count=1)
    _retry_once(api, "charge-stalled", 0.01, stall=STALL)

    ops = operations(api.exchanges)
    assert [len(op.attempts) for op in ops] == [2, 2, 2, 2]
    assert ops[-1].waits[0] >= STALL  # the stalled wait holds its real time
    api.assert_backoff(jitter=True, min_factor=1)


def _capped(noise: Noise) -> str:
    """Two clients capped at 100 ms: one waited 300 ms in 5 ms of real time, the other
    sat 300 ms in real time (noise can explain all of its excess)."""
    timeline = attempts(0.0, [0.3], "a") + attempts(0.001, [0.3], "b")
    spans = {"a": 0.005, "b": 0.3}
    real = {e.ended_at: spans[e.idempotency_key or ""] for e in timeline if e.status == 503}
    noise.real = lambda start, end: real[start]
    noise.bound = max(spans.values())
    try:
        check_backoff(timeline, jitter=False, min_factor=1, max_delay=0.1, noise=noise)
    except InsufficientEvidence:
        return "insufficient"
    except ResilienceAssertionError as exc:
        return str(exc)
    return "pass"


def test_a_wait_past_the_cap_by_more_than_its_own_real_time_fails() -> None:
    """The cap on virtual time: a wait about 200 ms past it in 5 ms of real time is the client's
    choice, whatever another wait took (it was insufficient evidence while one wait of
    300 ms real time set every wait's bound and the probe's latest delay was 80 ms)."""
    busy = Noise([0.08] + [0.001] * 20)
    verdict = _capped(busy)
    assert verdict.startswith("a retry waited 298 ms after the answer before it, above the cap")
    assert "no more than the real time the wait took" in verdict


WORK = [[0.0, 0.004], [0.012, 0.02], [0.025, 0.033], [0.04, 0.011]]
"""Seconds of their own work four lockstep clients put into each of their two waits: real
time on a busy machine, which the probe (a sleeping thread) does not see."""


def test_lockstep_clients_spread_by_their_own_work_are_never_shown_jittered() -> None:
    """Four clients that each wait 200 ms, twice, their waits spread up to 40 ms by their
    own work (each wait's real time is that work and a millisecond).  A quiet probe with
    many samples (a long run) models that spread as near impossible: read against it, as
    virtual time read every wait before, the herd passed the storm verdict and the jitter
    check.  On virtual time only a certainty clears it, and no wait lies further from the
    least than its own real time: insufficient evidence, never a pass (too spread, at 20%
    of the wait, to claim lockstep either)."""
    timeline = herd([[0.2 + work for work in row] for row in WORK], spread=0.0005)
    probe = Noise([0.0001] * 2000, bound=0.041)
    probe.real = real_time(timeline, [[work + 0.001 for work in row] for row in WORK])
    assert outcome(check_no_retry_storm, timeline, noise=probe) == "insufficient"
    assert outcome(check_backoff, timeline, min_factor=1, noise=probe) == "insufficient"


BACKOFF = 0.5


def _queued_herd(resilience: Resilience, cut: bool = False) -> HttpService:
    """Three such charges fail together; each retry's answer is held 0.3 s (and with
    ``cut``, cut short: an attempt without an answer), so the second and third retries
    queue for the slot behind it: their waits read 0.5, 0.8 and 1.1 s, and on virtual time
    the queueing is jumped over, a few ms of real time each (found by review: the waits
    were read as jitter, a certainty)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=3)
    api.route("POST", "/charges").delay(0.3, count=3)
    if cut:
        api.route("POST", "/charges").cut(count=3)
    slot = threading.Semaphore(1)
    herd = [
        threading.Thread(target=_queued_client, args=(api, f"c{n}", slot, BACKOFF))
        for n in range(3)
    ]
    for client in herd:
        client.start()
    for client in herd:
        client.join()
    retries = sorted(op.attempts[1].started_at for op in operations(api.exchanges))
    assert retries[1] - retries[0] >= 0.29 and retries[2] - retries[1] >= 0.29
    return api


@pytest.mark.virtual_time
@pytest.mark.parametrize("cut", [False, True], ids=["answered", "cut"])
def test_lockstep_clients_queued_behind_each_other_are_not_shown_jittered(
    resilience: Resilience, cut: bool
) -> None:
    """A retry that began right after another attempt's answer may have waited for it: its
    wait may hold virtual time it spent queued (``operations.InFlight.queued``), and the
    herd's jitter is not shown (it was a pass of both verdicts)."""
    api = _queued_herd(resilience, cut)
    with pytest.raises(InsufficientEvidence):
        api.assert_backoff(jitter=True, min_factor=1)
    with pytest.raises(InsufficientEvidence):
        resilience.assert_no_retry_storm(api)


@pytest.mark.virtual_time
def test_a_stalled_client_beside_a_queued_herd_does_not_show_jitter(
    resilience: Resilience,
) -> None:
    """The queued herd and a fourth client of the same policy held 0.7 s of real time: its
    stall set every wait's bound before waits were held to their own, and the herd was
    insufficient evidence; held to their own, it must still not pass."""
    api = _queued_herd(resilience)
    api.route("POST", "/charges").fail(503, count=1)
    _retry_once(api, "charge-stalled", BACKOFF, stall=0.7)
    with pytest.raises(InsufficientEvidence):
        api.assert_backoff(jitter=True, min_factor=1)


@pytest.mark.virtual_time
def test_a_retry_queued_past_the_cap_is_not_blamed_on_the_client(
    resilience: Resilience,
) -> None:
    """Each client asks 0.5 s, under a 0.6 s cap; two waited longer, queued for the slot.
    The wire cannot tell that wait from a client's choice: insufficient evidence, not a
    breach (it failed the client: "a retry waited 1104 ms ... above the cap")."""
    api = _queued_herd(resilience)
    with pytest.raises(InsufficientEvidence, match="may have queued behind them"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.6)


def _within(seconds: float) -> Callable[[float, float], bool]:
    """A hand-over as a gap of at most ``seconds`` (on virtual time: a gap with no jump)."""
    return lambda start, end: end - start <= seconds


def test_a_retry_is_queued_only_as_long_as_other_attempts_were_in_flight_before_it() -> None:
    """The virtual time a retry may have spent queued is the unbroken run of other attempts
    in flight that it began right after: none for its own lost answer (stamped inside the
    wait that follows it), a short one for a quick answer, up to the retry for an attempt
    cut without an answer (in flight until its operation gave up on it)."""
    lost = exchange(0.0, 503, key="a", delivered=False)
    retry = exchange(0.05, 200, key="a")
    assert InFlight(operations([lost, retry]), _within(1.0)).queued(lost, retry) == 0.0
    other = exchange(0.03, 503, key="b", took=0.018)  # in flight 30-48 ms, 2 ms before
    ops = operations([lost, retry, other])
    assert InFlight(ops, _within(0.005)).queued(lost, retry) == pytest.approx(0.018)
    assert InFlight(ops, _within(0.001)).queued(lost, retry) == 0.0
    earlier = exchange(0.005, 503, key="d", took=0.02)  # 5-25 ms: handed over at 30 ms
    ops = operations([lost, retry, other, earlier])
    assert InFlight(ops, _within(0.005)).queued(lost, retry) == pytest.approx(0.043)
    assert InFlight(ops, _within(0.003)).queued(lost, retry) == pytest.approx(0.018)
    cut = replace(exchange(0.01, None, key="c"), cut_at=0.046 + T0)  # cut at 46 ms
    ops = operations([lost, retry, cut])
    assert InFlight(ops, _within(0.005)).queued(lost, retry) == pytest.approx(0.036)


def test_an_attempt_still_in_flight_as_the_retry_began_did_not_hold_it() -> None:
    """Found by review: a slow answer still on its way, or a hung attempt no one retried,
    covered every wait it overlapped, and a client past its cap beside such traffic was
    insufficient evidence.  A retry that queued began once what it waited for was over."""
    previous = exchange(0.0, 503, key="a")
    retry = exchange(2.0, 200, key="a")
    slow = exchange(0.5, 200, key="b", took=1.6)  # 0.5-2.1 s
    polls = [exchange(start, 200, key=f"p{n}", took=0.9) for n, start in enumerate((0.1, 0.8, 1.6))]
    hung = exchange(-0.5, None, key="h")  # no answer, never retried
    for others in ([slow], polls, [hung]):
        ops = operations([previous, retry, *others])
        assert InFlight(ops, _within(0.0)).queued(previous, retry) == 0.0
    # The polls' run ended at 1.7 s, handed on to the retry: it may have queued 1.6 s.
    ops = operations([previous, retry, *polls])
    assert InFlight(ops, _within(0.31)).queued(previous, retry) == pytest.approx(1.6)
    noise = Noise([0.001] * 20, bound=0.002)
    noise.real = lambda start, end: 0.001  # every span jumped over but a millisecond
    timeline = [previous, retry, slow, hung, *polls]
    with pytest.raises(ResilienceAssertionError, match="above the cap of 1000 ms"):
        check_backoff(timeline, jitter=False, min_factor=1, max_delay=1.0, noise=noise)


@pytest.mark.virtual_time
def test_a_client_past_its_cap_beside_other_traffic_is_failed(resilience: Resilience) -> None:
    """A charge waiting 2 s against a 1 s cap while another client polls the service every
    25 ms: the polls end near its retry, but none was in flight through its excess, so the
    wait is the client's and the cap is failed (found by review: a window of the noise and
    tolerance after any answer made this insufficient evidence in 3 runs of 3)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=1)
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
            conn.request("GET", "/status")
            conn.getresponse().read()
            conn.close()
            time.sleep(0.025)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        _retry_once(api, "late", 2.0)
    finally:
        done.set()
        poller.join()
    with pytest.raises(ResilienceAssertionError, match="above the cap of 1000 ms"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=1.0)
