"""The circuit-breaker verdict on synthetic timelines: the breaker opens after N failures,
hears nothing for its cooldown while called, then lets one probe through at a time."""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import pytest
from records import (
    HEALTHY,
    T0,
    breaker,
    call,
    evidence,
    exchange,
    failure,
    insufficient,
    marked,
    rule,
)
from simulated import delay, said

from pytest_resilience import ConfigurationError
from pytest_resilience.assertions import (
    InsufficientEvidence,
    ResilienceAssertionError,
    check_breaker_opened,
    check_breaker_respected,
)
from pytest_resilience.assertions.timing import HOPS
from pytest_resilience.http.records import Exchange
from pytest_resilience.observe.noise import PERIOD
from pytest_resilience.observe.records import Call, IntentEvent

# -- circuit breaker ---------------------------------------------------------------------------


def test_breaker_that_opens_stays_quiet_and_probes_once_passes() -> None:
    check_breaker_opened(*breaker(HEALTHY), after_failures=3, cooldown=1.0)


def test_breaker_quiet_just_short_of_the_cooldown_passes_within_tolerance() -> None:
    check_breaker_opened(*breaker([(1.07, 200, 0.01)]), after_failures=3, cooldown=1.0)


def test_breaker_that_keeps_calling_the_service_fails() -> None:
    exchanges, calls = breaker([(0.2, 503, 0.002), (0.4, 503, 0.002), *HEALTHY])
    message = failure(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)
    assert rule(message) == (
        "breaker did not open: after 3 consecutive failures the service still got 2 calls "
        "within the 1 s cooldown, the first 98 ms later."
    )
    rows = evidence(message)
    assert [(r.t, r.operation, r.status, r.allowed) for r in rows if r.flagged] == [
        ("200", "GET /stock", "503", "none before +1000 ms"),
        ("400", "GET /stock", "503", "none before +1000 ms"),
    ]
    assert ("200", "client call", "4") in [(r.t, r.operation, r.attempt) for r in rows]
    assert [r.allowed for r in rows if r.operation == "GET /stock" and r.t in ("0", "100")] == [
        "",
        "",
    ]


def test_a_request_past_the_tolerance_by_no_more_than_timing_noise_is_insufficient() -> None:
    """A concurrent caller's request begun before the answer that opened the breaker
    reached the client can arrive after it, on a busy machine later than the 50 ms
    tolerance: 80 ms after the opening (30 ms past it) shows nothing where the probe
    measured wake-ups of 10 ms (4 of them: 40 ms), and breaks the rule where it measured
    5 ms (20 ms), or nothing (as before)."""
    exchanges, calls = breaker([(0.182, 503, 0.002), *HEALTHY])
    message = insufficient(check_breaker_opened, exchanges, calls, 3, 1.0, noise=lambda *_: [0.01])
    assert rule(message) == (
        "insufficient evidence: after 3 consecutive failures the service got 1 request "
        "within the 1 s cooldown, but none more than 30 ms past the 50 ms tolerance, within "
        "the 40 ms that timing noise can add (4 wake-ups of up to 10.0 ms, the latest "
        "measured): on a busy machine it may have left before the answer that opened the "
        "breaker reached the client (concurrent callers), so whether it opened is not shown; "
        "what decides is a request reaching the service later than that, or none."
    )
    assert [r.t for r in evidence(message) if r.flagged] == ["182"]
    message = failure(check_breaker_opened, exchanges, calls, 3, 1.0, noise=lambda *_: [0.005])
    assert rule(message) == (
        "breaker did not open: after 3 consecutive failures the service still got 1 call "
        "within the 1 s cooldown, the first 80 ms later, by more than the 50 ms tolerance "
        "plus the 20 ms that timing noise can add (4 wake-ups of up to 5.0 ms, the latest "
        "measured)."
    )
    assert rule(failure(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0))


