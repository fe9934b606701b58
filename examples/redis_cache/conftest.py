from __future__ import annotations

import socket
import string
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from faker import Faker

from pytest_resilience import Resilience, TcpService

from ..servers import find_binary, free_port, running
from .prices import CachedPrices, PriceDatabase, UnguardedPrices, connect

REDIS_TIMEOUT = 0.15
"""Seconds the price service waits for Redis, to connect or for an answer."""
BYPASS = 0.25
"""Seconds the price service leaves Redis alone after a failure."""


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Debian's redis-server on a free loopback port, without persistence, for the session."""
    binary = find_binary("redis-server", "redis-server")
    server = RedisServer("127.0.0.1", free_port())
    command = [binary, "--port", str(server.port), "--bind", server.host]
    command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
    with running(command, lambda: answers_ping(server.host, server.port), "redis-server"):
        yield server


@pytest.fixture
def redis_service(resilience: Resilience, redis_server: RedisServer) -> TcpService:
    """An empty Redis, behind Toxiproxy."""
    with redis.Redis(host=redis_server.host, port=redis_server.port) as direct:
        direct.flushdb()
    return resilience.tcp_service("redis", upstream=redis_server.address)


@pytest.fixture
def catalogue(fake: Faker) -> dict[str, int]:
    """Five SKUs and their prices in cents."""
    skus = [fake.unique.bothify("SKU-####-??", letters=string.ascii_uppercase) for _ in range(5)]
    return {sku: fake.pyint(199, 99_999) for sku in skus}


@pytest.fixture
def database(catalogue: dict[str, int]) -> PriceDatabase:
    return PriceDatabase(catalogue)


@pytest.fixture
def cache(redis_service: TcpService) -> Iterator[redis.Redis]:
    client = connect(redis_service.host, redis_service.port, timeout=REDIS_TIMEOUT)
    yield client
    client.close()


@pytest.fixture
def prices(cache: redis.Redis, database: PriceDatabase) -> CachedPrices:
    """The price service, its cache warm: every SKU has been read once."""
    prices = CachedPrices(cache, database, bypass=BYPASS)
    for sku in database.skus:
        prices.price(sku)
    return prices


@pytest.fixture
def unguarded(cache: redis.Redis, database: PriceDatabase) -> UnguardedPrices:
    """The price service without its fallback, its cache warm."""
    prices = UnguardedPrices(cache, database)
    for sku in database.skus:
        prices.price(sku)
    return prices
