"""Fixtures of the HTTP service tests: each client in turn, and a stub service."""

from __future__ import annotations

import pytest

from pytest_resilience import HttpService, Resilience

from .support import CLIENTS


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def payments(resilience: Resilience) -> HttpService:
    return resilience.http_service("payments")
