"""Marker windows: apply faults ``after`` seconds into the test body, heal them ``duration`` later.

Actions run on one timer thread per test; errors are kept and handed to the test
thread by :meth:`MarkerWindows.finish`, never lost in a log.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..clock import CLOCK, RealCondition, machinery_thread, timer_source
from ..faults.fault import Fault
from . import MarkerFault

if TYPE_CHECKING:
    from ..resilience import Resilience

_LONGEST_WAIT = 3600.0


class _Timer:
    """Runs callables at deadlines on the plugin's clock, on one thread, or on the thread
    that jumps virtual time to them (a :class:`~pytest_resilience.clock.TimerSource`)."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = RealCondition()
        self._stopped = False
        self._on_error = on_error
        self._thread: threading.Thread | None = None
        self._firing = threading.Lock()
        timer_source(self)

    def at(self, deadline: float, action: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._queue, (deadline, next(self._seq), action))
            if self._thread is None:
                self._thread = machinery_thread(self._run, "pytest-resilience-markers")
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > CLOCK.now()):
                    wait = self._queue[0][0] - CLOCK.now() if self._queue else None
                    # Capped: a far deadline must not overflow the wait and end the thread.
                    self._cond.wait(None if wait is None else min(wait, _LONGEST_WAIT))
                if self._stopped:
                    return
            self.fire_due()

    def next_deadline(self) -> float | None:
        # Without the lock: virtual time asks holding its own, and this timer's is held
        # while its thread starts.  heapq's C functions change the list whole under the GIL.
        queue = self._queue
        return None if self._stopped or not queue else queue[0][0]

    def fire_due(self) -> None:
        """Run the actions due by now, here; one thread at a time, so that a jump of
        virtual time returns only once an action the timer thread began has finished.
        Then the timer thread works out its wait again: the clock may have jumped."""
        with self._firing:
            while True:
                with self._cond:
                    if self._stopped or not self._queue or self._queue[0][0] > CLOCK.now():
                        self._cond.notify()
                        return
                    _, _, action = heapq.heappop(self._queue)
                try:
                    action()
                except BaseException as exc:
                    self._on_error(exc)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()


class MarkerWindows:
    """The fault markers of one test, applied to its services during the body."""

    def __init__(self, markers: list[MarkerFault], lookup: Callable[[str], object | None]):
        self.markers = markers
        self._lookup = lookup
        self._lock = threading.RLock()
        self._waiting: list[MarkerFault] = []
        self._applied: list[Fault] = []
        self.errors: list[BaseException] = []
        self._timer = _Timer(self._keep_error)
        self.started_at = 0.0
        self._finished = False
        self.missing: list[MarkerFault] = []
        """After :func:`opened`: the markers whose service the test never made."""

    def _keep_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def start(self) -> None:
        """Apply the ``after=0`` faults now and schedule the rest."""
        self.started_at = CLOCK.now()
        for marker in self.markers:
            if marker.after == 0:
                self._open(marker)
            else:
                self._timer.at(
                    self.started_at + marker.after, functools.partial(self._open, marker)
                )

    def _open(self, marker: MarkerFault) -> None:
        with self._lock:
            if self._finished:
                return
            service = self._lookup(marker.service)
            if service is None:
                self._waiting.append(marker)
                return
            fault: Fault = marker.apply_to(service)
            self._applied.append(fault)
        if marker.duration is not None:
            self._timer.at(self.started_at + marker.after + marker.duration, fault.heal)

    def service_created(self, service: object) -> None:
        """A service appeared during the body: open the windows that were waiting for it."""
        name = getattr(service, "name", None)
        with self._lock:
            ready = [m for m in self._waiting if m.service == name]
            self._waiting = [m for m in self._waiting if m.service != name]
        now = CLOCK.now()
        for marker in ready:
            if marker.duration is None or now < self.started_at + marker.after + marker.duration:
                self._open(marker)

    def finish(self) -> list[MarkerFault]:
        """Stop the timer and heal every marker fault; return markers naming no service."""
        with self._lock:
            self._finished = True
        self._timer.stop()
        for fault in reversed(self._applied):
            try:
                fault.heal()
            except Exception as exc:
                self._keep_error(exc)
        return [m for m in self.markers if self._lookup(m.service) is None]


def missing_service(marker: MarkerFault, existing: Iterable[str]) -> str:
    """Why ``marker`` never opened: its service was never made (``existing`` names those
    that were)."""
    names = ", ".join(repr(n) for n in existing) or "none"
    create = (
        f"resilience.http_service({marker.service!r})"
        if marker.plan is None
        else f"resilience.tcp_service({marker.service!r}, upstream=...)"
    )
    return (
        f"@pytest.mark.{marker.marker}({marker.service!r}) names a service this test never "
        f"created (services: {names}); create it with {create} in the test or a fixture."
    )


@contextlib.contextmanager
def opened(markers: Sequence[MarkerFault], res: Resilience) -> Iterator[MarkerWindows]:
    """The windows of ``markers`` open around the block (the test body, or one example of
    explore) on ``res``'s services, those made meanwhile included; healed after it.  Raises
    what a window met; ``missing`` then lists the markers whose service was never made."""
    windows = MarkerWindows(list(markers), lambda name: res.services.get(name))
    stop = res._on_service_created(windows.service_created)
    try:
        windows.start()
        yield windows
    finally:
        windows.missing = windows.finish()
        stop()
    if windows.errors:
        raise windows.errors[0]