def test_requests_set_aside_as_noise_leave_a_later_breach_to_fail() -> None:
    """Review: set aside as noise, the early request made the verdict insufficient at once,
    hiding a half-open burst and a failed probe not heeded, which fail without it."""
    burst = [(1.15, 200, 0.03), (1.16, 200, 0.002), (1.17, 200, 0.002)]
    exchanges, calls = breaker([(0.172, 503, 0.002), *burst])
    message = failure(check_breaker_opened, exchanges, calls, 3, 1.0, noise=lambda *_: [0.01])
    assert rule(message).startswith("breaker let 3 calls through at once after the cooldown")
    unheeded = [(1.15, 503, 0.002), (1.3, 503, 0.002), (1.4, 200, 0.002)]
    exchanges, calls = breaker([(0.172, 503, 0.002), *unheeded])
    message = failure(check_breaker_opened, exchanges, calls, 3, 1.0, noise=lambda *_: [0.01])
    assert rule(message).startswith("breaker did not open again after its probe failed")
    # Where it would pass after a failed probe heeded, it is insufficient, and the table
    # flags the request set aside (review: it flagged the failed probe's window instead).
    heeded = [(1.15, 503, 0.002), (2.2, 200, 0.002)]
    exchanges, calls = breaker([(0.172, 503, 0.002), *heeded], client=(0.2, 0.4, 2.2))
    message = insufficient(check_breaker_opened, exchanges, calls, 3, 1.0, noise=lambda *_: [0.01])
    assert [r.t for r in evidence(message) if r.flagged] == ["172"]
    # The noise read is the probe's from the opening to the last request set aside.
    spans: list[tuple[float, float]] = []
    exchanges, calls = breaker([(0.172, 503, 0.002), *HEALTHY])
    insufficient(
        check_breaker_opened,
        exchanges,
        calls,
        3,
        1.0,
        noise=lambda since, until: spans.append((since, until)) or [0.01],
    )
    assert spans == [(pytest.approx(T0 + 0.102), pytest.approx(T0 + 0.172))]


def _concurrent(
    no_breaker: bool, scale: float, runs: int, rng: random.Random, measured: bool = True
) -> list[str]:
    """``runs`` breakers that open at 102 ms (:func:`records.breaker`) while three other
    callers' requests are on their way, each reaching the service :data:`HOPS` wake-up
    delays after the opening (the answer to the client, the request to the service); with
    ``no_breaker`` the client also keeps sending a request every 25 ms of the cooldown.
    The probe samples the same machine every ``PERIOD`` over the 1.4 s judged (none
    unless ``measured``: the tolerance alone)."""
    outcomes = []
    for _ in range(runs):
        arrivals = [0.102 + sum(delay(rng, scale) for _ in range(HOPS)) for _ in range(3)]
        if no_breaker:
            arrivals += [0.125 + n * 0.025 for n in range(36)]
        exchanges, calls = breaker([*((at, 503, 0.002) for at in sorted(arrivals)), *HEALTHY])
        probe = [(T0 + n * PERIOD, delay(rng, scale)) for n in range(int(1.4 / PERIOD))]
        judge = partial(
            check_breaker_opened,
            exchanges,
            calls,
            3,
            1.0,
            noise=lambda a, b, probe=probe: [d for at, d in probe if measured and a <= at <= b],
        )
        outcomes.append(said(judge))
    return outcomes


def test_requests_on_their_way_at_the_opening_are_seldom_called_a_breach() -> None:
    """The allowance past the tolerance is :meth:`Noise.most`, a bound, not a p-value (as
    for the backoff cap and recovery).  Simulated delays strike the requests apart from the
    probe, 1 in 100 a 10x hiccup, and the probe's samples are read from the opening to the
    last request set aside, as the plugin reads them.  Three requests on their way when a
    correct breaker opens are called a breach in 3 of 400 runs (0 at 1 ms wake-ups, 3 of
    200 at 5 ms; 0-2 with seeds 1-2), and pass in 379 (383), the rest insufficient
    evidence; with the 50 ms tolerance alone, as before, they were called a breach in 28 of
    the 200 at 5 ms (13-14 with seeds 1-2).  A client with no breaker is caught in 199 of
    200 (197), the rest insufficient evidence where the probe measured hiccups enough that
    four of them outlast the cooldown."""
    rng = random.Random(20261206)
    correct = _concurrent(False, 0.001, 200, rng) + _concurrent(False, 0.005, 200, rng)
    broken = _concurrent(True, 0.001, 100, rng) + _concurrent(True, 0.005, 100, rng)
    assert correct.count("breaker did not open") <= 4
    assert correct.count("pass") >= 370
    assert all(o in ("breaker did not open", "insufficient") for o in broken), broken
    assert broken.count("breaker did not open") >= 190
    alone = _concurrent(False, 0.005, 200, random.Random(20261206), measured=False)
    assert alone.count("breaker did not open") >= 10


