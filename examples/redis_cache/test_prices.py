"""The price service while Redis is cut off, slow, and back again.

Each test warms the cache, breaks Redis through Toxiproxy, calls the service many times
and judges what callers saw: whether every read answered, how long each took, whether
the answers were right, and whether the service went back to the cache afterwards.
"""

from __future__ import annotations

import pytest
import redis

from pytest_resilience import Resilience, ResilienceAssertionError, TcpService

from .conftest import BYPASS, REDIS_TIMEOUT
from .prices import CachedPrices, Price, PriceDatabase, UnguardedPrices

SLACK = 0.35
"""Seconds of scheduling noise a loaded two-core CI machine may add to one call."""


@pytest.fixture
def sku(catalogue: dict[str, int]) -> str:
    return min(catalogue)


@pytest.mark.parametrize("mode", ["blackhole", "reset", "refuse"])
def test_reads_answer_from_the_database_while_redis_is_cut_off(
    resilience: Resilience,
    redis_service: TcpService,
    prices: CachedPrices,
    catalogue: dict[str, int],
    sku: str,
    mode: str,
) -> None:
    with redis_service.partition(mode=mode):
        run = resilience.drive(lambda: prices.price(sku), calls=20)

    run.assert_availability(min=1.0)
    run.assert_fail_fast(max_latency=REDIS_TIMEOUT + SLACK)
    assert set(run.values) == {Price(sku, catalogue[sku], "database")}
    # Bypassed after the first failure: the outage cost one wait, not twenty.
    assert sum(c.latency for c in run.calls) < REDIS_TIMEOUT + SLACK
    if mode != "refuse":  # a refused connection leaves no record: no bound can be shown
        redis_service.assert_connections(max=2)


@pytest.mark.latency("redis", ms=400, duration=1.0)
def test_a_redis_slower_than_the_timeout_is_not_waited_for(
    resilience: Resilience, prices: CachedPrices, catalogue: dict[str, int], sku: str
) -> None:
    run = resilience.load(lambda: prices.price(sku), duration=0.4, rate=25)

    run.assert_availability(min=1.0)
    run.assert_fail_fast(max_latency=REDIS_TIMEOUT + SLACK)
    assert set(run.values) == {Price(sku, catalogue[sku], "database")}


def test_a_redis_slower_but_within_the_timeout_still_serves_from_the_cache(
    resilience: Resilience,
    redis_service: TcpService,
    prices: CachedPrices,
    database: PriceDatabase,
    sku: str,
) -> None:
    reads_before = database.reads
    with redis_service.latency(25):
        run = resilience.drive(lambda: prices.price(sku), calls=10)

    assert {price.source for price in run.values} == {"cache"}
    assert database.reads == reads_before
    assert min(c.latency for c in run.calls) >= 0.025  # the latency was really there


class CacheBypassed(Exception):
    """A read that did not come from the cache (for a run that counts only cache hits)."""


@pytest.mark.partition("redis", duration=0.3)
def test_reads_go_back_to_the_cache_once_redis_heals(
    resilience: Resilience, prices: CachedPrices, sku: str
) -> None:
    def from_cache() -> Price:
        price = prices.price(sku)
        if price.source != "cache":
            raise CacheBypassed(price)
        return price

    run = resilience.load(from_cache, duration=1.2, rate=20)

    outcomes = sorted(
        {repr(e) if not isinstance(e, CacheBypassed) else "bypassed" for e in run.errors}
    )
    assert run.availability < 1, "the partition should have sent some reads to the database"
    assert run.availability > 0, f"none of {len(run.calls)} reads came from the cache: {outcomes}"
    # A probe that started just before the heal times out and bypasses Redis once more.
    run.assert_recovers(within=REDIS_TIMEOUT + BYPASS + SLACK)


def test_a_cache_without_fallback_fails_every_read_while_redis_is_cut_off(
    resilience: Resilience, redis_service: TcpService, unguarded: UnguardedPrices, sku: str
) -> None:
    with redis_service.partition():
        run = resilience.drive(lambda: unguarded.price(sku), calls=4)

    with pytest.raises(ResilienceAssertionError, match="availability 0% is below 100%"):
        run.assert_availability(min=1.0)
    assert all(isinstance(error, redis.TimeoutError) for error in run.errors)
