"""The per-test timeline: an append-only list of events with query methods."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..clock import CLOCK
from ..http.records import Effect, ExchangeEvent, ExchangeList
from .records import (
    Connection,
    ConnectionEvent,
    FaultEvent,
    IntentEvent,
    RunEvent,
    VerdictEvent,
)

if TYPE_CHECKING:
    from .dispatch import EventDispatcher

Event = (
    FaultEvent | ConnectionEvent | ExchangeEvent | Effect | RunEvent | VerdictEvent | IntentEvent
)


class ConnectionList(list[Connection]):
    """Connections of one service, oldest first, with the usual questions."""

    def reset(self) -> ConnectionList:
        return ConnectionList(c for c in self if c.outcome == "reset")

    def closed(self) -> ConnectionList:
        return ConnectionList(c for c in self if c.outcome == "closed")

    def still_open(self) -> ConnectionList:
        return ConnectionList(c for c in self if c.outcome == "open")


class Events(tuple[Event, ...]):
    """A test's events at one moment, oldest first: what a verdict or a report reads."""

    def faults(self, service: str | None = None) -> list[FaultEvent]:
        return [
            e
            for e in self
            if isinstance(e, FaultEvent) and (service is None or e.service == service)
        ]

    def verdicts(self) -> list[VerdictEvent]:
        return [e for e in self if isinstance(e, VerdictEvent)]

    def intents(self, service: str | None = None) -> list[IntentEvent]:
        return [
            e
            for e in self
            if isinstance(e, IntentEvent) and (service is None or e.service == service)
        ]

    def exchanges(self, service: str | None = None) -> ExchangeList:
        """HTTP exchanges joined from their steps (each as its last step left it), in the
        order their requests arrived."""
        latest = {}
        for event in self:
            if isinstance(event, ExchangeEvent) and service in (None, event.service):
                ex = event.exchange
                latest[(ex.service, ex.connection, ex.index)] = ex
        return ExchangeList(latest.values())

    def runs(self) -> list[Any]:
        """The test's runs (each a :class:`~pytest_resilience.Run`), in the order they ended."""
        return [e.run for e in self if isinstance(e, RunEvent)]

    def effects(self, service: str | None = None) -> list[Effect]:
        """Side effects applied, in order."""
        return [e for e in self if isinstance(e, Effect) and service in (None, e.service)]

    def connections(self, service: str | None = None) -> ConnectionList:
        """Connections joined from their events, in the order they opened."""
        joined: dict[tuple[str, int], Connection] = {}
        for event in self:
            if not isinstance(event, ConnectionEvent):
                continue
            if service is not None and event.service != service:
                continue
            key = (event.service, event.connection)
            if event.kind == "opened":
                joined[key] = Connection(
                    event.service, event.connection, event.at, None, "open", "", 0, 0
                )
            elif key in joined:
                first = joined[key]
                joined[key] = Connection(
                    first.service,
                    first.id,
                    first.opened_at,
                    event.at,
                    event.kind,
                    event.by,
                    event.bytes_up,
                    event.bytes_down,
                )
        return ConnectionList(joined.values())


class Timeline:
    """Events of one test, appended from any thread, read as snapshots."""

    def __init__(self, started_at: float | None = None) -> None:
        self.started_at = CLOCK.now() if started_at is None else started_at
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._dispatcher: EventDispatcher | None = None

    def add(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if self._dispatcher is not None:
                # Under the lock, so subscribers see events in the timeline's order.
                self._dispatcher.put(event)

    def restart(self) -> None:
        """Forget every event and start the clock again now (explore's next example);
        subscribers have seen the events already."""
        with self._lock:
            self._events = []
            self.started_at = CLOCK.now()

    def subscribe(self, listener: Callable[[object], None]) -> None:
        """Call ``listener(event)`` for every event added from now on.

        Listeners run on a thread of their own, one event at a time, in order; what
        one raises is re-raised by :meth:`flush` (the fixture's teardown calls it).
        """
        from .dispatch import EventDispatcher

        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = EventDispatcher()
            self._dispatcher.listeners.append(listener)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until subscribers have seen every event so far; re-raise what one raised."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver the events left to subscribers and stop their thread (end of test)."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.close(timeout)

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def snapshot(self) -> Events:
        """The events so far, frozen, with the questions below."""
        with self._lock:
            return Events(self._events)

    def faults(self, service: str | None = None) -> list[FaultEvent]:
        return self.snapshot().faults(service)

    def verdicts(self) -> list[VerdictEvent]:
        return self.snapshot().verdicts()

    def intents(self, service: str | None = None) -> list[IntentEvent]:
        return self.snapshot().intents(service)

    def connections(self, service: str | None = None) -> ConnectionList:
        """Connections joined from their events, in the order they opened."""
        return self.snapshot().connections(service)

    def relative_ms(self, at: float) -> float:
        return (at - self.started_at) * 1000.0

    def render(self, events: Iterable[Event] | None = None, limit: int = 40) -> str:
        """A compact table of events (t+ms from the start of the test)."""
        rows = list(self.events if events is None else events)
        lines = [f"{'t+ms':>9}  {'service':<14} event"]
        shown = rows if len(rows) <= limit else rows[: limit // 2] + rows[-limit // 2 :]
        for i, event in enumerate(shown):
            if len(rows) > limit and i == limit // 2:
                lines.append(f"{'...':>9}  ({len(rows) - limit} more)")
            lines.append(
                f"{self.relative_ms(event.at):9.1f}  {event.service:<14} {_describe(event)}"
            )
        return "\n".join(lines)


def _describe(event: Event) -> str:
    if isinstance(event, RunEvent):
        calls = event.run.calls
        return f"run ended: {sum(c.ok for c in calls)} of {len(calls)} calls answered"
    if isinstance(event, ExchangeEvent):
        ex = event.exchange
        answer = "" if ex.status is None else f" -> {ex.status}"
        return f"{ex.method} {ex.path} {event.step}{answer}"
    if isinstance(event, Effect):
        key = f" (key {event.idempotency_key})" if event.idempotency_key else ""
        return f"effect {event.method} {event.path} applied{key}"
    if isinstance(event, IntentEvent):
        what = "plans to wait" if event.kind == "wait" else "breaker now"
        return f"{event.source} {what} {event.value}"
    if isinstance(event, VerdictEvent):
        held = "held" if event.passed else f"broke: {event.message}"
        return f"verdict {event.name} {held}"
    if isinstance(event, FaultEvent):
        return f"fault #{event.fault} {event.kind} {event.action} {event.detail}".rstrip()
    by = f" by {event.by}" if event.by else ""
    return (
        f"connection #{event.connection} {event.kind}{by} "
        f"(up {event.bytes_up} B, down {event.bytes_down} B)"
    )
