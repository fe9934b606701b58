"""The ``purgatory`` library (3.0), its synchronous breaker factory, around requests.

What it does, from its source (paths under ``site-packages/purgatory/``):
- ``service/_sync/circuitbreaker.py`` ``SyncCircuitBreakerFactory``: ``default_threshold``
  5, ``default_ttl`` 30 s, ``exclude``; ``get_breaker`` / the ``factory(name, threshold=,
  ttl=, exclude=)`` decorator take a circuit by name (``threshold or default``: the first
  ``get_breaker`` of a name fixes its threshold and TTL).
- ``domain/model.py`` ``Context.handle_exception``: an exception of an ``exclude``d type
  (for an ``(type, predicate)`` pair, one the predicate accepts) ends the request as a
  success (``handle_end_request``); any other is a failure.
- ``domain/model.py`` ``ClosedState.handle_exception``: counts failures and opens at
  ``failure_count >= threshold``; ``ClosedState.handle_end_request`` resets the count
  (consecutive failures).
- ``domain/model.py`` ``OpenedState.handle_new_request``: until ``opened_at + ttl``
  (``time.time()``) it raises itself, an ``OpenedState`` exception, without running the
  call; after it, ``HalfOpenedState``.  ``HalfOpenedState.handle_exception`` opens again,
  ``handle_end_request`` closes.  ``HalfOpenedState.handle_new_request`` does nothing: it
  does not hold later callers while a probe is in flight.

The tests call through ``resilience.load`` and never sleep.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from purgatory import SyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import FALLBACK, OUTAGE_CALLS, OUTAGE_COUNT, RATE, STOCK, get_stock

COOLDOWN = 0.5
"""The breakers' ttl, in seconds."""


def client(factory: SyncCircuitBreakerFactory, url: str) -> Any:
    """The client's call through the ``inventory`` circuit, the fallback while it is open."""

    @factory("inventory")  # type: ignore[untyped-decorator]
    def stock() -> dict[str, Any]:
        return get_stock(url)

    def call() -> dict[str, Any]:
        try:
            return stock()  # type: ignore[no-any-return]
        except OpenedState:
            return FALLBACK

    return call


def test_circuit_opens_at_the_threshold_waits_its_ttl_and_closes_on_a_good_probe(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``ClosedState.handle_exception`` opens at the third failure; ``OpenedState.
    handle_new_request`` refuses calls for the TTL; the next call runs half-open, succeeds,
    and ``HalfOpenedState.handle_end_request`` closes the circuit."""
    inventory.fail(503, count=3)
    factory = SyncCircuitBreakerFactory(default_threshold=3, default_ttl=COOLDOWN)

    run = resilience.load(client(factory, inventory.url), duration=1.2, rate=20)

    resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)
    assert max(c.latency for c in run.calls if c.value is FALLBACK) < 0.1  # no I/O
    assert factory.get_breaker("inventory").context.state == "closed"
    statuses = [e.status for e in inventory.settled()]
    assert statuses[:3] == [503, 503, 503]
    assert set(statuses[3:]) == {200}
    assert run.values.count(FALLBACK) >= 6
    assert run.values[-1] == STOCK


def test_excluding_http_errors_keeps_the_circuit_closed_through_an_outage(
    resilience: Resilience, inventory: HttpService
) -> None:
    """``exclude=[requests.HTTPError]`` (meant for 4xx answers) turns every 503 into a
    success for ``Context.handle_exception``: ``ClosedState.handle_end_request`` resets the
    count and the circuit never opens."""
    inventory.fail(503)
    factory = SyncCircuitBreakerFactory(
        default_threshold=3, default_ttl=COOLDOWN, exclude=[requests.HTTPError]
    )

    run = resilience.load(client(factory, inventory.url), duration=OUTAGE_CALLS, rate=RATE)

    assert factory.get_breaker("inventory").context.state == "closed"
    assert len(run.errors) == OUTAGE_COUNT
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker did not open: after 3 consecutive failures the service still got \d+ "
        r"calls? within the 0\.5 s cooldown",
    ):
        resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)


def test_an_exclusion_predicate_for_client_errors_only_still_opens_on_503s(
    resilience: Resilience, inventory: HttpService
) -> None:
    """The same exclusion written right: an ``(HTTPError, predicate)`` pair that accepts only
    4xx answers leaves the 503s counted, so the circuit opens and recovers.
    ``Context.handle_exception`` sets ``failed = not func(exc)`` for the pair (False for a 503:
    counted); ``ClosedState.handle_exception`` opens at the third; ``HalfOpenedState.
    handle_end_request`` closes on the good probe (purgatory 3.0.1, ``domain/model.py``)."""
    inventory.fail(503, count=3)
    factory = SyncCircuitBreakerFactory(
        default_threshold=3,
        default_ttl=COOLDOWN,
        exclude=[(requests.HTTPError, lambda exc: exc.response.status_code < 500)],
    )

    run = resilience.load(client(factory, inventory.url), duration=1.2, rate=20)

    resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)


def test_half_open_lets_every_concurrent_caller_through(
    resilience: Resilience, inventory: HttpService
) -> None:
    """Three quick 503s, one call after another, open the circuit; then four threads share
    it while every answer is a slow 503.  Once the TTL has passed,
    ``HalfOpenedState.handle_new_request`` lets each caller through until the first probe
    fails, so the probes overlap; a half-open breaker should send one.  (Opening it from one
    thread first keeps the threads from racing the third failure to the breaker.)"""
    inventory.fail(503, count=3)
    inventory.delay(0.15, status=503)
    factory = SyncCircuitBreakerFactory(default_threshold=3, default_ttl=COOLDOWN)
    call = client(factory, inventory.url)

    opening = resilience.drive(call, calls=3)
    run = resilience.load(call, duration=1.0, rate=40, concurrency=4)

    assert len(opening.errors) == 3
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker let [2-9] calls through at once after the cooldown; a half-open breaker "
        r"sends one probe",
    ):
        resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=COOLDOWN)