def test_breaker_without_client_calls_during_the_cooldown_cannot_be_judged() -> None:
    exchanges, calls = breaker(HEALTHY, client=[1.15, 1.3, 1.4])
    message = insufficient(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)
    assert rule(message).startswith(
        "insufficient evidence: the breaker cannot be judged: the client was not called in "
        "the 1 s after 3 consecutive failures (beyond the tolerance of 50 ms)"
    )
    assert rule(message).endswith("keep calling it (resilience.load) through the cooldown.")
    assert not marked(message)


def test_a_call_within_the_tolerance_of_the_opening_shows_no_breaker() -> None:
    """A client without a breaker passed: its only call in the cooldown came 8 ms after
    the opening failure's answer, and its request, begun within the tolerance, was
    excused as already on its way; nothing showed a call held back."""
    exchanges, calls = breaker([(0.11, 503, 0.002)], client=(0.11,))
    insufficient(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)
    # The same request 200 ms after the opening is a breach on record.
    exchanges, calls = breaker([(0.2, 503, 0.002)], client=(0.2,))
    message = failure(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)
    assert rule(message).startswith("breaker did not open")


def test_a_breach_on_record_fails_without_a_call_in_the_cooldown() -> None:
    """Found by review: the call the quiet needs was asked for before the burst and the
    failed probe's re-opening were judged, so those breaches on record were called
    insufficient evidence."""
    burst = [(1.15, 200, 0.05), (1.16, 200, 0.002), (1.17, 200, 0.002)]
    for calls in ([1.15, 1.16, 1.17], []):
        exchanges, driven = breaker(burst, client=calls)
        message = failure(check_breaker_opened, exchanges, driven, after_failures=3, cooldown=1.0)
        assert rule(message).startswith("breaker let 3 calls through at once")
    exchanges, driven = breaker([(1.15, 503, 0.002), (1.3, 503, 0.002)], client=[1.15, 1.3])
    message = failure(check_breaker_opened, exchanges, driven, after_failures=3, cooldown=1.0)
    assert rule(message).startswith("breaker did not open again after its probe failed")


def test_a_cooldown_the_tolerance_leaves_no_room_in_is_refused() -> None:
    exchanges, calls = breaker(HEALTHY)
    with pytest.raises(ConfigurationError, match=r"^cooldown \(0.1 s\) must be over twice"):
        check_breaker_opened(exchanges, calls, after_failures=3, cooldown=0.1)
    # With room for a call, the same records are decided as they are: none fell in it.
    insufficient(check_breaker_opened, exchanges, calls, 3, 0.1, tolerance=0.01)


def test_breaker_letting_a_burst_through_after_the_cooldown_fails() -> None:
    exchanges, calls = breaker([(1.15, 200, 0.05), (1.16, 200, 0.002), (1.17, 200, 0.002)])
    message = failure(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)
    assert rule(message) == (
        "breaker let 3 calls through at once after the cooldown; a half-open breaker sends "
        "one probe and waits for its answer."
    )
    assert [(t, op) for t, op, _ in marked(message)] == [
        ("1160", "GET /stock"),
        ("1170", "GET /stock"),
    ]
    # The same calls after the probe's answer are a closed breaker at work.
    check_breaker_opened(
        *breaker([(1.15, 200, 0.05), (1.21, 200, 0.002), (1.22, 200, 0.002)]),
        after_failures=3,
        cooldown=1.0,
    )


