from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from faker import Faker

from pytest_resilience import HttpService, Resilience

from .client import CircuitBreaker, PaymentsClient, RetryPolicy


@dataclass(frozen=True)
class Order:
    amount: int
    currency: str
    customer: str


@pytest.fixture
def order(fake: Faker) -> Order:
    return Order(fake.random_int(100, 99_999), fake.currency_code().lower(), fake.email())


@pytest.fixture
def payments(resilience: Resilience, fake: Faker, order: Order) -> HttpService:
    """The payments API, stubbed behind Toxiproxy: charges succeed, the balance answers."""
    service = resilience.http_service("payments")
    service.route("POST", "/charges").respond(
        201,
        json={
            "id": f"ch_{fake.uuid4()}",
            "amount": order.amount,
            "currency": order.currency,
            "status": "succeeded",
        },
    )
    service.route("GET", "/balance").respond(200, json={"available": 125_000, "currency": "eur"})
    return service


@pytest.fixture
def client(payments: HttpService, resilience: Resilience) -> Iterator[PaymentsClient]:
    """The fixed client; its jitter draws from the run's seed, so a replay waits alike."""
    with PaymentsClient(
        payments.url,
        policy=RetryPolicy(attempts=5, base=0.05, cap=0.4, timeout=0.5),
        breaker=CircuitBreaker(failures=5, cooldown=0.5),
        rng=random.Random(resilience.seed),
    ) as client:
        yield client
