"""``opnieuw`` (4.0.0), Channable's full-jitter retry decorator, around requests calls.

What it does, from its source (``site-packages/opnieuw/retries.py``):
- ``retry``: ``max_calls_total`` (default 3) counts every call; only exceptions in
  ``retry_on_exceptions`` are retried; the sleep is ``BackoffCalculator.get_backoff(e)``,
  which uses the exception for logging only: an answer's ``Retry-After`` is never read.
- ``calculate_exponential_multiplier``: base = window / (2 ** (max_calls_total - 1) - 1),
  so that the un-jittered series fills ``retry_window_after_first_call_in_seconds``.
- ``BackoffCalculator.get_backoff``: ``random.uniform(0, base * 2 ** k)`` for the k-th
  backoff (from 0): full jitter, always; ``None`` (give up, re-raise) once
  ``max_calls_total`` calls were made, or when the drawn wait ends past the window.

The clients sleep as their policies say (that is what is judged); the tests never sleep.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from opnieuw import retry

from pytest_resilience import Exchange, HttpService, Resilience, ResilienceAssertionError

HERD = 5
"""Clients that an outage fails together."""


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)  # poll interval
    return value


def settled(service: HttpService, count: int) -> list[Exchange]:
    """The exchanges once ``count`` arrived and each knows whether its answer arrived."""

    def ready() -> list[Exchange] | None:
        exchanges = service.exchanges
        if len(exchanges) >= count and all(e.delivered is not None for e in exchanges):
            return list(exchanges)
        return None

    return wait_for(ready, what=f"{count} exchanges with a known delivery")  # type: ignore[no-any-return]


def fetch(session: requests.Session, url: str) -> requests.Response:
    """One attempt: the answer, or ``requests.HTTPError`` for a 4xx/5xx."""
    response = session.get(url, timeout=5)
    response.raise_for_status()
    return response


@pytest.fixture(autouse=True)
def seeded_jitter() -> Iterator[None]:
    """``opnieuw/retries.py:BackoffCalculator.get_backoff`` draws from the global ``random``."""
    state = random.getstate()
    random.seed(20261202)
    yield
    random.setstate(state)


@pytest.fixture
def orders(resilience: Resilience) -> HttpService:
    service = resilience.http_service("orders")
    service.respond(200, json={"id": "o_1", "status": "paid"})
    return service


def test_max_calls_total_bounds_an_outage(orders: HttpService) -> None:
    """``opnieuw/retries.py:retry``: ``max_calls_total=3`` calls, then ``get_backoff`` returns None
    and the last error is raised."""
    orders.fail(503)
    patient = retry(
        retry_on_exceptions=requests.HTTPError,
        max_calls_total=3,
        retry_window_after_first_call_in_seconds=1,
    )(fetch)

    with requests.Session() as session, pytest.raises(requests.HTTPError, match="503"):
        patient(session, f"{orders.url}/orders/1")

    settled(orders, 3)
    orders.assert_attempts(min=3, max=3)


def test_the_retry_after_of_a_429_is_not_waited(orders: HttpService) -> None:
    """``opnieuw/retries.py:BackoffCalculator.get_backoff``: U(0, 3 / 7) s after a 429 that asked
    for 1 s (``max_calls_total=4`` in a 3 s window)."""
    orders.rate_limit(burst=1, retry_after=1)
    patient = retry(
        retry_on_exceptions=requests.HTTPError,
        max_calls_total=4,
        retry_window_after_first_call_in_seconds=3,
    )(fetch)

    with requests.Session() as session:
        assert patient(session, f"{orders.url}/orders/1").status_code == 200

    settled(orders, 2)
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation .+ retried \d+ ms after an answer whose Retry-After asked for 1 s",
    ):
        orders.assert_retry_after_honoured()


def test_a_herd_with_full_jitter_spreads_out(resilience: Resilience, orders: HttpService) -> None:
    """``opnieuw/retries.py:BackoffCalculator.get_backoff`` with ``max_calls_total=4`` in a 3 s
    window: U(0, 3/7), U(0, 6/7), U(0, 12/7) s (their sum stays inside the window, so every client
    makes its 4 calls)."""
    for n in range(HERD):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)
    start = threading.Barrier(HERD)

    @retry(
        retry_on_exceptions=requests.HTTPError,
        max_calls_total=4,
        retry_window_after_first_call_in_seconds=3,
    )
    def order(session: requests.Session, n: int) -> requests.Response:
        return fetch(session, f"{orders.url}/orders/{n}")

    def client(n: int) -> int:
        with requests.Session() as session:
            start.wait(timeout=5)
            return int(order(session, n).status_code)

    with ThreadPoolExecutor(HERD) as pool:  # the with block joins every thread
        assert list(pool.map(client, range(HERD))) == [200] * HERD

    settled(orders, 4 * HERD)
    orders.assert_attempts(min=4, max=4)
    resilience.assert_no_retry_storm(orders)
    orders.assert_backoff(jitter=True)
