"""Verdicts over spans in which a fault kept requests from the HTTP layer (issue 10,
point 4): a client reconnecting while the service is down, or while its requests are cut
on the way in, leaves no HTTP record of those attempts.  The storm verdict said so; the
attempts and backoff verdicts read the records as if they were every attempt, and passed
a client that hammered an outage (``max=``) or failed one whose recorded gap held waits
it never showed (the cap).  What a record shows beyond doubt still decides: more attempts
than ``max`` recorded, a gap past the cap with no blind span in it.  A partition of the
answers alone (``direction="downstream"``) hides no request, and is judged as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from processes import wait_for
from real_clients import settled
from records import T0, attempts, exchange

from pytest_resilience import Fault, HttpService, Resilience
from pytest_resilience.assertions import (
    InsufficientEvidence,
    ResilienceAssertionError,
    check_attempts,
    check_backoff,
    check_retry_after_honoured,
)
from pytest_resilience.evidence import hides_requests
from pytest_resilience.http.records import Exchange

INTERVAL = 0.05
"""The clients' fixed wait between attempts, in seconds."""


@pytest.fixture
def api(resilience: Resilience) -> HttpService:
    service = resilience.http_service("api")
    service.respond(200, json={"ok": True})
    return service


def _hammer(api: HttpService, tries: list[int], gate: threading.Event) -> int:
    """The policy under test: a new attempt every INTERVAL until one is answered 200 (a
    deadline ends it, should a test fail meanwhile).  After each failed attempt it waits for
    ``gate``: the test opens it once the fault it waited for is in place."""
    deadline = time.monotonic() + 10.0
    with requests.Session() as session:
        while time.monotonic() < deadline:
            try:
                status = session.get(api.url + "/orders/1", timeout=0.3).status_code
            except requests.RequestException:
                status = 0
            if status == 200:
                return status
            tries[0] += 1
            gate.wait(5.0)
            time.sleep(INTERVAL)
    return 0


def _through(api: HttpService, fault: Callable[[], Fault], refused: int, before: int = 0) -> int:
    """Run one hammering client: after its first ``before`` failed attempts, through
    ``fault`` until it failed ``refused`` times in all; then heal, and let it finish.  Its
    attempts in all."""
    tries = [0]
    gate = threading.Event()
    handle = None if before else fault()
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(_hammer, api, tries, gate)
        try:
            if handle is None:
                wait_for(lambda: tries[0] >= before, timeout=5.0, interval=0.005, what="failed")
                handle = fault()
            gate.set()
            wait_for(lambda: tries[0] >= refused, timeout=5.0, interval=0.005, what="refused")
        finally:
            gate.set()
            if handle is not None:
                handle.heal()
        assert done.result(timeout=15) == 200
    return tries[0] + 1


def test_attempts_hidden_by_an_outage_are_insufficient_evidence(api: HttpService) -> None:
    """Six attempts or more, one on record: ``max=2`` passed."""
    made = _through(api, api.down, refused=5)
    settled(api, 1)

    assert made >= 6 and len(api.exchanges) == 1
    with pytest.raises(InsufficientEvidence, match=r"could leave no record \(down from t"):
        api.assert_attempts(max=2)


def test_attempts_recorded_beyond_max_fail_whatever_was_hidden(api: HttpService) -> None:
    api.fail(503, count=3)
    made = _through(api, api.down, refused=5)
    settled(api, 1)

    assert made >= 6
    with pytest.raises(ResilienceAssertionError, match="made 4 attempts") as raised:
        api.assert_attempts(max=2)
    assert not isinstance(raised.value, InsufficientEvidence)


def test_a_partition_of_the_answers_alone_hides_no_attempt(api: HttpService) -> None:
    """Requests reach the service and are recorded; only the answers are lost: the
    verdict decides both ways."""
    _through(api, lambda: api.partition(direction="downstream"), refused=2)
    made = len(settled(api, 3))

    api.assert_attempts(max=made)
    with pytest.raises(ResilienceAssertionError, match=f"made {made} attempts") as raised:
        api.assert_attempts(max=made - 1)
    assert not isinstance(raised.value, InsufficientEvidence)


