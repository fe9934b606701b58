"""Frozen records of HTTP traffic: every exchange, and the side effects the stub applied."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANSWER_BODY_KEPT = 64 * 1024
"""Bytes of each answer's body kept on its record."""


def retry_after_seconds(value: str | None, now: Callable[[], float]) -> float | None:
    """The wait a Retry-After header asks for (RFC 9110 10.2.3).

    Delta-seconds as given; an HTTP-date as the time left until it (0 if past) from the
    wall-clock time ``now()``, read only then: a test's clock that ticks at each read
    (freezegun's ``auto_tick_seconds``) is not moved by answers that carry no date.
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
    return max(when.timestamp() - now(), 0.0)


def retry_after_ms(value: str | None) -> float | None:
    """The wait a ``retry-after-ms`` header asks for, in seconds (a finite number >= 0)."""
    if value is None:
        return None
    try:
        ms = float(value.strip())
    except ValueError:
        return None
    return ms / 1000 if math.isfinite(ms) and ms >= 0 else None


def requested_wait(
    headers: Sequence[tuple[str, str]], now: Callable[[], float]
) -> tuple[float | None, str | None]:
    """The wait an answer asks for, and the header that asked: ``retry-after-ms`` first
    (the millisecond header SDKs of large APIs read first), then ``Retry-After``."""
    values: dict[str, str] = {}
    for name, value in headers:
        values.setdefault(name.lower(), value)  # the first of a repeated header, as header() reads
    wait = retry_after_ms(values.get("retry-after-ms"))
    if wait is not None:
        return wait, "retry-after-ms"
    wait = retry_after_seconds(values.get("retry-after"), now)
    return (wait, "Retry-After") if wait is not None else (None, None)


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
    """The Retry-After header as sent, if any."""
    retry_after_delay: float | None
    """Seconds the answer asked the client to wait, from when it was sent: its
    ``retry-after-ms`` if it carried one, else its Retry-After."""
    delivered: bool | None
    """True: the whole answer reached the client; False: it was lost (partition, reset,
    cut); None: not known yet (still in flight) or the connection could not be traced."""
    answer_headers: tuple[tuple[str, str], ...] = ()
    """The headers of the answer (framing headers left out); empty if none was sent."""
    answer_body: bytes = b""
    """The body of the answer (its first 64 KiB), for failure predicates to read."""
    cut_at: float | None = None
    """When the answer was cut short and the connection ended (a ``cut``); None otherwise."""

    def header(self, name: str) -> str | None:
        """A header the client sent."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def answer_header(self, name: str) -> str | None:
        """A header of the answer."""
        lowered = name.lower()
        return next((v for k, v in self.answer_headers if k.lower() == lowered), None)

    @property
    def wait_header(self) -> str | None:
        """Which header set :attr:`retry_after_delay`: ``retry-after-ms`` or ``Retry-After``."""
        if self.answer_headers:
            _, header = requested_wait(self.answer_headers, lambda: 0.0)  # any time will do
            return header
        # A record made without the answer's headers (e.g. built by hand).
        return "Retry-After" if self.retry_after_delay is not None else None

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


ExchangeStep = Literal["received", "answered", "ended", "delivered", "lost"]


@dataclass(frozen=True, slots=True)
class ExchangeEvent:
    """A step of one HTTP exchange, on the test's timeline.

    ``received``: the request arrived (``exchange`` has no answer yet); ``answered``:
    the answer (status, headers, body) was handed to the connection; ``ended``: its
    last byte was written, the answer was cut, or the connection was lost first;
    ``delivered`` / ``lost``: the tap in front of Toxiproxy showed the whole answer
    reached the client, or that it never will.  The plugin learns the last when
    it reads the records (a verdict, ``service.exchanges``, the report at the test's
    end), so that step's ``at`` is when it was learnt.
    """

    at: float
    service: str
    step: ExchangeStep
    exchange: Exchange
    """The exchange as it stood at this step; the last step's record is the final one."""


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
