"""The shipping client with its production policy, on virtual time, on httpx and aiohttp.

``test_async_client.py`` judges the client with its policy scaled down to test time
(``FAST``: caps of 0.5 s, a Retry-After of at most 5 s).  Here the client runs the
policy it ships with (``RetryPolicy()``: backoff capped at 5 s, Retry-After honoured up
to 30 s, 2 s per attempt) against the schedules production sends.  Under
``@pytest.mark.virtual_time`` the client's ``asyncio.sleep`` ends at once and moves the
one clock forward, while its requests keep their real time: each test takes well under
a second of real time for half a minute or more of virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pytest_resilience import HttpService, Resilience

from .client import Parcel, Quote, RetryPolicy, ShippingClient, ShippingError
from .conftest import client_on

pytestmark = [pytest.mark.anyio, pytest.mark.virtual_time]

PRODUCTION = RetryPolicy()


@pytest.fixture(params=["httpx", "aiohttp"])
async def production_client(
    request: pytest.FixtureRequest, shipping: HttpService, resilience: Resilience
) -> AsyncIterator[ShippingClient]:
    """The client as it ships, on each HTTP stack."""
    async with client_on(request, shipping, resilience, PRODUCTION) as client:
        yield client


def skipped(resilience: Resilience) -> float:
    """Virtual seconds the test's clock jumped over (real time did not pass)."""
    (clock,) = resilience.clocks
    return clock.skipped


async def test_a_retry_after_of_30_s_is_waited_out(
    resilience: Resilience,
    shipping: HttpService,
    production_client: ShippingClient,
    quote: Quote,
    parcel: Parcel,
) -> None:
    shipping.route("POST", "/shipments").rate_limit(burst=1, retry_after=30)

    shipment = await production_client.book(quote, parcel)

    assert shipment.carrier == "gls"
    shipping.assert_retry_after_honoured()
    shipping.assert_attempts(max=2)
    shipping.assert_stable_idempotency_key()
    shipping.assert_no_duplicate_side_effects()
    assert skipped(resilience) >= 29.0


async def test_a_retry_after_of_a_minute_ends_the_booking_at_once(
    resilience: Resilience,
    shipping: HttpService,
    production_client: ShippingClient,
    quote: Quote,
    parcel: Parcel,
) -> None:
    """The policy honours a Retry-After of up to 30 s (``RetryPolicy.max_retry_after``):
    a minute ends its retries after the first attempt, without waiting."""
    shipping.route("POST", "/shipments").rate_limit(burst=1, retry_after=60)

    with pytest.raises(ShippingError, match="after 1 attempt"):
        await production_client.book(quote, parcel)

    shipping.assert_attempts(max=1)
    assert skipped(resilience) < 1.0
