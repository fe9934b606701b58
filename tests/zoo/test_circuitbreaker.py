"""The ``circuitbreaker`` library (2.1), its ``@circuit`` decorator and ``CircuitBreaker``.

What it does, from its source (``site-packages/circuitbreaker.py``):
- ``CircuitBreaker.__init__``: ``failure_threshold`` (default 5), ``recovery_timeout``
  (default 30 s; ``or``-ed, so 0 means 30), ``expected_exception`` (default ``Exception``;
  a type, types, or a predicate: ``build_failure_predicate``), ``fallback_function``.
- ``CircuitBreaker.__exit__``: an exception ``is_failure`` accepts counts
  (``__call_failed``); any other outcome, success *or an exception it does not count*,
  calls ``reset()``: the count is of consecutive failures, and an uncounted exception
  zeroes it.
- ``CircuitBreaker.__call_failed``: at ``failure_count >= failure_threshold`` the state is
  ``open`` and ``_opened`` is now (each later failure moves ``_opened`` on).
- ``CircuitBreaker.state`` / ``open_remaining``: ``open`` reads as ``half_open`` once
  ``_opened + recovery_timeout`` has passed (``ceil`` of what remains while it is positive,
  so a fractional timeout holds to the end).
- ``CircuitBreaker._decorate_sync``: ``if self.opened`` it calls ``fallback_function`` or
  raises ``CircuitBreakerError``; otherwise it calls through.  ``opened`` is false in
  ``half_open``, and nothing marks a probe as taken: every caller that arrives while the
  circuit is half-open goes through, not one probe at a time.  A success ``reset()``s the
  circuit to closed; a failure opens it again.

The tests call through ``resilience.load`` and never sleep.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import requests
from circuitbreaker import STATE_CLOSED, CircuitBreaker, circuit

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import FALLBACK, OUTAGE_CALLS, OUTAGE_COUNT, RATE, STOCK, get_stock

COOLDOWN = 0.5
"""The breakers' recovery_timeout, in seconds."""
NAMES = itertools.count()


def name() -> str:
    """A breaker name of its own: ``CircuitBreakerMonitor`` keeps every breaker by name."""
    return f"zoo-inventory-{next(NAMES)}"


def test_circuit_opens_after_three_failures_waits_and_recovers_on_one_probe(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``__call_failed`` opens after the third failure; ``_decorate_sync`` answers the
    fallback for ``recovery_timeout``; the first call after it goes through, succeeds,
    and ``reset()`` closes the circuit."""
    inventory.fail(503, count=3)

    @circuit(  # type: ignore[untyped-decorator]
        failure_threshold=3,
        recovery_timeout=COOLDOWN,
        expected_exception=requests.RequestException,
        fallback_function=lambda: FALLBACK,
        name=name(),
    )
    def stock() -> dict[str, Any]:
        return get_stock(inventory.url)

    run = resilience.load(stock, duration=1.2, rate=20)

    resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)
    assert max(c.latency for c in run.calls if c.value is FALLBACK) < 0.1  # no I/O
    statuses = [e.status for e in inventory.settled()]
    assert statuses[:3] == [503, 503, 503]
    assert set(statuses[3:]) == {200}
    assert run.values.count(FALLBACK) >= 6  # 0.5 s of calls at 20/s, none sent
    assert run.values[-1] == STOCK


def test_a_breaker_counting_only_connection_errors_never_opens_on_503s(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``expected_exception=requests.ConnectionError``: the 503s raise ``HTTPError``, which
    ``is_failure`` rejects, so ``__exit__`` calls ``reset()`` on each and the circuit stays
    closed while the service keeps failing.  ``CircuitBreaker.call`` is ``with self:`` and
    never checks ``opened`` (only ``_decorate_sync``'s wrapper does), so the verdict's
    failure alone does not show the 503s uncounted: the state and count asserted do."""
    inventory.fail(503)
    breaker = CircuitBreaker(
        failure_threshold=3,
        recovery_timeout=COOLDOWN,
        expected_exception=requests.ConnectionError,
        name=name(),
    )

    run = resilience.load(
        lambda: breaker.call(get_stock, inventory.url), duration=OUTAGE_CALLS, rate=RATE
    )

    assert breaker.state == STATE_CLOSED and breaker.failure_count == 0
    assert all(isinstance(e, requests.HTTPError) for e in run.errors)
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker did not open: after 3 consecutive failures the service still got \d+ "
        r"calls? within the 0\.5 s cooldown",
    ):
        resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)


def test_a_threshold_above_the_outage_never_opens(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``failure_threshold=100``: 30 consecutive failures are under it, so
    ``__call_failed`` never opens the circuit."""
    inventory.fail(503)

    @circuit(failure_threshold=100, recovery_timeout=COOLDOWN, name=name())  # type: ignore[untyped-decorator]
    def stock() -> dict[str, Any]:
        return get_stock(inventory.url)

    run = resilience.load(stock, duration=OUTAGE_CALLS, rate=RATE)

    assert len(inventory.settled()) == OUTAGE_COUNT
    with pytest.raises(ResilienceAssertionError, match=r"^breaker did not open: after 3 "):
        resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)


def test_half_open_lets_every_concurrent_caller_through(
    resilience: Resilience, inventory: HttpService
) -> None:
    """Three quick 503s, one call after another, open the circuit; then four threads share
    it while every answer is a slow 503.  After the cooldown ``state`` reads ``half_open``
    and ``opened`` is false for each caller until the first probe fails, so the probes
    overlap; a half-open breaker should send one.  (Opening it from one thread first keeps
    the threads from racing the third failure to the breaker.)"""
    inventory.fail(503, count=3)
    inventory.delay(0.15, status=503)
    breaker = CircuitBreaker(
        failure_threshold=3,
        recovery_timeout=COOLDOWN,
        fallback_function=lambda: FALLBACK,
        name=name(),
    )
    stock = breaker(lambda: get_stock(inventory.url))

    opening = resilience.drive(stock, calls=3)
    run = resilience.load(stock, duration=1.0, rate=40, concurrency=4)

    assert len(opening.errors) == 3
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker let [2-9] calls through at once after the cooldown; a half-open breaker "
        r"sends one probe",
    ):
        resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)