def test_breaker_without_enough_consecutive_failures_cannot_be_judged() -> None:
    exchanges = [
        exchange(at, status, method="GET", path="/stock")
        for at, status in ((0.0, 503), (0.05, 503), (0.1, 200), (0.15, 503), (0.2, 503))
    ]
    calls = [call(n, at) for n, at in enumerate((0.0, 0.05, 0.1, 0.15, 0.2, 0.5))]
    message = insufficient(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)
    assert rule(message) == (
        "insufficient evidence: the breaker cannot be judged: the service never saw 3 "
        "consecutive failures; inject a fault that lasts longer."
    )
    assert not marked(message)
    assert [r.status for r in evidence(message) if r.operation == "GET /stock"] == [
        "503",
        "503",
        "200",
        "503",
        "503",
    ]
    # Two in a row are there: the verdict judges, and finds the service called at 150 ms
    # (the call at 100 ms began within the 50 ms tolerance of the failure at 52 ms).
    message = failure(check_breaker_opened, exchanges, calls, after_failures=2, cooldown=0.25)
    assert rule(message).startswith("breaker did not open: after 2 consecutive failures")
    assert marked(message)[0] == ("150", "GET /stock", "")


def test_a_request_sent_before_the_opening_failure_reached_the_client_is_no_breach() -> None:
    """Zoo (circuitbreaker, purgatory): a concurrent caller's request 10 ms after the
    server sent the third failure left before the client's breaker counted it."""
    exchanges, calls = breaker([(0.112, 503, 0.002), *HEALTHY])
    check_breaker_opened(exchanges, calls, after_failures=3, cooldown=1.0)
    message = failure(
        check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0, tolerance=0.005
    )
    assert rule(message).startswith("breaker did not open: after 3 consecutive failures")


def test_breaker_that_hammers_after_a_failed_probe_fails() -> None:
    """Bug: a probe that fails must re-open the breaker; one that closes and lets every
    call through at once passes."""
    exchanges, calls = breaker(
        [(1.15, 503, 0.002), *((1.16 + n * 0.01, 503, 0.002) for n in range(5))],
        client=[0.2, 0.4, 0.6, 0.8, *(1.16 + n * 0.01 for n in range(5))],
    )
    failure(check_breaker_opened, exchanges, calls, after_failures=3, cooldown=1.0)


def test_a_quiet_cooldown_across_a_blind_span_is_not_shown_quiet() -> None:
    """Issue 10, point 4: with the service down from t+0.3 to t+0.6 (no record of the
    attempts in it), a client hammering it through the cooldown would have looked quiet."""
    exchanges, calls = breaker(HEALTHY)
    start = min(e.started_at for e in exchanges)
    blind = [(start + 0.3, start + 0.6, "down")]

    with pytest.raises(InsufficientEvidence, match="heard nothing on record"):
        check_breaker_opened(exchanges, calls, after_failures=3, cooldown=1.0, blind=blind)
    later = [(start + 5.0, start + 6.0, "down")]  # after the probe was answered
    check_breaker_opened(exchanges, calls, after_failures=3, cooldown=1.0, blind=later)
    # A probe that failed opens the breaker again: the service down in that cooldown hides
    # whether the client kept away (found by review: the time judged ended at the probe).
    failed_probe = [(1.15, 503, 0.01)]  # and nothing on record after it
    refused, refused_calls = breaker(failed_probe, client=[0.2, 0.6, 1.2, 1.5, 2.0, 2.2])
    after_probe = [(start + 1.3, start + 2.0, "down")]
    with pytest.raises(InsufficientEvidence, match="heard nothing on record"):
        check_breaker_opened(
            refused, refused_calls, after_failures=3, cooldown=1.0, blind=after_probe
        )
    check_breaker_opened(refused, refused_calls, after_failures=3, cooldown=1.0)
    early, early_calls = breaker([(0.2, 503, 0.002), (0.4, 503, 0.002), *HEALTHY])
    with pytest.raises(ResilienceAssertionError, match="breaker did not open") as raised:
        check_breaker_opened(early, early_calls, after_failures=3, cooldown=1.0, blind=blind)
    assert not isinstance(raised.value, InsufficientEvidence)


# -- a breaker's own word: requests while it said open ------------------------------------


CALLED = [call(n, n * 0.05) for n in range(23)]
"""The client called every 50 ms from 0 to 1.1 s: through the open spell below."""


