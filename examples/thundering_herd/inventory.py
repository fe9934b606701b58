"""An inventory client that order workers use to reserve stock, and its backoff.

Every worker runs its own client.  When the inventory API goes down, all of them
fail within the same few milliseconds; what they do next decides whether the API
can come back.  Exponential backoff alone keeps the herd together: each worker
waits 100 ms, 200 ms, 400 ms... after the same failure, so their retries arrive
together, as a burst per retry.  Full jitter draws each wait uniformly below that
ceiling, so the herd spreads out.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from types import TracebackType

import httpx

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class InventoryUnavailable(Exception):
    """No reservation after every attempt; retrying later with the same key is safe."""


@dataclass(frozen=True)
class Reservation:
    id: str
    sku: str
    quantity: int


@dataclass(frozen=True)
class Backoff:
    base: float = 0.1
    """Seconds: the ceiling of the first wait, doubled at each retry."""
    cap: float = 5.0
    """Seconds: the ceiling never grows past this."""
    attempts: int = 6
    jitter: bool = True
    """Full jitter: wait a uniform draw below the ceiling, not the ceiling itself."""
    timeout: float = 2.0
    """Seconds each attempt may take."""

    def delay(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1, 2, ...)."""
        ceiling = min(self.cap, self.base * 2 ** (retry - 1))
        return rng.uniform(0, ceiling) if self.jitter else ceiling


class InventoryClient:
    def __init__(
        self, base_url: str, *, backoff: Backoff | None = None, rng: random.Random | None = None
    ) -> None:
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(base_url=base_url, timeout=self.backoff.timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> InventoryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def reserve(self, order: str, sku: str, quantity: int) -> Reservation:
        """Hold ``quantity`` of ``sku`` for ``order``; one key for every attempt."""
        body = {"order": order, "sku": sku, "quantity": quantity}
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        backoff = self.backoff
        for attempt in range(1, backoff.attempts + 1):
            try:
                response = await self._http.post("/reservations", json=body, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in RETRYABLE:
                    response.raise_for_status()
                    data = response.json()
                    return Reservation(data["id"], sku, quantity)
                problem = f"HTTP {response.status_code}"
            if attempt < backoff.attempts:
                await asyncio.sleep(backoff.delay(attempt, self._rng))  # the policy under test
        raise InventoryUnavailable(
            f"no reservation of {sku} for {order} after {backoff.attempts} attempts: {problem}"
        )
