"""urllib3's ``Retry`` (urllib3 2.7), alone and as requests' ``HTTPAdapter(max_retries=...)``.

What it does, from its source (``site-packages/urllib3/util/retry.py`` unless named):
- ``Retry.is_retry``: a method outside ``allowed_methods`` is never retried on a status
  (``DEFAULT_ALLOWED_METHODS`` = HEAD, GET, PUT, DELETE, OPTIONS, TRACE: no POST, no PATCH;
  ``allowed_methods=None`` retries every verb); a status in ``status_forcelist`` is retried;
  without it, only 413, 429 and 503 (``RETRY_AFTER_STATUS_CODES``), and only when they
  carry a ``Retry-After`` and ``respect_retry_after_header`` is on.
- ``Retry.increment``: a read error (``ReadTimeoutError``, ``ProtocolError``: the request
  may have been processed) is re-raised for a method ``_is_method_retryable`` refuses, and
  retried for one it allows.
- ``Retry.sleep``: with ``respect_retry_after_header`` (the default) and a response,
  ``sleep_for_retry`` sleeps what ``get_retry_after`` reads, else ``_sleep_backoff`` sleeps
  ``get_backoff_time()``.  ``get_retry_after`` reads ``Retry-After`` only (never
  ``retry-after-ms``); ``parse_retry_after`` takes delta-seconds or an HTTP-date (less
  ``time.time()``) and clamps it to ``retry_after_max``; ``sleep_for_retry`` takes a wait of
  0 as none (``if retry_after``), so ``sleep`` then sleeps the backoff.
- ``Retry.get_backoff_time``: 0 for the first retry (one consecutive error), then
  ``backoff_factor * 2 ** (n - 1)`` for n consecutive errors, plus
  ``random.random() * backoff_jitter`` (additive), and only then clamped to ``backoff_max``:
  a cap below the jittered value erases the jitter.
- ``urllib3/connectionpool.py`` ``HTTPConnectionPool.urlopen``: a retryable status is
  drained, ``retries.sleep(response)``, and sent again on the same pool; a read error
  goes through ``retries.increment(error=...)`` then ``retries.sleep()`` (no response, so
  backoff only).  ``requests/adapters.py`` ``HTTPAdapter.send`` passes ``max_retries``
  as ``retries=`` to ``urlopen``.

The clients sleep as their policies say (that is what is judged); the tests never sleep.
"""

from __future__ import annotations

import datetime as dt
import math
import time

import pytest
import requests
import urllib3
from real_clients import judged, released_together, settled, waits
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import pytest_resilience
from pytest_resilience import HttpService, Resilience, ResilienceAssertionError

from .shop import HERD

pytestmark = pytest.mark.usefixtures("seeded_jitter")
JITTER_SEED = 20261202
"""``urllib3/util/retry.py:Retry.get_backoff_time`` draws its jitter from the global ``random``."""


def insufficient_evidence() -> type[Exception]:
    """The verdicts' "cannot decide" outcome (a subclass of ResilienceAssertionError)."""
    return pytest_resilience.InsufficientEvidence


