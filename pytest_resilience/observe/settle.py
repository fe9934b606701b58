"""Waiting for a test's records to settle, woken by the observers instead of polling;
the recorder of HTTP exchanges, which knows when their delivery has.

Whether an answer reached the client is known a moment after the HTTP layer sent it:
when the tap in front of Toxiproxy has handed its last byte to the client's socket,
or the connection ended first.  The observers (the tap, the HTTP layer) call
:meth:`Settling.changed` as that happens; a reader calls :meth:`Settling.until` with
what to read and when it is settled, and wakes on each change until it is, or until
its deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from ..clock import CLOCK, real_monotonic
from ..http.records import Effect, Exchange, ExchangeEvent, ExchangeStep
from .join import Trace, pair, reached_client

if TYPE_CHECKING:
    from .timeline import Events, Timeline

T = TypeVar("T")

LONGEST_SETTLE = 3600.0
"""The longest wait for records to settle a caller may ask, in seconds: far beyond what
the observers take, and below what ``Condition.wait`` refuses (``threading.TIMEOUT_MAX``)."""


class Settling:
    """A change counter the observers bump and readers wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._changes = 0

    def changed(self) -> None:
        """Something a reader may wait for happened (any thread; never blocks for long)."""
        with self._cond:
            self._changes += 1
            self._cond.notify_all()

    def until(self, read: Callable[[], T], settled: Callable[[T], bool], timeout: float) -> T:
        """``read()`` again after each change until ``settled`` holds of what it gave, or
        ``timeout`` seconds (real time: how long the observers take) have passed."""
        deadline = real_monotonic() + timeout
        while True:
            with self._cond:
                seen = self._changes
            value = read()
            left = deadline - real_monotonic()
            if settled(value) or left <= 0:
                return value
            with self._cond:
                if self._changes == seen:  # else a change came while reading: read again
                    self._cond.wait(left)


Heads = Callable[[], list[tuple[int, "str | None", "float | None"]]]
"""The HTTP layer's connections: ``(id, head digest, accepted_at)`` each."""
Traces = Callable[[], list[Trace]]
"""The tap's connections (:class:`~.join.Trace`), ended or open."""


class ExchangeRecorder:
    """The one way a test's HTTP exchanges and side effects reach its timeline, and the
    one place that knows when their delivery has settled.

    The HTTP layers :meth:`record` each exchange's steps and each effect as they happen
    (on the loop thread).  An answer written whole waits here until the tap shows the
    client got its last byte or never will; :meth:`settled` learns that by joining the
    layer's connections with the tap's (:func:`~.join.pair`), puts a ``delivered`` or
    ``lost`` step on the timeline, and returns the timeline's events.
    """

    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline
        self._settling = Settling()
        self._lock = threading.Lock()
        self._sources: dict[str, tuple[Heads, Traces]] = {}
        self._awaiting: dict[str, dict[tuple[int, int], tuple[Exchange, int]]] = {}

    def watch(self, service: str, heads: Heads, traces: Traces) -> None:
        """Join ``service``'s answers with its tap through these two readers."""
        with self._lock:
            self._sources[service] = (heads, traces)
            self._awaiting.setdefault(service, {})

    def forget(self) -> None:
        """Stop waiting for the deliveries of answers so far (explore's next example: their
        connections were cut and their timeline restarted)."""
        with self._lock:
            for awaiting in self._awaiting.values():
                awaiting.clear()

    def record(self, event: ExchangeEvent | Effect, answer_end: int | None = None) -> None:
        """Put ``event`` on the timeline; an exchange whose answer was sent (``answered``,
        ``ended``) and ends at byte ``answer_end`` of its connection's outgoing stream then
        awaits its delivery (waited for by :meth:`settled` once it was written whole)."""
        with self._lock:
            self._timeline.add(event)
            if isinstance(event, ExchangeEvent) and answer_end is not None:
                ex = event.exchange
                awaiting = self._awaiting.setdefault(event.service, {})
                awaiting[(ex.connection, ex.index)] = (ex, answer_end)
        self._settling.changed()

    def changed(self) -> None:
        """A delivery may be known now (the tap calls it as bytes reach a client)."""
        self._settling.changed()

    def settled(self, services: Iterable[str], timeout: float) -> Events:
        """The timeline's events once every answer of ``services`` is known delivered or
        lost, or after ``timeout`` seconds (real time: how long the tap takes to see it);
        an answer held by a fault still in force stays undecided."""
        names = list(services)
        self._settling.until(lambda: self._learn(names), bool, timeout)
        return self._timeline.snapshot()

    def traced(self, service: str) -> dict[int, Trace]:
        """``service``'s layer connections, by id, joined with the tap's (:func:`~.join.pair`)."""
        with self._lock:
            heads, traces = self._sources.get(service, (list, list))
        return pair(heads(), traces())

    def _learn(self, services: list[str]) -> bool:
        """Record the deliveries known now; whether none of ``services`` is awaited."""
        for service in services:
            with self._lock:
                awaiting = list(self._awaiting.get(service, {}).values())
                heads, traces = self._sources.get(service, (list, list))
            if not awaiting:
                continue
            # Outside the lock: reading the tap waits for the loop, which may be recording.
            paired = pair(heads(), traces())
            for ex, end in awaiting:
                reached = reached_client(paired.get(ex.connection), end)
                if reached is None:
                    continue
                step: ExchangeStep = "delivered" if reached else "lost"
                with self._lock:
                    if self._awaiting[service].pop((ex.connection, ex.index), None) is None:
                        continue  # another reader recorded it
                    self._timeline.add(
                        ExchangeEvent(CLOCK.now(), service, step, replace(ex, delivered=reached))
                    )
        with self._lock:  # an answer whose connection failed while it was written is not waited for
            return not any(
                ex.ended_at is not None
                for s in services
                for ex, _ in self._awaiting.get(s, {}).values()
            )
