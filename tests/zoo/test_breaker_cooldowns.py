"""Breakers with production's 30 s cooldown on virtual time, and the same schedule scaled
down to 0.5 s on real time: the same verdicts both ways.

Each library reads its own clock (sources under ``site-packages``):
- circuitbreaker 2.1 (``circuitbreaker.py``): ``from time import monotonic``, bound at
  import; ``CircuitBreaker.__call_failed`` stamps ``_opened = monotonic()`` and
  ``open_remaining`` subtracts ``monotonic()`` from ``_opened + _recovery_timeout``.
  Virtual time reaches it by swapping the module's global.
- pybreaker 1.4 (``pybreaker/__init__.py``): ``CircuitBreaker.open`` stamps
  ``opened_at = datetime.now(UTC)`` and ``CircuitOpenState.before_call`` compares ``datetime.now(UTC)``
  with ``opened_at + timedelta(seconds=reset_timeout)``.  Reached through time-machine,
  which moves ``datetime.now`` in C.
- purgatory 3.0 (``purgatory/domain/model.py``): ``OpenedState.__init__`` stamps
  ``opened_at = time.time()`` and ``handle_new_request`` compares ``time.time()`` with
  ``opened_at + context.ttl``.

The scenario is the zoo's own (``test_circuitbreaker.py``, ``test_purgatory.py``): three
failures open the circuit, calls get the fallback for the cooldown, the first call after
it probes, succeeds and closes, with 40 calls per cooldown: every 0.75 s of the 30 s on
virtual time, every 12.5 ms of the 0.5 s on real time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pybreaker
import pytest
import requests
from circuitbreaker import circuit
from purgatory import SyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from pytest_resilience import HttpService, Resilience

from .shop import FALLBACK, STOCK, get_stock

NAMES = itertools.count()

CLOCKS = [
    pytest.param(0.5, id="real-0.5s"),
    pytest.param(30.0, id="virtual-30s", marks=pytest.mark.virtual_time),
]
"""The cooldown; the calls come at 40 per cooldown, 2.4 cooldowns long."""


def circuitbreaker_call(url: str, cooldown: float) -> Callable[[], Any]:
    @circuit(  # type: ignore[untyped-decorator]
        failure_threshold=3,
        recovery_timeout=cooldown,
        expected_exception=requests.RequestException,
        fallback_function=lambda: FALLBACK,
        name=f"zoo-cooldown-{next(NAMES)}",
    )
    def stock() -> dict[str, Any]:
        return get_stock(url)

    return stock


def pybreaker_call(url: str, cooldown: float) -> Callable[[], Any]:
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=cooldown)

    def call() -> Any:
        try:
            return breaker.call(get_stock, url)
        except (pybreaker.CircuitBreakerError, requests.RequestException):
            return FALLBACK

    return call


def purgatory_call(url: str, cooldown: float) -> Callable[[], Any]:
    factory = SyncCircuitBreakerFactory(default_threshold=3, default_ttl=cooldown)

    @factory("inventory")  # type: ignore[untyped-decorator]
    def stock() -> dict[str, Any]:
        return get_stock(url)

    def call() -> Any:
        try:
            return stock()
        except (OpenedState, requests.RequestException):
            return FALLBACK

    return call


@pytest.mark.parametrize("cooldown", CLOCKS)
@pytest.mark.parametrize("make", [circuitbreaker_call, pybreaker_call, purgatory_call])
def test_the_circuit_opens_waits_its_cooldown_and_closes_on_a_good_probe(
    resilience: Resilience,
    inventory: HttpService,
    cooldown: float,
    make: Callable[[str, float], Callable[[], Any]],
) -> None:
    """Opens at the third failure, refuses for the cooldown, closes on a good probe:
    circuitbreaker 2.1.3 ``circuitbreaker.py``: ``CircuitBreaker.__call_failed`` (``failure_count
    >= failure_threshold``), ``_decorate_sync`` (fallback while ``opened``), ``state`` (half-open
    once ``open_remaining <= 0``), ``__exit__`` then ``reset()``; pybreaker 1.4.1
    ``pybreaker/__init__.py``: ``CircuitClosedState.on_failure`` (``counter >= fail_max``),
    ``CircuitOpenState.before_call``, ``CircuitHalfOpenState.on_success`` (``success_threshold``
    1); purgatory 3.0.1 ``domain/model.py``: ``ClosedState.handle_exception``,
    ``OpenedState.handle_new_request``, ``HalfOpenedState.handle_end_request``."""
    inventory.fail(503, count=3)

    run = resilience.load(
        make(inventory.url, cooldown), duration=cooldown * 2.4, rate=40 / cooldown
    )

    resilience.assert_breaker_opened(inventory, run, after_failures=3, cooldown=cooldown)
    statuses = [e.status for e in inventory.settled()]
    assert statuses[:3] == [503, 503, 503]
    assert set(statuses[3:]) == {200}
    assert run.values.count(FALLBACK) >= 36  # the 3 failures, then a cooldown of fallbacks
    assert run.values[-1] == STOCK
    if cooldown > 1:
        (clock,) = resilience.clocks
        assert clock.skipped > cooldown  # jumped over, not waited out
