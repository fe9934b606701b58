"""Eight workers an outage failed together, and how they come back when it heals.

Each worker alone backs off as it should: bounded attempts, growing waits.  Without
jitter, though, they all wait the same series from the same moment, so every retry
reaches the API as one burst of eight; ``assert_no_retry_storm`` says so.  With
full jitter the same workers spread out, and the verdict passes.
"""

from __future__ import annotations

import pytest

from pytest_resilience import HttpService, Resilience
from pytest_resilience.assertions import ResilienceAssertionError

from .conftest import EXPONENTIAL, FULL_JITTER, OUTAGE, WORKERS
from .inventory import InventoryClient
from .workers import Order, reserve_all

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("clients", [EXPONENTIAL], ids=["no-jitter"], indirect=True)
@pytest.mark.http_faults("inventory", status=503, duration=OUTAGE)
async def test_exponential_backoff_without_jitter_brings_the_herd_back_as_a_retry_storm(
    resilience: Resilience,
    inventory: HttpService,
    clients: list[InventoryClient],
    orders: list[Order],
) -> None:
    reservations = await reserve_all(clients, orders)

    assert len(reservations) == WORKERS
    # Each worker on its own is fine: bounded attempts, waits that double ...
    inventory.assert_attempts(max=EXPONENTIAL.attempts)
    inventory.assert_backoff(jitter=False)
    inventory.assert_no_duplicate_side_effects()
    # ... but together they hit the API in bursts, one per retry.
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^retry storm: [3-8] operations failed together \(within [\d.]+ ms\) and retried "
        r"in lockstep over \d retries",
    ):
        resilience.assert_no_retry_storm(inventory)


@pytest.mark.parametrize("clients", [FULL_JITTER], ids=["full-jitter"], indirect=True)
@pytest.mark.http_faults("inventory", status=503, duration=OUTAGE)
async def test_full_jitter_spreads_the_herd_out(
    resilience: Resilience,
    inventory: HttpService,
    clients: list[InventoryClient],
    orders: list[Order],
) -> None:
    reservations = await reserve_all(clients, orders)

    assert len(reservations) == WORKERS
    resilience.assert_no_retry_storm(inventory)
    # Growth is not judged: the cap stops it at 4x the first range, and eight first waits
    # drawn with full jitter may all be low draws, so a fixed range cannot be ruled out.
    inventory.assert_backoff(jitter=True, max_delay=FULL_JITTER.cap, min_factor=1)
    inventory.assert_attempts(max=FULL_JITTER.attempts)
    inventory.assert_no_duplicate_side_effects()
