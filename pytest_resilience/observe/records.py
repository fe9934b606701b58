"""Frozen records of what happened on the wire and to the faults.

Times are seconds on the plugin's clock (:data:`pytest_resilience.clock.CLOCK`); :class:`~.timeline.Timeline` renders them
relative to the start of the test.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

ConnectionEventKind = Literal["opened", "closed", "reset"]
Side = Literal["client", "upstream", "plugin", ""]


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A fault was applied to, or healed on, a service."""

    at: float
    service: str
    kind: str
    action: Literal["applied", "healed"]
    fault: int
    """Id shared by a fault's ``applied`` and ``healed`` events."""
    detail: str
    refuses: bool = False
    """The fault disabled the proxy: new connections were refused while it lasted, and a
    refused connection leaves no record (the tap stops listening)."""


@dataclass(frozen=True, slots=True)
class FaultSpan:
    """One fault, joined from its ``applied`` and ``healed`` events."""

    service: str
    kind: str
    fault: int
    detail: str
    applied_at: float
    healed_at: float | None
    """None: not healed (in force until the test's services closed, or still)."""
    refuses: bool = False
    """As :attr:`FaultEvent.refuses`."""


def fault_spans(events: Iterable[FaultEvent]) -> list[FaultSpan]:
    """The faults of ``events`` with the time each was in force, in the order applied
    (a fault's id is unique in the session; a heal with no application is ignored)."""
    spans: dict[int, FaultSpan] = {}
    for event in events:
        if event.action == "applied":
            spans[event.fault] = FaultSpan(
                event.service, event.kind, event.fault, event.detail, event.at, None, event.refuses
            )
        elif event.fault in spans:
            spans[event.fault] = replace(spans[event.fault], healed_at=event.at)
    return list(spans.values())


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A client connection through a service's tap opened, closed or was reset."""

    at: float
    service: str
    connection: int
    kind: ConnectionEventKind
    by: Side
    """Which side ended it (for ``closed`` and ``reset``)."""
    bytes_up: int
    """Bytes from the client forwarded towards the service so far."""
    bytes_down: int
    """Bytes from the service that reached the client's socket so far."""


@dataclass(frozen=True, slots=True)
class Connection:
    """One client connection, joined from its events."""

    service: str
    id: int
    opened_at: float
    closed_at: float | None
    outcome: Literal["open", "closed", "reset"]
    closed_by: Side
    bytes_up: int
    bytes_down: int

    @property
    def duration(self) -> float | None:
        return None if self.closed_at is None else self.closed_at - self.opened_at


@dataclass(frozen=True, slots=True)
class VerdictEvent:
    """A resilience assertion was checked: which one, on what, and whether it held."""

    at: float
    service: str
    """The service judged; "" for a verdict on the client's calls (a run)."""
    name: str
    """The assertion, e.g. ``assert_backoff``."""
    passed: bool
    message: str
    """The rule broken (the failure's first line); "" when it held."""


@dataclass(frozen=True, slots=True)
class IntentEvent:
    """What a client's retry or breaker library said it would do (``pytest_resilience.adapters``)."""

    at: float
    service: str
    source: str
    """The library: tenacity, stamina, backoff or pybreaker."""
    kind: Literal["wait", "breaker"]
    value: float | str | None
    """Seconds it planned to wait before the next attempt, or the breaker's new state."""
    attempt: int | None = None
    """The attempt that just failed, where the library tells it."""


@dataclass(frozen=True, slots=True)
class RunEvent:
    """A ``resilience.drive`` or ``resilience.load`` of the code under test returned."""

    at: float
    service: str
    """Always "": a run is the client's calls, whichever services they met."""
    run: Any
    """The :class:`~pytest_resilience.Run`: its calls and the verdicts on them."""


@dataclass(frozen=True, slots=True)
class Call:
    """One call of the code under test (``resilience.drive`` and ``resilience.load``)."""

    index: int
    started_at: float
    ended_at: float
    value: Any
    exception: BaseException | None

    @property
    def latency(self) -> float:
        return self.ended_at - self.started_at

    @property
    def ok(self) -> bool:
        """The call returned (a fallback value counts) rather than raised."""
        return self.exception is None
