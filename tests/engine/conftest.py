"""Fixtures of the engine tests: an echo upstream, and an engine on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_resilience.engine import Engine

from .support import (
    EchoUpstream,
)


@pytest.fixture
def upstream() -> Iterator[EchoUpstream]:
    server = EchoUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine(host="127.0.0.1", port=0, seed=1234)
    engine.start()
    yield engine
    engine.stop()
