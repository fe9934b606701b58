from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from faker import Faker

from pytest_resilience import HttpService, Resilience

from .client import Parcel, Quote, RetryPolicy, ShippingClient
from .transports import AiohttpTransport, HttpxTransport, Transport

CARRIERS = {
    "dhl": 1190,
    "ups": 1340,
    "gls": 990,
    "dpd": 1050,
    "postnl": 1275,
    "fedex": 1420,
    "tnt": 1385,
    "bpost": 1115,
    "colissimo": 1230,
    "hermes": 1090,
    "royalmail": 1310,
    "correos": 1160,
}
"""The carriers the API quotes for, and their price for any parcel (cents): twelve, so that
the quotes of one parcel, failed together, are enough waits to show the client's jitter
(``tests/test_timing_verdicts.py``, the async client's burst)."""

FAST = RetryPolicy(attempts=5, base=0.05, cap=0.5, timeout=0.3, max_retry_after=5.0)
"""The production policy scaled down to test time: the shape is what is judged."""


@pytest.fixture
def shipping(resilience: Resilience, fake: Faker) -> HttpService:
    """The shipping API, stubbed behind Toxiproxy: every carrier quotes, bookings succeed."""
    service = resilience.http_service("shipping")
    for carrier, price in CARRIERS.items():
        service.route("GET", f"/carriers/{carrier}/quote").respond(
            200,
            json={"id": f"q_{fake.uuid4()}", "carrier": carrier, "price": price, "currency": "eur"},
        )
    service.route("POST", "/shipments").respond(
        201,
        json={"id": f"shp_{fake.uuid4()}", "carrier": "gls", "tracking_number": fake.ean13()},
    )
    return service


def make_parcel(fake: Faker) -> Parcel:
    return Parcel(fake.random_int(100, 30_000), fake.country_code(), fake.country_code())


@pytest.fixture
def parcel(fake: Faker) -> Parcel:
    return make_parcel(fake)


@pytest.fixture
def quote(fake: Faker) -> Quote:
    return Quote(f"q_{fake.uuid4()}", "gls", CARRIERS["gls"], "eur")


@contextlib.asynccontextmanager
async def client_on(
    request: pytest.FixtureRequest,
    shipping: HttpService,
    resilience: Resilience,
    policy: RetryPolicy,
) -> AsyncIterator[ShippingClient]:
    """The client with ``policy`` on the HTTP stack ``request.param`` names; its jitter
    replays with ``--resilience-seed``."""
    transport: Transport = HttpxTransport() if request.param == "httpx" else AiohttpTransport()
    rng = random.Random(f"{resilience.seed}:{request.node.nodeid}")
    async with ShippingClient(shipping.url, transport, policy=policy, rng=rng) as client:
        yield client


@pytest.fixture(params=["httpx", "aiohttp"])
async def client(
    request: pytest.FixtureRequest, shipping: HttpService, resilience: Resilience
) -> AsyncIterator[ShippingClient]:
    """The client on each HTTP stack, with its policy scaled down to test time."""
    async with client_on(request, shipping, resilience, FAST) as client:
        yield client


async def settled(service: HttpService, count: int, timeout: float = 3.0) -> None:
    """Wait until ``count`` exchanges arrived and each knows whether its answer was delivered.

    The tap learns that an answer reached the client a moment after the client read
    it; counts of lost answers are only final once every exchange knows.
    """
    deadline = time.monotonic() + timeout
    while True:
        exchanges = service.exchanges
        if len(exchanges) >= count and all(e.delivered is not None for e in exchanges):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {count} settled exchanges; "
                f"saw {[(e.status, e.delivered) for e in exchanges]}"
            )
        await anyio.sleep(0.005)  # poll interval
