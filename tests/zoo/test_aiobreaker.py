"""The ``aiobreaker`` library (1.2), pybreaker's asyncio port, around an httpx.AsyncClient.

What it does, from its source (paths under ``site-packages/aiobreaker/``):
- ``circuitbreaker.py`` ``CircuitBreaker.__init__``: ``fail_max`` (default 5),
  ``timeout_duration`` (a ``timedelta``; default 60 s), ``exclude`` (exception types or
  predicates that are *not* failures).
- ``circuitbreaker.py`` ``CircuitBreaker.is_system_error``: an exception that is an
  instance of an ``exclude``d type (or that an ``exclude`` predicate accepts) is a
  business error, not a failure.
- ``state.py`` ``CircuitBreakerBaseState._handle_error``: a system error increments the
  counter and calls ``on_failure``; an excluded one goes to ``_handle_success``, which
  resets the counter: the count is of consecutive failures.
- ``state.py`` ``CircuitClosedState.on_failure``: at ``counter >= fail_max`` the breaker
  ``open()``s (``opened_at`` = now) and raises ``CircuitBreakerError`` from the failure.
- ``state.py`` ``CircuitOpenState.before_call``: until ``opened_at + timeout_duration``
  every call raises ``CircuitBreakerError`` without running; after it, ``call_async``
  half-opens the breaker and runs the call: ``CircuitHalfOpenState.on_success`` closes it,
  ``on_failure`` opens it again.

The tests call through ``resilience.load`` and never sleep.
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from typing import Any

import aiobreaker
import httpx
import pytest

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import FALLBACK, OUTAGE_CALLS, OUTAGE_COUNT, RATE, STOCK

# aiobreaker stamps opened_at with datetime.utcnow(), deprecated from Python 3.12 on.
pytestmark = pytest.mark.filterwarnings(
    "ignore:datetime.datetime.utcnow\\(\\) is deprecated:DeprecationWarning"
)

COOLDOWN = 0.5
"""The breakers' timeout_duration, in seconds."""
TLS = ssl.create_default_context()
"""Made once: each AsyncClient would otherwise build its own (some 30 ms of CPU a call)."""


async def fetch(url: str) -> dict[str, Any]:
    """One GET; the client lives for the call (``resilience.load`` runs coroutines on a loop
    of its worker thread)."""
    async with httpx.AsyncClient(timeout=2, verify=TLS) as client:
        reply = await client.get(f"{url}/stock/A1")
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data


def guarded(breaker: aiobreaker.CircuitBreaker, url: str) -> Any:
    """The client's call: through the breaker, the fallback while it is open."""

    async def call() -> dict[str, Any]:
        try:
            stock: dict[str, Any] = await breaker.call_async(fetch, url)
        except aiobreaker.CircuitBreakerError:
            return FALLBACK
        return stock

    return call


def test_breaker_opens_after_fail_max_waits_and_closes_on_a_good_probe(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``CircuitClosedState.on_failure`` opens at the third failure; ``CircuitOpenState.
    before_call`` refuses calls for ``timeout_duration``; the next call half-opens the
    breaker, succeeds, and ``CircuitHalfOpenState.on_success`` closes it."""
    inventory.fail(503, count=3)
    breaker = aiobreaker.CircuitBreaker(fail_max=3, timeout_duration=timedelta(seconds=COOLDOWN))

    run = resilience.load(guarded(breaker, inventory.url), duration=1.2, rate=20)

    resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)
    assert max(c.latency for c in run.calls if c.value is FALLBACK) < 0.1  # no I/O
    assert breaker.current_state == aiobreaker.CircuitBreakerState.CLOSED
    statuses = [e.status for e in inventory.settled()]
    assert statuses[:3] == [503, 503, 503]
    assert set(statuses[3:]) == {200}
    assert run.values.count(FALLBACK) >= 7  # the third failure, then 0.5 s of calls at 20/s
    assert run.values[-1] == STOCK


def test_excluding_http_status_errors_keeps_the_breaker_closed_through_an_outage(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``exclude=[httpx.HTTPStatusError]`` (meant for 404s) makes every 503 a business
    error: ``is_system_error`` is false, ``_handle_error`` resets the counter, and the
    breaker never opens while the service fails."""
    inventory.fail(503)
    breaker = aiobreaker.CircuitBreaker(
        fail_max=3, timeout_duration=timedelta(seconds=COOLDOWN), exclude=[httpx.HTTPStatusError]
    )

    run = resilience.load(guarded(breaker, inventory.url), duration=OUTAGE_CALLS, rate=RATE)

    assert breaker.current_state == aiobreaker.CircuitBreakerState.CLOSED
    assert breaker.fail_counter == 0
    assert len(run.errors) == OUTAGE_COUNT
    assert all(isinstance(e, httpx.HTTPStatusError) for e in run.errors)
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker did not open: after 3 consecutive failures the service still got \d+ "
        r"calls? within the 0\.5 s cooldown",
    ):
        resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)


def test_a_failed_probe_opens_the_breaker_for_another_timeout(
    resilience: Resilience, inventory: HttpService
) -> None:
    """The outage outlasts the first timeout: ``CircuitHalfOpenState.on_failure`` opens the
    breaker again, and the service hears nothing for another ``timeout_duration``."""
    inventory.fail(503)
    breaker = aiobreaker.CircuitBreaker(fail_max=3, timeout_duration=timedelta(seconds=COOLDOWN))

    run = resilience.load(guarded(breaker, inventory.url), duration=1.5, rate=20)

    resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)
    assert len(inventory.settled()) in (4, 5)  # three failures, then one probe per timeout
    assert breaker.current_state == aiobreaker.CircuitBreakerState.OPEN
