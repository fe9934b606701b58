"""``redo`` (3.0.1), Mozilla's retry helpers: ``redo.retry`` around requests calls.

What it does, from its source (``site-packages/redo/__init__.py``):
- ``retry``: calls ``action`` once per value ``retrier`` yields (``attempts=5`` by
  default), catching ``retry_exceptions`` (default ``(Exception,)``: everything) and
  re-raising on the last attempt.  The wait never sees the failure: no ``Retry-After``.
- ``retrier``: refuses ``jitter > sleeptime``; after attempt k it sleeps
  ``sleeptime * sleepscale ** (k - 1) + random.uniform(-jitter, jitter)``, the ``jitter``
  scaled by ``sleepscale`` too (so the jitter is +-``jitter / sleeptime`` of every wait),
  then clamped to ``max_sleeptime``; ``jitter=0`` sleeps the bare series.  Defaults
  (``retry``): ``sleeptime=60``, ``jitter=1``, ``sleepscale=1.5``: +-1/60 of the wait.

The clients sleep as their policies say (that is what is judged); the tests never sleep.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redo
import requests

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


def waits(attempts: list[Exchange]) -> list[float]:
    """Seconds from each answer's last byte to the next attempt: the client's sleep."""
    return [b.started_at - a.ended_at for a, b in itertools.pairwise(attempts)]  # type: ignore[operator]


def fetch(session: requests.Session, url: str) -> requests.Response:
    """One attempt: the answer, or ``requests.HTTPError`` for a 4xx/5xx."""
    response = session.get(url, timeout=5)
    response.raise_for_status()
    return response


def herd(service: HttpService, **policy: float) -> list[int]:
    """HERD clients, each GETting its own order through ``redo.retry(**policy)``, released
    together; their final statuses."""
    start = threading.Barrier(HERD)

    def client(n: int) -> int:
        with requests.Session() as session:
            start.wait(timeout=5)
            url = f"{service.url}/orders/{n}"
            response = redo.retry(fetch, args=(session, url), attempts=5, **policy)
            return int(response.status_code)

    with ThreadPoolExecutor(HERD) as pool:  # the with block joins every thread
        return list(pool.map(client, range(HERD)))


@pytest.fixture(autouse=True)
def seeded_jitter() -> Iterator[None]:
    """``redo/__init__.py:retrier`` draws its jitter from the global ``random``."""
    state = random.getstate()
    random.seed(20261202)
    yield
    random.setstate(state)


@pytest.fixture
def orders(resilience: Resilience) -> HttpService:
    service = resilience.http_service("orders")
    service.respond(200, json={"id": "o_1", "status": "paid"})
    return service


def test_attempts_bound_an_outage_and_the_last_error_is_raised(orders: HttpService) -> None:
    """``redo/__init__.py:retry``: at most ``attempts`` calls; on the last, the caught exception is
    re-raised."""
    orders.fail(503)

    with requests.Session() as session, pytest.raises(requests.HTTPError, match="503"):
        redo.retry(
            fetch, args=(session, f"{orders.url}/orders/1"), attempts=3, sleeptime=0.05, jitter=0
        )

    settled(orders, 3)
    orders.assert_attempts(min=3, max=3)
    with pytest.raises(ResilienceAssertionError, match=r"^operation .+ made 3 attempts"):
        orders.assert_attempts(max=2)


def test_the_retry_after_of_a_429_is_not_waited(orders: HttpService) -> None:
    """``redo/__init__.py:retrier`` sleeps its own series (0.2 s first, no jitter here), blind to
    the 429's Retry-After of 1 s."""
    orders.rate_limit(burst=1, retry_after=1)

    with requests.Session() as session:
        response = redo.retry(
            fetch, args=(session, f"{orders.url}/orders/1"), sleeptime=0.2, jitter=0
        )

    assert response.status_code == 200
    limited, ok = settled(orders, 2)
    assert 0.19 <= waits([limited, ok])[0] < 0.6
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation .+ retried \d+ ms after an answer whose Retry-After asked for 1 s",
    ):
        orders.assert_retry_after_honoured()


def test_a_herd_with_the_default_jitter_proportion_retries_in_lockstep(
    resilience: Resilience, orders: HttpService
) -> None:
    """``redo/__init__.py:retrier`` with redo's default proportion (``jitter=1`` on
    ``sleeptime=60``) scaled to 0.3 s: waits of 0.3, 0.45, 0.675 s, each +-1/60 (5 to 11 ms): the
    herd stays together."""
    for n in range(HERD):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)

    assert herd(orders, sleeptime=0.3, jitter=0.005) == [200] * HERD

    settled(orders, 4 * HERD)
    orders.assert_attempts(min=4, max=4)
    with pytest.raises(ResilienceAssertionError, match=r"^retry storm"):
        resilience.assert_no_retry_storm(orders)
    with pytest.raises(ResilienceAssertionError, match=r"^retry waits carry no jitter"):
        orders.assert_backoff(jitter=True)


def test_a_herd_with_jitter_of_half_the_wait_spreads_out(
    resilience: Resilience, orders: HttpService
) -> None:
    """``redo/__init__.py:retrier`` with ``sleeptime=0.2, sleepscale=2, jitter=0.1``: 0.2, 0.4, 0.8
    s, each +-50%: growing, jittered waits."""
    for n in range(HERD):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)

    assert herd(orders, sleeptime=0.2, sleepscale=2, jitter=0.1) == [200] * HERD

    settled(orders, 4 * HERD)
    orders.assert_attempts(min=4, max=4)
    resilience.assert_no_retry_storm(orders)
    orders.assert_backoff(jitter=True)