def test_a_gap_past_the_cap_across_an_outage_is_insufficient_evidence(
    api: HttpService,
) -> None:
    """A 503, then refused reconnects every 50 ms for 0.3 s, then the answer: the recorded
    gap holds six waits of 50 ms, each under the 200 ms cap."""
    api.fail(503, count=1)
    _through(api, api.down, refused=7, before=1)
    settled(api, 2)

    with pytest.raises(InsufficientEvidence, match="could leave no record"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.2)


# -- On records built by hand (the checks alone) -----------------------------------------


def _op(key: str, gaps: list[float], at: float = 0.0) -> list[Exchange]:
    """Attempts of one keyed operation: each fails until the last, ``gaps`` apart."""
    return attempts(at, gaps, key)


def test_an_operation_done_before_the_blind_span_fails_min_and_nothing_passes() -> None:
    """Its last attempt answered at t+0.2, before the span from t+1: it made exactly three
    attempts.  But a whole call may lie in the span, so no bound is shown kept."""
    done = _op("a", [0.1, 0.1])
    blind = [(T0 + 1.0, T0 + 1.5, "down")]

    with pytest.raises(ResilienceAssertionError, match="made 3 attempts") as raised:
        check_attempts(done, min=4, blind=blind, origin=T0)
    assert not isinstance(raised.value, InsufficientEvidence)
    for bounds in ({"max": 3}, {"min": 3}, {"max": 3, "min": 2}):
        with pytest.raises(InsufficientEvidence, match=r"down from t\+1000 to t\+1500 ms"):
            check_attempts(done, blind=blind, origin=T0, **bounds)
    check_attempts(done, max=3, min=3, origin=T0)


def test_an_operation_a_blind_span_may_have_cut_short_is_not_failed_on_min() -> None:
    """Its first attempt failed at t+0; from t+0.05 its retries could leave no record."""
    cut = [exchange(0.0, 503, key="a")]
    blind = [(T0 + 0.05, T0 + 0.5, "partition")]

    with pytest.raises(InsufficientEvidence, match="at least 2 is not shown"):
        check_attempts(cut, min=2, blind=blind, origin=T0)
    with pytest.raises(ResilienceAssertionError, match="made 1 attempts") as raised:
        check_attempts(cut, min=2, origin=T0)
    assert not isinstance(raised.value, InsufficientEvidence)


def test_growth_and_jitter_wait_for_every_operation_a_span_may_have_reached() -> None:
    """Two fixed-interval operations done before the span show no growth; a third, whose
    gap spans it, leaves growth and jitter unjudged (those done before it are the quick
    ones), and its 0.9 s gap is no wait to judge against the cap.  A gap past the cap
    that no span overlaps still fails."""
    before = _op("a", [0.2, 0.2, 0.2]) + _op("b", [0.2, 0.2, 0.2], at=0.01)
    across = _op("c", [0.2, 0.9], at=2.0)
    blind = [(T0 + 2.3, T0 + 2.9, "down")]

    with pytest.raises(ResilienceAssertionError, match="retry waits do not grow") as raised:
        check_backoff(before, jitter=False, max_delay=0.5, blind=blind, origin=T0)
    assert not isinstance(raised.value, InsufficientEvidence)
    with pytest.raises(InsufficientEvidence, match="growth and jitter are not judged"):
        check_backoff(before + across, jitter=False, max_delay=0.5, blind=blind, origin=T0)
    with pytest.raises(ResilienceAssertionError, match="above the cap of 500 ms") as raised:
        check_backoff(before + across, jitter=False, min_factor=1, max_delay=0.5, origin=T0)
    assert not isinstance(raised.value, InsufficientEvidence)
    slow = _op("d", [0.9, 0.2], at=1.0)  # 0.9 s from t+1.0, before the span
    with pytest.raises(ResilienceAssertionError, match="above the cap of 500 ms") as raised:
        check_backoff(slow + across, jitter=False, min_factor=1, max_delay=0.5, blind=blind)
    assert not isinstance(raised.value, InsufficientEvidence)


