"""asyncio on virtual time: the event loop of a participant thread waits in its selector
as a virtual wait, so that its timers (``asyncio.sleep``, ``call_later``, timeouts) fire
at a jump of the clock instead of after real seconds.

The loop already reads the clock through ``time.monotonic``, which the block moves.
What it lacks is a way to tell the scheduler that it waits.  When the loop is about to
block in its selector until its next timer, the patched ``select``:

- returns at once what I/O is ready (a zero-timeout poll), as the loop would;
- waits in real time, as a thread blocked in a socket read does, while one of the loop's
  socket transports has sent bytes since it last received any (:data:`_IN_FLIGHT`: a
  request whose answer is on its way).  A jump then could fire the client's own read
  timeout while the answer is still in real transit;
- otherwise waits through :meth:`~.scheduler.Scheduler.wait_io`: in the kernel, woken
  by its I/O, by its timeout in real time, or by a jump to its deadline (through the
  loop's self-pipe, as ``call_soon_threadsafe`` wakes it).  Before each jump the
  scheduler polls the selector again; I/O ready then means the loop is about to run.

The plugin's own loops (:class:`~.loop._RealTimeLoop`, and any loop on a machinery
thread) keep real time.  Loops that do not wait through a ``selectors`` selector (uvloop)
keep real time too: their waits are in C, as a socket read's is.  Sockets used through
``loop.sock_*`` rather than a transport are not watched for answers in flight.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.selector_events
import selectors
import weakref
from collections.abc import Callable
from typing import Any

from ..clock import CLOCK, is_machinery
from .loop import _RealTimeLoop
from .scheduler import Scheduler

_IN_FLIGHT: weakref.WeakSet[Any] = weakref.WeakSet()
"""Socket transports of participants' loops that sent bytes since they last received."""

Live = Callable[[], Scheduler | None]
Make = Callable[[Any], Any]


def patches(live: Live) -> list[tuple[object, str, Make]]:
    """(owner, attribute, make replacement from the real one) for a block whose open
    scheduler ``live()`` gives (None when none is, or it is suspended)."""
    _IN_FLIGHT.clear()
    transport = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    return [
        (selectors.DefaultSelector, "select", lambda real: _select(real, live)),
        (transport, "write", lambda real: _sent(real, live)),
        (transport, "_read_ready__data_received", _received),
        (transport, "_read_ready__get_buffer", _received),
        (transport, "_call_connection_lost", _received),
    ]


def _in_flight(loop: asyncio.AbstractEventLoop) -> bool:
    return any(t._loop is loop for t in list(_IN_FLIGHT))


def _select(real: Callable[..., list[Any]], live: Live) -> Callable[..., list[Any]]:
    def select(self: selectors.BaseSelector, timeout: float | None = None) -> list[Any]:
        if timeout is not None and timeout <= 0:
            return real(self, timeout)
        scheduler = live()
        if scheduler is None or is_machinery():
            return real(self, timeout)
        loop = asyncio.events._get_running_loop()
        if (
            loop is None
            or getattr(loop, "_selector", None) is not self
            or isinstance(loop, _RealTimeLoop)
        ):
            return real(self, timeout)
        ready = real(self, 0)
        if ready or _in_flight(loop):
            return ready or real(self, timeout)
        deadline = None if timeout is None else CLOCK.now() + timeout
        waited, events = scheduler.wait_io(
            deadline,
            lambda left: real(self, left),
            lambda: bool(real(self, 0)),
            loop._write_to_self,  # type: ignore[attr-defined]
        )
        return events if waited else real(self, timeout)

    return select


def _sent(real: Callable[..., None], live: Live) -> Callable[..., None]:
    def write(self: Any, data: Any) -> None:
        real(self, data)
        if data and live() is not None and not is_machinery():
            _IN_FLIGHT.add(self)

    return write


def _received(real: Callable[..., Any]) -> Callable[..., Any]:
    def received(self: Any, *args: Any) -> Any:
        _IN_FLIGHT.discard(self)
        return real(self, *args)

    return received
