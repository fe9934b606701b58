"""Fixtures and checks the whole suite shares: the tests in tests/ and the examples."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_resilience.toxiproxy.backends import Backend

# The echo upstream (tests/echo.py) is shared with inner pytest runs, so it is a plugin.
pytest_plugins = ["pytester", "tests.echo"]
ECHO = Path(__file__).parent / "tests" / "echo.py"


@pytest.fixture
def seeded_jitter(request: pytest.FixtureRequest) -> Iterator[None]:
    """The global ``random``, from which retry libraries draw their jitter, seeded with the
    test module's ``JITTER_SEED`` so that the draws replay; its state is restored after.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("seeded_jitter")``."""
    state = random.getstate()
    random.seed(request.module.JITTER_SEED)
    yield
    random.setstate(state)


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the echo upstream and round-trip timer (tests/echo.py) in
    its conftest."""
    pytester.makeconftest(ECHO.read_text())
    return pytester


@pytest.fixture
def url(toxiproxy: Backend) -> str:
    """The outer session's Toxiproxy API, for inner pytest runs to share (``--toxiproxy=URL``)."""
    return toxiproxy.client.url


def pytest_configure(config: pytest.Config) -> None:
    # CI sets this so that a missing Toxiproxy fails the run instead of going unnoticed.
    if os.environ.get("RESILIENCE_REQUIRE_TOXIPROXY") and not shutil.which("toxiproxy-server"):
        raise pytest.UsageError(
            "RESILIENCE_REQUIRE_TOXIPROXY is set but toxiproxy-server is not on PATH; "
            "run bash .ci/install-toxiproxy and put .bin/ on PATH."
        )
