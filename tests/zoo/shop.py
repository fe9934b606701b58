"""The stub shop the zoo's clients call: its answers, and the one-attempt calls the
libraries wrap."""

from __future__ import annotations

from typing import Any

import requests

HERD = 5
"""Clients that an outage fails together."""
ORDER = {"id": "o_1", "status": "paid"}
"""The ``orders`` service's answer."""
STOCK = {"sku": "A1", "stock": 3}
"""The ``inventory`` service's answer."""
FALLBACK = {"sku": "A1", "stock": None, "cached": True}
"""What the breakers' clients answer while the breaker is open."""


def get_stock(url: str) -> dict[str, Any]:
    """One GET on a connection of its own (calls may run on several threads)."""
    reply = requests.get(f"{url}/stock/A1", timeout=2)
    reply.raise_for_status()
    return reply.json()  # type: ignore[no-any-return]


def get_or_raise(session: requests.Session, url: str) -> requests.Response:
    """One attempt: the answer, or ``requests.HTTPError`` for a 4xx/5xx."""
    response = session.get(url, timeout=5)
    response.raise_for_status()
    return response
