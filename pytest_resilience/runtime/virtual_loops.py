"""asyncio on virtual time: the event loop of a participant thread waits in its selector
as a virtual wait, so that its timers (``asyncio.sleep``, ``call_later``, timeouts) fire
at a jump of the clock instead of after real seconds.

The loop already reads the clock through ``time.monotonic``, which the block moves.
What it lacks is a way to tell the scheduler that it waits.  When the loop is about to
block in its selector until its next timer, the patched ``select``:

- returns at once what I/O is ready (a zero-timeout poll), as the loop would;
- waits in real time, as a thread blocked in a socket read does, while the loop has
  something on its way (:func:`_busy`): a client socket transport with an HTTP/1.1
  request whose answer has not all come (:class:`~.framing.Framing`, from its bytes;
  another protocol's, one that sent bytes since it last received any; over TLS, until it
  closes or sends again, since TLS records arrive that are no answer), a write or a connect not yet
  done, work in an executor, or a fault that holds bytes in transit (a latency, slicer
  or bandwidth fault: an answer in pieces would look complete at its first piece).  A
  jump then could fire the client's own timeout while the answer is still in real
  transit.  A transport to an HTTP stub whose bytes are all at rest (its answer held by
  a ``delay`` timer: :mod:`.ledger`) is not on its way; while one to a stub is, the
  loop waits at most :data:`~.virtual_sockets.LOOK` before it looks again;
- otherwise waits through :meth:`~.scheduler.Scheduler.wait_io`: in the kernel, woken
  by its I/O, by its timeout in real time, or by a jump to its deadline (through the
  loop's self-pipe, as ``call_soon_threadsafe`` wakes it).  Before each jump the
  scheduler polls the selector again; I/O ready then means the loop is about to run.

The plugin's own loops (:class:`~.loop._RealTimeLoop`, and any loop on a machinery
thread) keep real time.  uvloop's loop waits in C, out of reach: made on a participant
thread, it is refused in one sentence (:data:`UVLOOP`).  Sockets used through
``loop.sock_*`` rather than a transport are not watched for answers in flight, nor is an
answer that a server outside the plugin sends in pieces (the first piece ends the
wait's real time).  A loop that outlives the block keeps the timers it set during it on
the jumped clock: they fire late by the time jumped.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import asyncio.selector_events
import asyncio.sslproto
import importlib
import importlib.util
import math
import selectors
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..clock import CLOCK, is_machinery
from ..errors import ConfigurationError
from . import virtual_sockets
from .framing import Framing
from .loop import _RealTimeLoop
from .scheduler import Scheduler

_IN_FLIGHT: weakref.WeakSet[Any] = weakref.WeakSet()
"""Client socket transports of participants' loops that sent bytes since they last
received any (over TLS: since they last sent, until they close)."""
_FRAMINGS: weakref.WeakKeyDictionary[Any, Framing] = weakref.WeakKeyDictionary()
"""Per client transport: the HTTP/1.1 framing of its bytes (:func:`_framing`)."""
_EXECUTING: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
"""Per loop: its ``run_in_executor`` calls not done yet."""
_LOCK = threading.Lock()
"""Guards these: every participant's loop changes them."""

Live = Callable[[], Scheduler | None]
Make = Callable[[Any], Any]
_TRANSPORT = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]


def patches(live: Live) -> list[tuple[object, str, Make]]:
    """(owner, attribute, make replacement from the real one) for a block whose open
    scheduler ``live()`` gives (None when none is, or it is suspended)."""
    with _LOCK:
        _IN_FLIGHT.clear()
        _FRAMINGS.clear()
        _EXECUTING.clear()
    found = [
        (selectors.DefaultSelector, "select", lambda real: _select(real, live)),
        (_TRANSPORT, "write", lambda real: _sent(real, live)),
        (_TRANSPORT, "_read_ready__data_received", _received),
        (_TRANSPORT, "_read_ready__get_buffer", _received),
        (_TRANSPORT, "_call_connection_lost", _lost),
        (asyncio.base_events.BaseEventLoop, "run_in_executor", _executing),
    ]
    if "writelines" in vars(_TRANSPORT):  # Python 3.12+: no longer through write
        found.append((_TRANSPORT, "writelines", lambda real: _sent(real, live)))
    uvloop = _uvloop()
    if uvloop is not None:
        found.append((uvloop.Loop, "__init__", lambda real: _refused(real, live)))
    return found