def session_with(retry: Retry) -> requests.Session:
    """A requests session whose adapter retries as ``retry`` says."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    return session


def herd(retry: Retry, service: HttpService, size: int = HERD) -> list[int]:
    """``size`` clients, each GETting its own order, released together; their final statuses."""

    def client(n: int) -> int:
        with session_with(retry) as session:
            return session.get(f"{service.url}/orders/{n}", timeout=5).status_code

    return released_together(size, client)


# -- Retry-After -------------------------------------------------------------------------


def test_a_429_with_retry_after_is_retried_after_the_wait_without_a_forcelist(
    orders: HttpService,
) -> None:
    """``urllib3/util/retry.py:Retry.is_retry``: 429 is in ``RETRY_AFTER_STATUS_CODES``, so with a
    Retry-After it is retried even with no ``status_forcelist``; ``Retry.sleep_for_retry`` sleeps
    the 1 s."""
    orders.rate_limit(burst=1, retry_after=1)
    http = urllib3.PoolManager(retries=Retry(total=3))

    response = http.request("GET", f"{orders.url}/orders/1")

    assert response.status == 200
    limited, ok = settled(orders, 2)
    assert (limited.status, ok.status) == (429, 200)
    assert waits([limited, ok])[0] >= 0.95
    orders.assert_retry_after_honoured()
    orders.assert_attempts(min=2, max=2)


def test_a_429_without_retry_after_and_without_a_forcelist_is_not_retried(
    orders: HttpService,
) -> None:
    """``urllib3/util/retry.py:Retry.is_retry``: with no ``status_forcelist`` a 429 needs a
    Retry-After to be retried."""
    orders.rate_limit(burst=1)
    http = urllib3.PoolManager(retries=Retry(total=3))

    assert http.request("GET", f"{orders.url}/orders/1").status == 429

    settled(orders, 1)
    orders.assert_attempts(max=1)


def test_an_http_date_retry_after_is_waited_until(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry.parse_retry_after``: an HTTP-date is waited until
    (``mktime_tz(date) - time.time()``)."""
    # An HTTP-date has whole seconds: the next one at least half a second away.
    until = dt.datetime.fromtimestamp(math.ceil(time.time() + 0.5), tz=dt.timezone.utc)
    orders.rate_limit(burst=1, retry_after=until)

    with session_with(Retry(total=2, status_forcelist={429})) as session:
        assert session.get(f"{orders.url}/orders/1", timeout=5).status_code == 200

    limited, ok = settled(orders, 2)
    assert limited.retry_after_delay is not None and limited.retry_after_delay > 0.3
    assert waits([limited, ok])[0] >= limited.retry_after_delay - 0.05
    orders.assert_retry_after_honoured()
    orders.assert_attempts(max=2)


def test_respect_retry_after_header_false_retries_a_429_at_once(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry.sleep``: with ``respect_retry_after_header=False`` only
    ``_sleep_backoff`` runs, and ``get_backoff_time`` is 0 for the first retry: the retry comes at
    once."""
    orders.rate_limit(burst=1, retry_after=1)
    retry = Retry(total=3, status_forcelist={429}, respect_retry_after_header=False)

    with session_with(retry) as session:
        assert session.get(f"{orders.url}/orders/1", timeout=5).status_code == 200

    limited, ok = settled(orders, 2)
    assert waits([limited, ok])[0] < 0.5
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation .+ retried \d+ ms after an answer whose Retry-After asked for 1 s "
        r"\(1 early attempts",
    ):
        orders.assert_retry_after_honoured()


def test_retry_after_max_cuts_the_wait_short(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry.parse_retry_after`` clamps the asked wait to
    ``retry_after_max``; with 0, ``Retry.sleep_for_retry`` finds no wait (``if retry_after``)
    and ``Retry.sleep`` falls back to ``get_backoff_time()``, 0 for the first retry: a 429
    asking for 1 s is retried at once."""
    orders.rate_limit(burst=1, retry_after=1)
    retry = Retry(total=3, status_forcelist={429}, retry_after_max=0)

    with session_with(retry) as session:
        assert session.get(f"{orders.url}/orders/1", timeout=5).status_code == 200

    limited, ok = settled(orders, 2)
    assert waits([limited, ok])[0] < 0.4
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation .+ retried \d+ ms after an answer whose Retry-After asked for 1 s",
    ):
        orders.assert_retry_after_honoured()


def test_retry_after_ms_is_not_read_so_a_forcelisted_429_is_retried_at_once(
    orders: HttpService,
) -> None:
    """``urllib3/util/retry.py:Retry.get_retry_after`` reads ``Retry-After`` only: a 429 asking for
    500 ms in ``retry-after-ms`` is retried after ``get_backoff_time()``, 0 for the first retry."""
    orders.rate_limit(burst=1, retry_after_ms=500)

    with session_with(Retry(total=3, status_forcelist={429})) as session:
        assert session.get(f"{orders.url}/orders/1", timeout=5).status_code == 200

    limited, ok = settled(orders, 2)
    assert limited.wait_header == "retry-after-ms"
    assert waits([limited, ok])[0] < 0.4
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation .+ retried \d+ ms after an answer whose retry-after-ms asked for "
        r"0\.5 s",
    ):
        orders.assert_retry_after_honoured()