def _said_open(*requests: float) -> tuple[list[Exchange], list[IntentEvent], list[Call]]:
    """The client's breaker opens at 102 ms (its listener's record) and half-opens at
    1.102 s; the service gets the three failures that opened it, then ``requests``; the
    client is called every 50 ms meanwhile (:data:`CALLED`)."""
    exchanges = [exchange(at, 503, method="GET", path="/stock") for at in (0.0, 0.05, 0.1)]
    exchanges += [exchange(at, 503, method="GET", path="/stock") for at in requests]
    intents = [
        IntentEvent(T0 + at, "stock", "pybreaker", "breaker", state)
        for at, state in ((0.102, "open"), (1.102, "half-open"))
    ]
    return exchanges, intents, CALLED


def test_a_request_past_the_tolerance_by_no_more_than_noise_shows_nothing() -> None:
    """A request reaching the service 70 ms after the breaker said open, 20 ms past the
    50 ms tolerance, may have been let through before it opened by a concurrent caller and
    held on the way, when the probe measured 10 ms wake-ups (4 of them: 40 ms)."""
    exchanges, intents, called = _said_open(0.172)
    spans: list[tuple[float, float]] = []
    message = insufficient(
        check_breaker_respected,
        exchanges,
        intents,
        called,
        noise=lambda since, until: spans.append((since, until)) or [0.01],
    )
    assert rule(message) == (
        "insufficient evidence: 1 request reached the service while the breaker said open, "
        "but none more than 20 ms past the 50 ms tolerance, within the 40 ms that timing "
        "noise can add (4 wake-ups of up to 10.0 ms, the latest measured): on a busy machine "
        "it may have been let through before it opened and held on the way (concurrent "
        "callers), so whether the breaker is respected is not shown; what decides is a "
        "request reaching the service later than that, or none."
    )
    assert spans == [(pytest.approx(T0 + 0.102), pytest.approx(T0 + 0.172))]
    assert [r.t for r in evidence(message) if r.flagged] == ["172"]
    # No noise measured: none allowed.
    message = failure(check_breaker_respected, exchanges, intents, called)
    assert rule(message) == (
        "breaker said open, yet 1 request reached the service; the first 70 ms after it "
        "opened. Calls that bypass the breaker (another client, a retry outside it) keep "
        "hammering the service."
    )
    # Later than the allowance: a breach, the allowance named, the one within it not flagged.
    exchanges, intents, called = _said_open(0.172, 0.3)
    message = failure(
        check_breaker_respected, exchanges, intents, called, noise=lambda a, b: [0.01]
    )
    assert rule(message).startswith(
        "breaker said open, yet 1 request reached the service; the first 198 ms after it "
        "opened, by more than the 50 ms tolerance plus the 40 ms that timing noise can add"
    )
    assert [r.t for r in evidence(message) if r.flagged] == ["300"]
    # Within the tolerance, or after the breaker half-opened: nothing to judge.
    check_breaker_respected(*_said_open(0.15, 1.11), noise=lambda a, b: [0.01])


def _respected(
    bypass: bool, scale: float, runs: int, rng: random.Random, **judged: Any
) -> list[str]:
    """``runs`` breakers that say open at 102 ms while three other callers' requests, let
    through before, are on their way, each reaching the service :data:`HOPS` wake-up delays
    after the opening; with ``bypass`` a second code path also sends a request every 25 ms
    while the breaker is open.  The probe samples the same machine every ``PERIOD``;
    ``judged``: the verdict's arguments (``measured=False``: no noise measured)."""
    measured = judged.pop("measured", True)
    outcomes = []
    for _ in range(runs):
        arrivals = [0.102 + sum(delay(rng, scale) for _ in range(HOPS)) for _ in range(3)]
        if bypass:
            arrivals += [0.125 + n * 0.025 for n in range(36)]
        exchanges, intents, called = _said_open(*sorted(arrivals))
        probe = [(T0 + n * PERIOD, delay(rng, scale)) for n in range(int(1.2 / PERIOD))]
        judge = partial(
            check_breaker_respected,
            exchanges,
            intents,
            called,
            noise=lambda a, b, probe=probe: [d for at, d in probe if measured and a <= at <= b],
            **judged,
        )
        outcomes.append(said(judge).split(";", 1)[0])
    return outcomes


