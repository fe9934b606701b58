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
OUTAGE_CALLS = 1.5
"""Seconds a breaker that must not open is called through an outage, :data:`RATE` times a
second (:data:`OUTAGE_COUNT` calls):
its first 3 failures and the 0.5 s cooldown after them, with room for a stall of most of
a second on a loaded machine (one of 664 ms once left 0.8 s of calls with none in the
cooldown, and the verdict rightly could not judge it)."""
RATE = 20
OUTAGE_COUNT = round(OUTAGE_CALLS * RATE)


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