UVLOOP = (
    "uvloop's event loop waits in C, where virtual time cannot reach its timers (each would "
    "take its real time); run this test on asyncio's own loop (anyio: use_uvloop=False; "
    "pytest-asyncio: the default event_loop_policy), or take it off virtual time."
)


def _uvloop() -> Any:
    """uvloop, imported if installed (anyio imports it only as its loop starts, after the
    block's patches), so that its loop is refused in one sentence; else None."""
    if importlib.util.find_spec("uvloop") is None:
        return None
    module = importlib.import_module("uvloop")
    return module if isinstance(getattr(module, "Loop", None), type) else None


def _refused(real: Callable[..., Any], live: Live) -> Callable[..., Any]:
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        scheduler = live()
        if scheduler is not None and scheduler.knows(threading.current_thread()):
            raise ConfigurationError(UVLOOP)
        real(self, *args, **kwargs)

    return init


def _busy(loop: asyncio.AbstractEventLoop, selector: selectors.BaseSelector) -> float | None:
    """Whether ``loop`` has something on its way that real time brings (module doc): None
    if not; else the most real seconds to wait before looking again (a transport to an
    HTTP stub whose bytes may come to rest, :mod:`.virtual_sockets`), or infinity."""
    if CLOCK.transit:
        return math.inf
    # Without the lock: the scheduler asks holding its own, which a garbage collection
    # under this module's lock may want too (a finalizer notifying a condition).  The
    # weak set's own set is copied whole, under the GIL.
    if _EXECUTING.get(loop, 0):
        return math.inf
    refs = list(_IN_FLIGHT.data)  # type: ignore[attr-defined]
    flying = [t for t in (ref() for ref in refs) if t is not None and t._loop is loop]
    if any(key.events & selectors.EVENT_WRITE for key in selector.get_map().values()):
        return math.inf
    if any(virtual_sockets.counts_of(t._sock) is None for t in flying):
        return math.inf
    if not all(virtual_sockets.at_rest(t._sock) for t in flying):
        return virtual_sockets.LOOK
    return None


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
        if ready:
            return ready
        busy = _busy(loop, self)
        if busy is not None:
            return real(self, timeout if busy == math.inf else min(timeout or busy, busy))
        deadline = None if timeout is None else CLOCK.now() + timeout
        waited, events = scheduler.wait_io(
            deadline,
            lambda left: real(self, left),
            lambda: bool(real(self, 0)) or _busy(loop, self) is not None,
            loop._write_to_self,  # type: ignore[attr-defined]
        )
        return events if waited else real(self, timeout)

    return select


def _sent(real: Callable[..., None], live: Live) -> Callable[..., None]:
    def write(self: Any, data: Any) -> None:
        real(self, data)
        if data and self._server is None and live() is not None and not is_machinery():
            # A transport made before the block reads through the real method it bound
            # then; bound again, its reads clear it.
            buffered = isinstance(self._protocol, asyncio.BufferedProtocol)
            name = "_read_ready__get_buffer" if buffered else "_read_ready__data_received"
            if getattr(self._read_ready_cb, "__func__", None) is not getattr(_TRANSPORT, name):
                self._read_ready_cb = getattr(self, name)
            framing = _framing(self)
            if framing is not None:
                framing.sent(_joined(data))
            with _LOCK:
                _IN_FLIGHT.add(self)

    return write


