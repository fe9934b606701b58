"""The storm as a user of the plugin sees it: a test file of theirs, run through pytester.

The herd without jitter fails ``assert_no_retry_storm``; this suite stays green by
running that test in a pytester session and reading what it printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_resilience.toxiproxy.backends import Backend

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

USER_TEST = """
import contextlib

import pytest

from examples.thundering_herd.inventory import Backoff, InventoryClient
from examples.thundering_herd.workers import Order, reserve_all

NO_JITTER = Backoff(base=0.25, cap=1.0, attempts=10, jitter=False, timeout=0.5)


@pytest.fixture
def inventory(resilience):
    service = resilience.http_service("inventory")
    service.route("POST", "/reservations").respond(201, json={"id": "res_1"})
    return service


@pytest.fixture
async def clients(inventory):
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(InventoryClient(inventory.url, backoff=NO_JITTER))
            for _ in range(8)
        ]


@pytest.mark.anyio
@pytest.mark.http_faults("inventory", status=503, duration=1.0)
async def test_the_herd_comes_back_spread_out(resilience, inventory, clients):
    orders = [Order(f"order-{n}", f"SKU-{n}", 1) for n in range(8)]

    await reserve_all(clients, orders)

    resilience.assert_no_retry_storm(inventory)
"""


def test_a_herd_without_jitter_fails_the_storm_verdict_with_its_timeline(
    pytester: pytest.Pytester, toxiproxy: Backend
) -> None:
    pytester.syspathinsert(ROOT)  # where ``examples`` is a package
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_herd=USER_TEST)

    # The outer run's Toxiproxy, whichever kind it is, serves the inner run too.
    result = pytester.runpytest("-p", "no:cacheprovider", f"--toxiproxy={toxiproxy.client.url}")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *ResilienceAssertionError: retry storm: * operations failed together (within * ms)"
            " and retried in lockstep over * retries: *; without jitter, clients that failed"
            " together retry together.",
            "E * t+ms  operation * try  status    gap ms  allowed",
            "E * replay: --resilience-seed=*",
        ]
    )