BYPASS = "breaker said open, yet"


def test_requests_on_their_way_when_a_breaker_says_open_are_seldom_called_a_bypass() -> None:
    """As for ``assert_breaker_opened`` (above), the allowance is a bound, not a p-value,
    with delays striking the requests apart from the probe, 1 in 100 a 10x hiccup.  Three
    requests let through just before a correct breaker said open are called a bypass in
    none of 200 runs at 1 ms wake-ups and 4 of 200 at 5 ms (3-4 with seeds 1-2), pass in
    384 of the 400, the rest insufficient evidence.  The verdict's old rule, a 10 ms
    tolerance and no allowance, called them a bypass in 14 of 200 at 1 ms and 198 of 200 at
    5 ms; a 50 ms tolerance alone, in 14 of 200 at 5 ms, so the allowance is most of the
    gain there.  A second code path bypassing the breaker is caught in 198 of 200, the rest
    insufficient evidence (hiccups the probe measured reach past it)."""
    rng = random.Random(20261206)
    quick = _respected(False, 0.001, 200, rng)
    busy = _respected(False, 0.005, 200, rng)
    bypass = _respected(True, 0.001, 100, rng) + _respected(True, 0.005, 100, rng)
    assert sum(o.startswith(BYPASS) for o in quick) == 0
    assert sum(o.startswith(BYPASS) for o in busy) <= 5
    assert (quick + busy).count("pass") >= 380
    assert all(o.startswith(BYPASS) or o == "insufficient" for o in bypass), bypass
    assert sum(o.startswith(BYPASS) for o in bypass) >= 196
    old = partial(_respected, False, runs=200, tolerance=0.01, measured=False)
    assert sum(o.startswith(BYPASS) for o in old(0.001, rng=random.Random(20261206))) >= 10
    assert sum(o.startswith(BYPASS) for o in old(0.005, rng=random.Random(20261206))) >= 190
    alone = _respected(False, 0.005, 200, random.Random(20261206), measured=False)
    assert sum(o.startswith(BYPASS) for o in alone) >= 10


def test_a_breaker_never_open_longer_than_the_tolerance_cannot_be_judged() -> None:
    """Found by review: a request can count only past the tolerance, so a breaker open
    30 ms at a time passed whatever reached the service while it was open."""
    exchanges = [exchange(at, 503, method="GET", path="/stock") for at in (0.0, 0.11, 0.12)]
    intents = [
        IntentEvent(T0 + at, "stock", "pybreaker", "breaker", state)
        for at, state in ((0.1, "open"), (0.13, "half-open"))
    ]
    message = insufficient(check_breaker_respected, exchanges, intents, CALLED)
    assert rule(message) == (
        "insufficient evidence: the breaker cannot be judged: it stayed open 30 ms at most, "
        "within the 50 ms tolerance in which a request let through before it opened may still "
        "reach the service; pass a smaller tolerance, or give the breaker a longer reset "
        "timeout."
    )
    message = failure(check_breaker_respected, exchanges, intents, CALLED, tolerance=0.005)
    assert rule(message).startswith("breaker said open, yet 2 requests reached the service")


def test_a_breaker_the_client_was_not_called_through_while_open_cannot_be_judged() -> None:
    """Found by review: a breaker that opened and was then left alone passed, and so would
    a client that bypasses it; only a call refused while it said open shows it respected
    (pybreaker 1.4 ``CircuitOpenState.before_call`` refuses a call before any listener's
    ``before_call``, so the run's calls are the only record of one)."""
    exchanges, intents, _ = _said_open()
    before = [call(n, n * 0.05) for n in range(3)]
    message = insufficient(check_breaker_respected, exchanges, intents, before)
    assert rule(message) == (
        "insufficient evidence: no request reached the service while the breaker said open, "
        "but no call of the run began in an open spell more than 50 ms from its opening and "
        "its end, so nothing showed the breaker holding one back; call the client through "
        "the run while the breaker is open."
    )
    assert ("0", "client call", "1") in [(r.t, r.operation, r.attempt) for r in evidence(message)]
    # A call within the tolerance of the opening shows nothing; one past it does.
    near = [*before, call(3, 0.14)]
    insufficient(check_breaker_respected, exchanges, intents, near)
    check_breaker_respected(exchanges, intents, [*near, call(4, 0.2)])
    # No run given: nothing shows the client called while the breaker was open.
    message = insufficient(check_breaker_respected, exchanges, intents, None)
    assert rule(message) == (
        "insufficient evidence: no request reached the service while the breaker said open, "
        "but no run was given to show that the client was called then (a call the breaker "
        "refuses leaves no other record); pass the run (of resilience.load or drive) that "
        "called the client while its breaker was open."
    )


