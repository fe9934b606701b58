"""What every example shares: pytest-resilience loads itself; this only picks anyio's loop."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The async examples run on asyncio (anyio's pytest plugin, no pytest-asyncio needed)."""
    return "asyncio"
