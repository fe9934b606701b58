"""The stub services the zoo's clients call."""

from __future__ import annotations

import pytest

from pytest_resilience import HttpService, Resilience

from .shop import ORDER, STOCK


@pytest.fixture
def orders(resilience: Resilience) -> HttpService:
    service = resilience.http_service("orders")
    service.respond(200, json=ORDER)
    return service


@pytest.fixture
def inventory(resilience: Resilience) -> HttpService:
    service = resilience.http_service("inventory")
    service.respond(200, json=STOCK)
    return service
