"""Prices for a shop, read through a Redis cache that is allowed to fail.

The database is the source of truth; Redis keeps a copy so that most reads never reach
it. A cache must never be the reason a read fails, so:

- every Redis call has a short socket timeout (connect and read) and no retries of its
  own: redis-py 6+ retries three times with exponential backoff by default, which turns
  a cache that stopped answering into a read that waits for seconds;
- a Redis error or timeout falls back to the database, and the read still answers;
- after a failure the cache is bypassed for ``bypass`` seconds, so an outage costs one
  timeout per ``bypass`` rather than one per read; the first read after that tries Redis
  again, which is how the service goes back to the cache once Redis is back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    sku: str
    cents: int
    source: Literal["cache", "database"]


class PriceDatabase:
    """Stands in for the product database: always right, and what the cache spares."""

    def __init__(self, prices: Mapping[str, int]) -> None:
        self._prices = dict(prices)
        self.reads = 0

    @property
    def skus(self) -> Iterable[str]:
        return self._prices.keys()

    def price(self, sku: str) -> int:
        self.reads += 1
        return self._prices[sku]


def connect(host: str, port: int, *, timeout: float) -> redis.Redis:
    """A Redis client that gives up after ``timeout`` seconds and never retries by itself."""
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries=0),
    )


class CachedPrices:
    """Prices read through ``cache``, from ``database`` on a miss or while the cache fails."""

    def __init__(
        self,
        cache: redis.Redis,
        database: PriceDatabase,
        *,
        ttl: int = 300,
        bypass: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache = cache
        self._database = database
        self.ttl = ttl
        self.bypass = bypass
        self._clock = clock
        self._bypassed_until = -math.inf

    def price(self, sku: str) -> Price:
        key = f"price:{sku}"
        cached = self._get(key)
        if cached is not None:
            return Price(sku, int(cached), "cache")
        cents = self._database.price(sku)
        self._put(key, cents)
        return Price(sku, cents, "database")

    def _get(self, key: str) -> bytes | str | None:
        """The cached value; None on a miss, on a failure and while the cache is bypassed."""
        if self._clock() < self._bypassed_until:
            return None
        try:
            return self._cache.get(key)
        except redis.RedisError as exc:
            self._failed(exc)
            return None

    def _put(self, key: str, cents: int) -> None:
        if self._clock() < self._bypassed_until:
            return
        try:
            self._cache.set(key, cents, ex=self.ttl)
        except redis.RedisError as exc:
            self._failed(exc)

    def _failed(self, exc: redis.RedisError) -> None:
        self._bypassed_until = self._clock() + self.bypass
        log.warning(
            "price cache failed (%s: %s); bypassed for %g s", type(exc).__name__, exc, self.bypass
        )


class UnguardedPrices:
    """The same read-through cache without the guard: a Redis error is the caller's error.

    Kept as the counter-example the tests catch: while Redis is cut off every read fails,
    after the socket timeout, although the database that holds the answer is fine.
    """

    def __init__(self, cache: redis.Redis, database: PriceDatabase, *, ttl: int = 300):
        self._cache = cache
        self._database = database
        self.ttl = ttl

    def price(self, sku: str) -> Price:
        key = f"price:{sku}"
        cached = self._cache.get(key)
        if cached is not None:
            return Price(sku, int(cached), "cache")
        cents = self._database.price(sku)
        self._cache.set(key, cents, ex=self.ttl)
        return Price(sku, cents, "database")