# -- allowed_methods -------------------------------------------------------------------------


def test_post_is_not_retried_on_a_forcelisted_status_by_default(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry.is_retry`` asks ``_is_method_retryable`` first: POST is not in
    ``DEFAULT_ALLOWED_METHODS``, so its 503 is returned, not retried."""
    orders.fail(503, count=1)

    with session_with(Retry(total=3, status_forcelist={503})) as session:
        response = session.post(f"{orders.url}/orders", json={"sku": "a1"}, timeout=5)

    assert response.status_code == 503
    settled(orders, 1)
    orders.assert_attempts(max=1)


def test_allowed_methods_none_retries_a_post_on_a_forcelisted_status(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry._is_method_retryable``: ``allowed_methods=None`` allows every
    verb."""
    orders.fail(503, count=1)
    retry = Retry(total=3, status_forcelist={503}, allowed_methods=None)

    with session_with(retry) as session:
        response = session.post(f"{orders.url}/orders", json={"sku": "a1"}, timeout=5)

    assert response.status_code == 200
    settled(orders, 2)
    orders.assert_attempts(min=2, max=2)
    orders.assert_no_duplicate_side_effects()  # the 503 applied nothing


def test_a_post_whose_answer_is_lost_is_not_retried_by_default(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry.increment``: a ``ReadTimeoutError`` is a read error, re-raised
    for POST (not in ``DEFAULT_ALLOWED_METHODS``): the order placed once, the client told so."""
    orders.delay(0.4, count=1)

    with (
        session_with(Retry(total=3, status_forcelist={503})) as session,
        pytest.raises(requests.ReadTimeout),
    ):
        session.post(f"{orders.url}/orders", json={"sku": "a1"}, timeout=0.15)

    [lost] = settled(orders, 1)
    assert lost.delivered is False
    assert len(orders.effects) == 1
    orders.assert_attempts(max=1)
    orders.assert_no_duplicate_side_effects()


def test_allowed_methods_none_retries_a_lost_post_and_places_the_order_twice(
    orders: HttpService,
) -> None:
    """``urllib3/util/retry.py:Retry.increment``: with ``allowed_methods=None`` the read error of a
    POST is retried, and urllib3 sends no idempotency key: the service applies the order a second
    time."""
    orders.delay(0.4, count=1)
    retry = Retry(total=3, status_forcelist={503}, allowed_methods=None)

    with session_with(retry) as session:
        response = session.post(f"{orders.url}/orders", json={"sku": "a1"}, timeout=0.15)

    assert response.status_code == 200
    lost, retried = settled(orders, 2)
    assert (lost.delivered, retried.delivered) == (False, True)
    assert len(orders.effects) == 2
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^side effect applied 2 times: POST /orders with the same body",
    ):
        orders.assert_no_duplicate_side_effects()


# -- the backoff formula ---------------------------------------------------------------------


def test_backoff_is_zero_then_doubles_up_to_backoff_max(orders: HttpService) -> None:
    """``urllib3/util/retry.py:Retry.get_backoff_time`` with ``backoff_factor=0.1,
    backoff_max=0.3``: 0, 0.2, min(0.3, 0.4), min(0.3, 0.8).  One operation cannot show jitter
    either way."""
    orders.fail(503, count=4)
    retry = Retry(total=4, status_forcelist={503}, backoff_factor=0.1, backoff_max=0.3)

    with session_with(retry) as session:
        assert session.get(f"{orders.url}/orders/1", timeout=5).status_code == 200

    attempts = settled(orders, 5)
    slept = waits(attempts)
    assert slept[0] < 0.1
    assert [w >= x for w, x in zip(slept[1:], [0.2, 0.3, 0.3], strict=True)] == [True] * 3, slept
    assert max(slept[1:]) < 0.4, slept
    orders.assert_attempts(min=5, max=5)
    # At the cap: never failed for it; on a loaded machine, noise past it is insufficient.
    judged(orders.assert_backoff, jitter=False, max_delay=0.3, min_factor=1)
    # Growth (0.2 s, then the cap): one operation cannot show it, as its waits may be
    # draws of jitter the plugin cannot see the absence of.
    with pytest.raises(insufficient_evidence(), match=r"^insufficient evidence: .*below the cap"):
        orders.assert_backoff(jitter=False, max_delay=0.3)
    # 0.3 s waits against a 0.1 s cap: failed unless the noise measured could add 200 ms.
    judged(orders.assert_backoff, jitter=False, max_delay=0.1, claim="a retry waited")
    with pytest.raises(insufficient_evidence(), match=r"^insufficient evidence:"):
        orders.assert_backoff(jitter=True)


def test_a_herd_without_backoff_jitter_retries_in_lockstep(
    resilience: Resilience, orders: HttpService
) -> None:
    """``urllib3/util/retry.py:Retry.get_backoff_time`` with ``backoff_jitter=0`` (the default):
    every client waits 0, 0.3, 0.6 s after the same failures, so the herd's retries land together.

    Eight clients: the first retry is immediate, so clients count as failing together only
    when their first requests come closer than that; under a full suite with two CPU hogs,
    five clients started 19 ms apart split into herds of 3 and 2, and a herd of 3 left the
    storm undecided (p = 0.0025-0.0029, in 2 of 4 stress runs)."""
    size = 8
    for n in range(size):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)
    retry = Retry(total=3, status_forcelist={503}, backoff_factor=0.15)

    assert herd(retry, orders, size) == [200] * size

    settled(orders, 4 * size)
    orders.assert_attempts(min=4, max=4)
    judged(orders.assert_backoff, jitter=False)
    judged(resilience.assert_no_retry_storm, orders, claim="retry storm")
    judged(orders.assert_backoff, jitter=True, claim="retry waits carry no jitter")


def test_a_herd_with_backoff_jitter_spreads_out(
    resilience: Resilience, orders: HttpService
) -> None:
    """``urllib3/util/retry.py:Retry.get_backoff_time`` adds ``random.random() * backoff_jitter``:
    waits of 0, 0.3 + U(0, 0.6), 0.6 + U(0, 0.6) s.  The first retry stays immediate for every
    client (no jitter on a zero backoff); the later ones spread.  Eight clients: a
    five-client variant of its simulation in ``tests/test_zoo_herds.py`` was undecided in
    about 1 run in 40 on a busy machine."""
    size = 8
    for n in range(size):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)
    retry = Retry(total=3, status_forcelist={503}, backoff_factor=0.15, backoff_jitter=0.6)

    assert herd(retry, orders, size) == [200] * size

    settled(orders, 4 * size)
    orders.assert_attempts(min=4, max=4)
    judged(resilience.assert_no_retry_storm, orders)
    # Growth is not judged: with jitter this wide possible, the herd's first waits may all
    # be low draws, so a client that never grows cannot be ruled out (timing.outgrown;
    # the sim in tests/test_timing_verdicts.py shows growth needing about 10 clients).
    judged(orders.assert_backoff, jitter=True, min_factor=1)


def test_backoff_max_below_the_backoff_erases_the_jitter(
    resilience: Resilience, orders: HttpService
) -> None:
    """``urllib3/util/retry.py:Retry.get_backoff_time`` clamps after adding the jitter:
    ``min(backoff_max, factor * 2 ** (n - 1) + U(0, backoff_jitter))`` with factor 0.6,
    jitter 0.3 and ``backoff_max=0.6`` is 0.6 s for every client after its immediate first retry, so the herd is in lockstep
    although ``backoff_jitter`` is set.

    Eight clients, as in the lockstep herd above: five started 23 ms apart split into herds
    of 2 around the immediate first retry (storm undecided, 1 of 8 stress runs)."""
    size = 8
    for n in range(size):
        orders.route("GET", f"/orders/{n}").fail(503, count=3)
    retry = Retry(
        total=3, status_forcelist={503}, backoff_factor=0.6, backoff_jitter=0.3, backoff_max=0.6
    )

    assert herd(retry, orders, size) == [200] * size

    settled(orders, 4 * size)
    judged(resilience.assert_no_retry_storm, orders, claim="retry storm")
    judged(orders.assert_backoff, jitter=True, claim="retry waits carry no jitter")
