"""The shipping client under the faults a carrier API really has, on httpx and on aiohttp.

Each test scripts one fault on the stubbed API, lets the client do its job, and
then judges what the API saw: how many attempts, how they were spaced, whether
Retry-After was waited, whether any label was bought twice.
"""

from __future__ import annotations

import asyncio

import pytest
from faker import Faker

from pytest_resilience import HttpService

from .client import Parcel, Quote, Shipment, ShippingClient, ShippingError
from .conftest import CARRIERS, FAST, make_parcel, settled

pytestmark = pytest.mark.anyio


async def test_a_429_is_waited_out_for_as_long_as_its_retry_after_asks(
    shipping: HttpService, client: ShippingClient, quote: Quote, parcel: Parcel
) -> None:
    shipping.route("POST", "/shipments").rate_limit(burst=1, retry_after=1)

    shipment = await client.book(quote, parcel)

    assert shipment.carrier == "gls"
    shipping.assert_retry_after_honoured()
    shipping.assert_attempts(max=2)
    shipping.assert_stable_idempotency_key()
    shipping.assert_no_duplicate_side_effects()


async def test_a_retry_after_longer_than_the_client_waits_fails_the_booking_at_once(
    shipping: HttpService, client: ShippingClient, quote: Quote, parcel: Parcel
) -> None:
    shipping.route("POST", "/shipments").rate_limit(burst=1, retry_after=3600)

    with pytest.raises(ShippingError, match="after 1 attempt"):
        await client.book(quote, parcel)

    shipping.assert_attempts(max=1)


async def test_a_503_burst_on_every_carrier_is_ridden_out_with_capped_jittered_backoff(
    shipping: HttpService, client: ShippingClient, parcel: Parcel
) -> None:
    """Twelve quotes in flight at once, each failed four times: each backs off on its own.

    Twelve, because jitter is judged on the waits of the quotes at each retry: five quotes'
    waits came out too close together in 1 of 8 CI runs to tell jitter from timing noise
    (insufficient evidence), while twelve showed it in each of 3,000 seeded simulated runs
    (tests/test_timing_verdicts.py::test_the_async_clients_burst_has_the_quotes_it_needs_to_show_jitter).
    """
    for carrier in CARRIERS:
        shipping.route("GET", f"/carriers/{carrier}/quote").fail(503, count=4)

    cheapest = await client.cheapest_quote(parcel, CARRIERS)

    assert cheapest.carrier == min(CARRIERS, key=CARRIERS.__getitem__)
    shipping.assert_attempts(min=5, max=FAST.attempts)
    # Growth is not judged: at waits this short against the noise, even twelve first waits
    # drawn with full jitter may all be low draws, which leaves a client that never grows
    # possible (about ten quotes would do at waits of 0.4 s).
    shipping.assert_backoff(jitter=True, max_delay=FAST.cap, min_factor=1)


async def test_a_carrier_that_stays_down_is_retried_a_bounded_number_of_times_and_left_out(
    shipping: HttpService, client: ShippingClient, parcel: Parcel
) -> None:
    shipping.route("GET", "/carriers/gls/quote").fail(503)

    cheapest = await client.cheapest_quote(parcel, CARRIERS)

    assert cheapest.carrier == "dpd"  # the cheapest of those that answered
    shipping.assert_attempts(max=FAST.attempts)
    assert len(shipping.exchanges.with_path("/carriers/gls/quote")) == FAST.attempts


@pytest.mark.partition("shipping", direction="downstream", duration=0.3)
async def test_a_lost_answer_is_retried_with_the_same_key_and_the_label_bought_once(
    shipping: HttpService, client: ShippingClient, quote: Quote, parcel: Parcel
) -> None:
    """The API buys the label but the answer never arrives; the client gives up on it
    and asks again with the same key, and the API replays the label it bought."""
    shipment = await client.book(quote, parcel)

    assert shipment.carrier == "gls"
    await settled(shipping, 2)
    assert shipping.exchanges.lost(), "the partition should have eaten the first answer"
    assert len(shipping.effects) == 1
    shipping.assert_no_duplicate_side_effects()
    shipping.assert_stable_idempotency_key()
    shipping.assert_attempts(max=3)


async def test_answers_cut_off_during_concurrent_bookings_buy_each_label_once(
    shipping: HttpService, client: ShippingClient, quote: Quote, fake: Faker
) -> None:
    """Three bookings at once; two answers are cut halfway through the body."""
    parcels = [make_parcel(fake) for _ in range(3)]
    shipping.route("POST", "/shipments").cut(count=2)

    shipments = await asyncio.gather(
        *(client.book(quote, parcel) for parcel in parcels), return_exceptions=True
    )

    assert all(isinstance(s, Shipment) for s in shipments), shipments
    await settled(shipping, 5)
    assert len(shipping.exchanges.lost()) == 2
    assert len(shipping.effects) == 3
    shipping.assert_no_duplicate_side_effects()
    shipping.assert_stable_idempotency_key()
    shipping.assert_attempts(max=3)