def test_the_call_that_half_opens_a_breaker_shows_nothing_held_back() -> None:
    """Found by review: pybreaker 1.4 half-opens on a call, the first after its reset
    timeout (``CircuitOpenState.before_call`` calls ``half_open()``, then the call goes
    through), so that call begins just before the spell ends and was never refused; it
    passed the verdict alone.  The spell's last ``tolerance`` is not judged."""
    exchanges, intents, _ = _said_open(1.103)
    probe = [call(0, 1.1015)]  # the half-open change is at 1.102 s
    insufficient(check_breaker_respected, exchanges, intents, probe)
    check_breaker_respected(exchanges, intents, [call(0, 1.0), *probe])


def test_a_breaker_open_while_requests_could_leave_no_record_cannot_be_judged() -> None:
    """Found by review: under a fault that refuses connections, a second code path
    bypassing the open breaker reaches no HTTP layer, so it passed."""
    exchanges, intents, called = _said_open()
    down = [(T0 + 0.5, T0 + 0.8, "down")]
    message = insufficient(check_breaker_respected, exchanges, intents, called, blind=down)
    assert rule(message) == (
        "insufficient evidence: no request reached the service on record while the breaker "
        "said open, but requests could leave no record (down from t+500 to t+800 ms); judge "
        "the breaker under a fault that answers (fail, rate_limit, cut, a partition of the "
        'answers alone: direction="downstream").'
    )
    # A span before the breaker opened leaves the spell on record.
    check_breaker_respected(exchanges, intents, called, blind=[(T0 + 0.0, T0 + 0.1, "down")])


def test_a_breaker_whose_calls_stop_before_the_cooldown_ends_cannot_be_judged() -> None:
    """Found by an audit: one call 0.2 s into a 1 s cooldown, and no call after it, passed;
    a breaker with a 0.3 s cooldown leaves the same records."""
    exchanges, calls = breaker(client=[0.3])
    message = insufficient(check_breaker_opened, exchanges, calls, 3, 1.0)
    assert rule(message) == (
        "insufficient evidence: the client's last call began 198 ms after the breaker "
        "opened, before its 1 s cooldown ended (within the 50 ms tolerance): a breaker with a "
        "cooldown that short leaves the same records; keep calling the client (resilience.load) "
        "until the cooldown has ended."
    )
    # Called on past the cooldown's end (and still refused): the quiet is shown.
    check_breaker_opened(*breaker(client=[0.3, 1.07]), 3, 1.0)


def test_failures_that_may_have_left_no_record_before_the_streak_leave_it_unshown() -> None:
    """Found by an audit: the service down for a while (each refused attempt a failure the
    breaker counts, none on record), then three 503s, passed after_failures=3; a breaker
    opening after 13 failures leaves the same records."""
    exchanges, calls = breaker(HEALTHY)
    down = [(T0 - 1.0, T0 - 0.01, "down")]
    judge = partial(check_breaker_opened, after_failures=3, cooldown=1.0, origin=T0 - 1.5)
    message = insufficient(judge, exchanges, calls, blind=down)
    assert rule(message) == (
        "insufficient evidence: the service saw 3 consecutive failures on record, but "
        "failures before them could leave no record (down from t+500 to t+1490 ms), so the "
        "breaker may have counted more before it opened; judge it on a fault that answers "
        '(fail, rate_limit, cut, a partition of the answers alone: direction="downstream").'
    )
    # A success on record between the span and the streak resets the count.
    ok_first = [exchange(-0.005, 200, method="GET", path="/stock"), *exchanges]
    judge(ok_first, calls, blind=down)