def _joined(data: Any) -> bytes:
    """What ``write`` (bytes-like) or ``writelines`` (an iterable of them) sent."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    return b"".join(bytes(piece) for piece in data)


def _framing(transport: Any) -> Framing | None:
    """The HTTP/1.1 framing of ``transport``'s bytes in this block, made at its first
    write in it (a kept-alive connection begins a request there); None over TLS.  The
    answers' bytes reach it through the protocol's ``data_received`` (or, buffered,
    ``buffer_updated``), wrapped once for the protocol's life: the wrappers feed the
    framing of the block open then, if any."""
    with _LOCK:
        framing = _FRAMINGS.get(transport)
    if framing is not None or isinstance(transport._protocol, asyncio.sslproto.SSLProtocol):
        return framing
    framing = Framing()
    protocol: Any = transport._protocol
    try:
        if not getattr(protocol, "_resilience_framed", False):
            if isinstance(transport._protocol, asyncio.BufferedProtocol):
                buffer: list[Any] = [None]
                protocol.get_buffer = _keeping(protocol.get_buffer, buffer)
                protocol.buffer_updated = _counting(protocol.buffer_updated, buffer, transport)
            else:
                protocol.data_received = _reading(protocol.data_received, transport)
            protocol.eof_received = _ending(protocol.eof_received, transport)
            protocol._resilience_framed = True
    except (AttributeError, TypeError):  # a protocol with slots, or in C
        framing.opaque = True
    with _LOCK:
        _FRAMINGS[transport] = framing
    return framing


def _answered(transport: Any, data: bytes) -> None:
    with _LOCK:
        framing = _FRAMINGS.get(transport)
    if framing is None:
        return  # outside a block, or before the transport wrote in this one
    framing.received(data)
    if framing.opaque or not framing.waiting():  # opaque: a read ends the flight, as before
        _landed(transport)


def _landed(transport: Any) -> None:
    """``transport``'s answer has come: it is no longer in flight."""
    with _LOCK:
        _IN_FLIGHT.discard(transport)


def _reading(real: Callable[[bytes], Any], transport: Any) -> Callable[..., Any]:
    def data_received(data: bytes) -> Any:
        if data:  # aiohttp calls it with b"" itself to resume its parser: no end of stream
            _answered(transport, data)
        return real(data)

    return data_received


def _keeping(real: Callable[[int], Any], buffer: list[Any]) -> Callable[..., Any]:
    def get_buffer(sizehint: int) -> Any:
        buffer[0] = real(sizehint)
        return buffer[0]

    return get_buffer


def _counting(real: Callable[[int], Any], buffer: list[Any], transport: Any) -> Callable[..., Any]:
    def buffer_updated(nbytes: int) -> Any:
        if nbytes:
            _answered(transport, bytes(memoryview(buffer[0])[:nbytes]))
        return real(nbytes)

    return buffer_updated


def _ending(real: Callable[[], Any], transport: Any) -> Callable[..., Any]:
    def eof_received() -> Any:
        _answered(transport, b"")  # an answer delimited by the close ends here
        return real()

    return eof_received


def _received(real: Callable[..., Any]) -> Callable[..., Any]:
    def received(self: Any) -> Any:
        with _LOCK:
            framing = _FRAMINGS.get(self)
        tls = isinstance(self._protocol, asyncio.sslproto.SSLProtocol)
        if not tls and (framing is None or framing.opaque):  # else: its answer's end
            _landed(self)
        return real(self)

    return received


def _lost(real: Callable[..., Any]) -> Callable[..., Any]:
    def lost(self: Any, exc: BaseException | None) -> Any:
        _landed(self)
        return real(self, exc)

    return lost


def _executing(real: Callable[..., Any]) -> Callable[..., Any]:
    def run_in_executor(self: Any, executor: Any, func: Any, *args: Any) -> Any:
        future = real(self, executor, func, *args)
        with _LOCK:
            _EXECUTING[self] = _EXECUTING.get(self, 0) + 1

        def done(_: Any) -> None:
            with _LOCK:
                _EXECUTING[self] = _EXECUTING.get(self, 1) - 1

        future.add_done_callback(done)
        return future

    return run_in_executor
