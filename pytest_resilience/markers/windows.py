"""Marker windows: apply faults ``after`` seconds into the test body, heal them ``duration`` later.

Actions run on one timer thread per test; errors are kept and handed to the test
thread by :meth:`MarkerWindows.finish`, never lost in a log.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..clock import CLOCK
from ..errors import ConfigurationError
from ..faults.fault import Fault
from ..runtime.timers import Timer
from . import MarkerError, MarkerFault

if TYPE_CHECKING:
    from ..resilience import Resilience


class MarkerWindows:
    """The fault markers of one test, applied to its services during the body."""

    def __init__(self, markers: list[MarkerFault], lookup: Callable[[str], object | None]):
        self.markers = markers
        self._lookup = lookup
        self._lock = threading.RLock()
        self._waiting: list[MarkerFault] = []
        self._applied: list[Fault] = []
        self.errors: list[BaseException] = []
        self._timer = Timer(self._keep_error, "pytest-resilience-markers")
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
            try:
                fault: Fault = marker.apply_to(service)
            except MarkerError:
                raise
            except ConfigurationError as exc:  # a toxic the server refused, say
                raise MarkerError(f"@pytest.mark.{marker.marker}: {exc}") from None
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
