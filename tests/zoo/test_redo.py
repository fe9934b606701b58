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

import pytest
import redo
import requests
from real_clients import judged, released_together, settled, waits

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import HERD, get_or_raise

pytestmark = pytest.mark.usefixtures("seeded_jitter")
JITTER_SEED = 20261202
"""``redo/__init__.py:retrier`` draws its jitter from the global ``random``."""


def herd(service: HttpService, **policy: float) -> list[int]:
    """HERD clients, each GETting its own order through ``redo.retry(**policy)``, released
    together; their final statuses."""

    def client(n: int) -> int:
        with requests.Session() as session:
            url = f"{service.url}/orders/{n}"
            response = redo.retry(get_or_raise, args=(session, url), attempts=5, **policy)
            return int(response.status_code)

    return released_together(HERD, client)


def test_attempts_bound_an_outage_and_the_last_error_is_raised(orders: HttpService) -> None:
    """``redo/__init__.py:retry``: at most ``attempts`` calls; on the last, the caught exception is
    re-raised."""
    orders.fail(503)

    with requests.Session() as session, pytest.raises(requests.HTTPError, match="503"):
        redo.retry(
            get_or_raise,
            args=(session, f"{orders.url}/orders/1"),
            attempts=3,
            sleeptime=0.05,
            jitter=0,
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
            get_or_raise, args=(session, f"{orders.url}/orders/1"), sleeptime=0.2, jitter=0
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
    judged(resilience.assert_no_retry_storm, orders, claim="retry storm")
    judged(orders.assert_backoff, jitter=True, claim="retry waits carry no jitter")


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
    judged(resilience.assert_no_retry_storm, orders)
    # Growth is not judged: with jitter this wide possible, the herd's first waits may all
    # be low draws, so a client that never grows cannot be ruled out (timing.outgrown;
    # the sim in tests/test_timing_verdicts.py shows growth needing about 10 clients).
    judged(orders.assert_backoff, jitter=True, min_factor=1)