@pytest.mark.parametrize(
    ("kind", "detail", "hides"),
    [
        ("down", "", True),
        ("partition", "direction=both mode=blackhole", True),
        ("partition", "direction=upstream mode=reset", True),
        ("partition", "direction=both mode=refuse", True),
        ("partition", "direction=downstream mode=blackhole", False),
        ("partition", "direction=downstream mode=reset", False),
        ("timeout", "timeout=0 stream=downstream", False),
        ("timeout", "timeout=500 stream=downstream", True),
        ("timeout", "timeout=0 stream=upstream", True),
        ("reset_peer", "timeout=0 stream=downstream", False),
        ("reset_peer", "timeout=0 stream=upstream", True),
        ("limit_data", "bytes=10 stream=downstream", False),
        ("limit_data", "bytes=10 stream=upstream", True),
        ("latency", "latency=100 jitter=0 stream=downstream", False),
        ("latency", "latency=100 jitter=0 stream=upstream", True),
        ("bandwidth", "rate=0 stream=upstream", True),
        ("packet_loss", "stream=downstream", True),
        ("fail", "status=503", False),
        ("rate_limit", "burst=3", False),
        ("cut", "", False),
    ],
)
def test_which_faults_may_keep_requests_from_the_http_layer(
    kind: str, detail: str, hides: bool
) -> None:
    """Toxiproxy's toxics on the answers' stream act after the request went through
    (``reset_peer`` at the answer's first bytes, ``toxics/reset_peer.go``), except a
    ``timeout`` that closes the connection, and what is not known here hides."""
    assert hides_requests(kind, detail) is hides


def test_a_wait_asked_for_across_a_blind_span_is_not_shown_kept() -> None:
    """A 429 asking for 1 s at t+0, a recorded retry at t+1.2 (kept), but the service
    was down from t+0.3 to t+0.6: an early retry may lie there unrecorded."""
    waited = [exchange(0.0, 429, key="a", retry_after="1"), exchange(1.2, 200, key="a")]
    blind = [(T0 + 0.3, T0 + 0.6, "down")]

    check_retry_after_honoured(waited, origin=T0)
    with pytest.raises(InsufficientEvidence, match="during the waits 1 answers asked for"):
        check_retry_after_honoured(waited, blind=blind, origin=T0)
    check_retry_after_honoured(waited, blind=[(T0 + 1.5, T0 + 2.0, "down")], origin=T0)
    early = [exchange(0.0, 429, key="a", retry_after="1"), exchange(0.2, 200, key="a")]
    with pytest.raises(ResilienceAssertionError, match=r"retried 19[0-9] ms after") as raised:
        check_retry_after_honoured(early, blind=blind, origin=T0)
    assert not isinstance(raised.value, InsufficientEvidence)
    # No retry follows a success, and none can be early for a wait within the tolerance:
    # nothing shows a wait kept, blind or not.
    answered = [exchange(0.0, 200, key="a", retry_after="1")]
    with pytest.raises(InsufficientEvidence, match="1 answer that reached the client carried"):
        check_retry_after_honoured(answered, blind=blind, origin=T0)
    at_once = [exchange(0.0, 429, key="a", retry_after="0"), exchange(1.2, 200, key="a")]
    with pytest.raises(
        InsufficientEvidence, match="no retry followed one asking for more than the tol"
    ):
        check_retry_after_honoured(at_once, blind=[(T0 - 0.1, T0 + 0.6, "down")], origin=T0)
