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

import pytest
import requests
from opnieuw import retry
from real_clients import judged, released_together, settled

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import HERD, get_or_raise

pytestmark = pytest.mark.usefixtures("seeded_jitter")
JITTER_SEED = 20261202
"""``opnieuw/retries.py:BackoffCalculator.get_backoff`` draws from the global ``random``."""


def test_max_calls_total_bounds_an_outage(orders: HttpService) -> None:
    """``opnieuw/retries.py:retry``: ``max_calls_total=3`` calls, then ``get_backoff`` returns None
    and the last error is raised."""
    orders.fail(503)
    patient = retry(
        retry_on_exceptions=requests.HTTPError,
        max_calls_total=3,
        retry_window_after_first_call_in_seconds=1,
    )(get_or_raise)

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
    )(get_or_raise)

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
    window: U(0, 3/7), U(0, 6/7), U(0, 12/7) s.  Their ranges add up to the whole window, and
    each draw is checked against what is left of it (request time included), so a client
    drawing near the top every time would stop at 3 calls: about 1 in 100,000 per client,
    so every client here makes its 4 calls."""
    for n in range(HERD):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)

    @retry(
        retry_on_exceptions=requests.HTTPError,
        max_calls_total=4,
        retry_window_after_first_call_in_seconds=3,
    )
    def order(session: requests.Session, n: int) -> requests.Response:
        return get_or_raise(session, f"{orders.url}/orders/{n}")

    def client(n: int) -> int:
        with requests.Session() as session:
            return int(order(session, n).status_code)

    assert released_together(HERD, client) == [200] * HERD

    settled(orders, 4 * HERD)
    orders.assert_attempts(min=4, max=4)
    judged(resilience.assert_no_retry_storm, orders)
    # Growth is not judged: with jitter this wide possible, the herd's first waits may all
    # be low draws, so a client that never grows cannot be ruled out (timing.outgrown;
    # the sim in tests/test_timing_verdicts.py shows growth needing about 10 clients).
    judged(orders.assert_backoff, jitter=True, min_factor=1)
