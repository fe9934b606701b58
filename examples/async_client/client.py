"""A shipping API client: quotes from several carriers at once, and label bookings.

What makes it survive a flaky network:

- a bounded number of attempts, each with a short timeout;
- capped exponential backoff with full jitter between them, so the clients an
  outage failed together do not come back together;
- the Retry-After of a 429 or 503 as the least wait, and no retry at all when the
  API asks for longer than the client is willing to wait;
- one Idempotency-Key per booking, sent on every attempt, so an answer lost on the
  way back is replayed by the API instead of buying a second label;
- quotes fetched concurrently, and a carrier that keeps failing left out of the
  comparison instead of failing it.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from .transports import Transport, TransportError

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class ShippingError(Exception):
    """The API gave no usable answer; for a booking, retrying with the same key is safe."""


@dataclass(frozen=True)
class Parcel:
    weight_g: int
    origin: str
    """ISO 3166 country code."""
    destination: str


@dataclass(frozen=True)
class Quote:
    id: str
    carrier: str
    price: int
    """In the currency's minor unit (cents)."""
    currency: str


@dataclass(frozen=True)
class Shipment:
    id: str
    carrier: str
    tracking_number: str


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base: float = 0.2
    """Seconds: the first backoff is drawn from [0, base], the next from [0, 2 x base], ..."""
    cap: float = 5.0
    """Seconds: no backoff is drawn from a range wider than this."""
    timeout: float = 2.0
    """Seconds each attempt may take, connecting included."""
    max_retry_after: float = 30.0
    """Seconds: a Retry-After asking for longer ends the retries."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform below the capped exponential for this retry (1, 2, ...)."""
        return rng.uniform(0, min(self.cap, self.base * 2 ** (retry - 1)))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class ShippingClient:
    def __init__(
        self,
        base_url: str,
        transport: Transport,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self._transport = transport
        self._rng = rng or random.Random()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> ShippingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def quote(self, carrier: str, parcel: Parcel) -> Quote:
        query = urlencode(
            {"weight_g": parcel.weight_g, "from": parcel.origin, "to": parcel.destination}
        )
        data = await self._send("GET", f"/carriers/{carrier}/quote?{query}")
        return Quote(data["id"], data["carrier"], data["price"], data["currency"])

    async def cheapest_quote(self, parcel: Parcel, carriers: Iterable[str]) -> Quote:
        """Ask every carrier at once; the cheapest of those that answered."""
        carriers = list(carriers)
        # return_exceptions: one carrier failing neither cancels nor orphans the others.
        outcomes = await asyncio.gather(
            *(self.quote(carrier, parcel) for carrier in carriers), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, ShippingError):
                raise outcome  # a bug or a cancellation, not a carrier that is down
        quotes = [q for q in outcomes if isinstance(q, Quote)]
        if not quotes:
            raise ShippingError(f"no carrier quoted ({', '.join(carriers)})")
        return min(quotes, key=lambda q: q.price)

    async def book(
        self, quote: Quote, parcel: Parcel, *, idempotency_key: str | None = None
    ) -> Shipment:
        """Buy the label; every attempt carries the same key, so it is bought once."""
        key = idempotency_key or str(uuid.uuid4())
        body = {
            "quote": quote.id,
            "parcel": {
                "weight_g": parcel.weight_g,
                "from": parcel.origin,
                "to": parcel.destination,
            },
        }
        data = await self._send("POST", "/shipments", json=body, headers={"Idempotency-Key": key})
        return Shipment(data["id"], data["carrier"], data["tracking_number"])

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        policy = self.policy
        for attempt in range(1, policy.attempts + 1):
            try:
                answer = await self._transport.request(
                    method, self.base_url + path, json=json, headers=headers, timeout=policy.timeout
                )
            except TransportError as exc:
                problem = str(exc)
                wait = policy.backoff(attempt, self._rng)
            else:
                if answer.status < 300:
                    return answer.json()
                if answer.status not in RETRYABLE:
                    raise ShippingError(f"{method} {path} was refused: HTTP {answer.status}")
                problem = f"HTTP {answer.status}"
                wait = policy.backoff(attempt, self._rng)
                asked = retry_after(answer.headers)
                if asked is not None:
                    if asked > policy.max_retry_after:
                        break
                    wait = max(wait, asked)
            if attempt < policy.attempts:
                await asyncio.sleep(wait)  # the backoff itself: what the verdicts judge
        raise ShippingError(f"{method} {path} failed after {attempt} attempt(s): {problem}")
