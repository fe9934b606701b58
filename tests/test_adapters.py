"""Library adapters: what tenacity, backoff, stamina and pybreaker intend, on the timeline,
and the verdict comparing a breaker's word with the traffic the service saw."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any

import backoff
import pybreaker
import pytest
import requests
import stamina
import stamina.instrumentation
import tenacity

from pytest_resilience import (
    HttpService,
    InsufficientEvidence,
    Resilience,
    ResilienceAssertionError,
)


class Unavailable(Exception):
    pass


@pytest.fixture
def payments(resilience: Resilience) -> HttpService:
    service = resilience.http_service("payments")
    service.respond(200, json={"ok": True})
    return service


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    state = random.getstate()
    random.seed(7)  # the libraries' jitter draws from the global generator
    yield
    random.setstate(state)


def get(session: requests.Session, service: HttpService) -> Any:
    response = session.get(service.url + "/quote", timeout=2)
    if response.status_code >= 500:
        raise Unavailable(response.status_code)
    return response.json()


def planned(resilience: Resilience, source: str) -> list[float]:
    return [float(i.value) for i in resilience.timeline.intents("payments") if i.source == source]  # type: ignore[arg-type]


def gaps(service: HttpService) -> list[float]:
    starts = [e.started_at for e in service.exchanges]
    return [b - a for a, b in itertools.pairwise(starts)]


def test_tenacity_planned_waits_are_recorded_and_kept(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    payments.fail(503, count=3)
    intent = resilience.intent("payments")
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Unavailable),
        wait=tenacity.wait_random_exponential(multiplier=0.02, max=0.2),
        stop=tenacity.stop_after_attempt(5),
        before_sleep=intent.tenacity_before_sleep,
    )

    assert retrying(get, session, payments) == {"ok": True}

    waits = planned(resilience, "tenacity")
    assert len(waits) == 3
    assert [i.attempt for i in resilience.timeline.intents()] == [1, 2, 3]
    # Each gap between attempts is the planned wait plus the round trip.
    assert all(gap >= wait for gap, wait in zip(gaps(payments), waits, strict=True))


def test_backoff_planned_waits_are_recorded(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    payments.fail(503, count=2)
    intent = resilience.intent(payments)

    @backoff.on_exception(
        backoff.expo, Unavailable, factor=0.02, max_tries=4, on_backoff=intent.backoff_on_backoff
    )
    def call() -> Any:
        return get(session, payments)

    assert call() == {"ok": True}
    waits = planned(resilience, "backoff")
    assert len(waits) == 2
    assert all(gap >= wait for gap, wait in zip(gaps(payments), waits, strict=True))


def test_stamina_waits_are_recorded_during_the_block_and_its_hooks_restored(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    payments.fail(503, count=2)
    before = stamina.instrumentation.get_on_retry_hooks()

    with resilience.intent("payments").stamina():
        for attempt in stamina.retry_context(
            on=Unavailable, attempts=4, wait_initial=0.01, wait_max=0.1, wait_jitter=0.01
        ):
            with attempt:
                get(session, payments)

    assert stamina.instrumentation.get_on_retry_hooks() == before
    assert len(planned(resilience, "stamina")) == 2


def breaker(resilience: Resilience) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(
        fail_max=3,
        reset_timeout=0.3,
        listeners=[resilience.intent("payments").breaker_listener()],
    )


def guarded(
    cb: pybreaker.CircuitBreaker, session: requests.Session, payments: HttpService
) -> Callable[[], Any]:
    """A client call through ``cb``: None when it refused the call or the call failed."""

    def call() -> Any:
        try:
            return cb.call(get, session, payments)
        except (pybreaker.CircuitBreakerError, Unavailable):
            return None

    return call


def test_a_breaker_that_keeps_its_word_passes(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    payments.fail(503)
    call = guarded(breaker(resilience), session, payments)
    run = resilience.load(call, duration=0.8, rate=25)

    states = [i.value for i in resilience.timeline.intents("payments")]
    assert states[:2] == ["open", "half-open"]
    resilience.assert_breaker_respected(payments, run)


def test_calls_that_bypass_an_open_breaker_are_caught(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """A second code path (here: a health check) calls the service straight while the
    client's breaker says it is open."""
    payments.fail(503)
    cb = breaker(resilience)

    def call() -> Any:
        try:
            return cb.call(get, session, payments)
        except (pybreaker.CircuitBreakerError, Unavailable):
            if cb.current_state == "open":
                session.get(payments.url + "/health", timeout=2)  # the bypass
            return None

    resilience.load(call, duration=0.4, rate=25)

    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker said open, yet \d+ requests? reached the service; the first \d+ ms "
        r"after it opened",
    ) as info:
        resilience.assert_breaker_respected(payments)
    assert "GET /health" in str(info.value)
    assert "breaker -> open" in str(info.value)


def test_a_breaker_left_alone_once_open_cannot_be_judged(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """It passed: the client opened its breaker with three failures and was not called
    again, so a client bypassing the breaker would have passed too.  A call refused while
    open reaches no listener (pybreaker 1.4 ``CircuitOpenState.before_call`` raises
    ``CircuitBreakerError`` before the listeners' ``before_call``), so the test's runs
    are what shows the client called then."""
    payments.fail(503)
    call = guarded(breaker(resilience), session, payments)
    opening = resilience.drive(call, calls=3)
    assert [i.value for i in resilience.timeline.intents("payments")] == ["open"]
    with pytest.raises(InsufficientEvidence, match=r"no call of the run began in an open"):
        resilience.assert_breaker_respected(payments, opening)
    with pytest.raises(InsufficientEvidence, match=r"no run was given"):
        resilience.assert_breaker_respected(payments)
    # Calls refused while it is open (within its 0.3 s reset timeout) show it respected.
    refused = resilience.load(call, duration=0.2, rate=25)
    resilience.assert_breaker_respected(payments, refused)


def test_breaker_respected_without_a_listener_cannot_be_judged(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    get(session, payments)
    with pytest.raises(
        InsufficientEvidence,
        match=r"^insufficient evidence: the breaker cannot be judged: it reported",
    ):
        resilience.assert_breaker_respected(payments)


def test_breaker_respected_that_never_said_open_cannot_be_judged(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """It passed: a breaker that never reported "open" has no open window in which a
    request could be shown held back (pybreaker's ``CircuitBreaker.half_open``/``close``
    call the listeners' ``state_change``)."""
    listener = resilience.intent(payments).breaker_listener()
    guard = pybreaker.CircuitBreaker(fail_max=5, listeners=[listener])
    guard.half_open()
    guard.close()
    get(session, payments)
    with pytest.raises(InsufficientEvidence, match=r"it never said it was open"):
        resilience.assert_breaker_respected(payments)


def test_intents_reach_the_record(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    from pytest_resilience.report.record import record_of

    payments.fail(503, count=1)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Unavailable),
        wait=tenacity.wait_fixed(0.01),
        before_sleep=resilience.intent("payments").tenacity_before_sleep,
    )
    retrying(get, session, payments)

    [intent] = record_of(resilience.evidence(), None).intents
    assert (intent.service, intent.source, intent.kind, intent.value) == (
        "payments",
        "tenacity",
        "wait",
        0.01,
    )
