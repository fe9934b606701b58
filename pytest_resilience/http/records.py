"""Frozen records of HTTP traffic: every exchange, and the side effects the stub applied."""

from __future__ import annotations

import email.utils
import hashlib
import json
from dataclasses import dataclass

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """The wait a Retry-After header asks for, from wall-clock time ``now`` (RFC 9110 10.2.3).

    Delta-seconds as given; an HTTP-date as the time left until it (0 if past).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - now, 0.0)


def fingerprint(method: str, path: str, body: bytes) -> str:
    """The business identity of a request: method, path and canonical body.

    JSON bodies are canonical (sorted keys, no spaces), so two serialisations of
    the same payload match; other bodies are compared by their SHA-256.
    """
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        canonical = "sha256:" + hashlib.sha256(body).hexdigest()
    return f"{method} {path} {canonical if body else ''}".rstrip()


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP request the service received, and what it answered."""

    service: str
    connection: int
    """The HTTP layer's connection id (behind Toxiproxy)."""
    index: int
    """The request's number on its connection, from 0."""
    started_at: float
    ended_at: float | None
    """When the last byte of the answer was written (monotonic); None if none was."""
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    idempotency_key: str | None
    fingerprint: str
    status: int | None
    """The status answered, or None if the connection ended before one was sent."""
    scripted: bool
    """True when a fault (fail, rate_limit, cut...) answered rather than the default or upstream."""
    step: str
    """What answered: respond, replay, fail, rate_limit, cut, forward..."""
    retry_after: str | None
    retry_after_delay: float | None
    """Seconds the Retry-After asked the client to wait, from when the answer was sent."""
    delivered: bool | None
    """True: the whole answer reached the client; False: it was lost (partition, reset,
    cut); None: not known yet (still in flight) or the connection could not be traced."""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def lost(self) -> bool:
        return self.delivered is False


@dataclass(frozen=True, slots=True)
class Effect:
    """A side effect: an unsafe request the service applied (a charge made, a row written)."""

    service: str
    at: float
    method: str
    path: str
    idempotency_key: str | None
    fingerprint: str
    status: int
    exchange: tuple[int, int]
    """(connection, index) of the exchange that applied it."""


class ExchangeList(list[Exchange]):
    """Exchanges of one service, in the order their requests arrived."""

    def with_key(self, key: str | None) -> ExchangeList:
        return ExchangeList(e for e in self if e.idempotency_key == key)

    def with_path(self, path: str, method: str | None = None) -> ExchangeList:
        return ExchangeList(
            e for e in self if e.path.split("?", 1)[0] == path and method in (None, e.method)
        )

    def with_status(self, *statuses: int) -> ExchangeList:
        return ExchangeList(e for e in self if e.status in statuses)

    def between(self, start: float, end: float) -> ExchangeList:
        return ExchangeList(e for e in self if start <= e.started_at <= end)

    def lost(self) -> ExchangeList:
        return ExchangeList(e for e in self if e.delivered is False)

    def keys(self) -> list[str | None]:
        return [e.idempotency_key for e in self]
