from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator

import pytest
from faker import Faker

from pytest_resilience import HttpService, Resilience

from .inventory import Backoff, InventoryClient
from .workers import Order

WORKERS = 8
OUTAGE = 1.0
"""Seconds the inventory API answers 503 to everyone, from the start of the test body."""

EXPONENTIAL = Backoff(base=0.25, cap=1.0, attempts=10, jitter=False, timeout=0.5)
"""Waits 250, 500, 1000 ms...: three attempts fail in the outage, the fourth succeeds
(waits long against a busy loop's noise, so lockstep can be told from jitter)."""
FULL_JITTER = Backoff(base=0.25, cap=1.0, attempts=10, jitter=True, timeout=0.5)
"""The same policy with full jitter; ten attempts outlast the outage even on short draws."""


@pytest.fixture
def inventory(resilience: Resilience, fake: Faker) -> HttpService:
    """The inventory API, stubbed behind Toxiproxy: every reservation succeeds."""
    service = resilience.http_service("inventory")
    service.route("POST", "/reservations").respond(201, json={"id": f"res_{fake.uuid4()}"})
    return service


@pytest.fixture
async def clients(
    request: pytest.FixtureRequest, inventory: HttpService, resilience: Resilience
) -> AsyncIterator[list[InventoryClient]]:
    """One client per worker, on the backoff the test parametrizes (indirectly).

    They exist before the outage starts, as a running fleet's do; each draws its
    jitter from its own stream of the run's seed, so ``--resilience-seed`` replays it.
    """
    backoff: Backoff = request.param
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                InventoryClient(
                    inventory.url,
                    backoff=backoff,
                    rng=random.Random(f"{resilience.seed}:worker-{n}"),
                )
            )
            for n in range(WORKERS)
        ]


@pytest.fixture
def orders(fake: Faker) -> list[Order]:
    """One order per worker, each for a different SKU."""
    return [
        Order(fake.bothify("order-#####"), fake.unique.bothify("SKU-????-###").upper(), 1)
        for _ in range(WORKERS)
    ]
