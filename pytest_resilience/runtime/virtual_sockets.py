"""Socket reads on virtual time: a participant reading a socket connected to an HTTP
stub service waits on the virtual clock while its answer is held by a timer of the
plugin's (an HTTP ``delay``), so that a minute's delay, or the client's own read timeout
against it, ends at once.

During a block, ``socket.socket`` counts what a socket connected to such a service
(``connect`` to its address in the block, not over TLS) sends and reads
(:class:`~.ledger.SocketCounts`).  A blocking ``recv`` or ``recv_into`` on one, by a
participant, first waits for the socket to be readable:

- while the bytes between the socket and the service's layer are at rest
  (:func:`~.ledger.at_rest`), as a virtual wait (:meth:`~.scheduler.Scheduler.wait_io`)
  until the socket's timeout on the virtual clock: the kernel wakes it when bytes come,
  a jump wakes it through a pipe, and before each jump the scheduler asks whether it
  is still at rest (an answer the timer began to make is on its way: the reader runs);
- otherwise in real time, counted as running, looking again every few milliseconds
  (:data:`LOOK`) for the moment the bytes come to rest.

When the socket's timeout comes first on the virtual clock, the read raises
``TimeoutError("timed out")``, as the socket would have.  Every other socket, and every
read by a thread that is not a participant, is the real one.  asyncio transports read
the same counts (:mod:`.virtual_loops`).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..clock import CLOCK, is_machinery
from . import ledger
from .scheduler import Scheduler

Live = Callable[[], Scheduler | None]
Make = Callable[[Any], Any]

_COUNTS: weakref.WeakKeyDictionary[socket.socket, ledger.SocketCounts] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
LOOK = 0.005
"""Real seconds between two looks at a path whose bytes are on their way."""


def patches(live: Live) -> list[tuple[object, str, Make]]:
    """(owner, attribute, make replacement from the real one) for a block whose open
    scheduler ``live()`` gives (None when none is, or it is suspended)."""
    with _LOCK:
        _COUNTS.clear()
    ledger.forget_counted()
    return [
        (socket.socket, "connect", lambda real: _connect(real, live)),
        (socket.socket, "send", lambda real: _send(real, live)),
        (socket.socket, "sendall", lambda real: _sendall(real, live)),
        (socket.socket, "recv", lambda real: _recv(real, live)),
        (socket.socket, "recv_into", lambda real: _recv_into(real, live)),
    ]


def counts_of(sock: Any) -> ledger.SocketCounts | None:
    """What ``sock`` sent and read in the block, if it is counted.  Read without the lock:
    the scheduler asks holding its own, which a garbage collection under this module's
    lock may want too (a finalizer notifying a condition)."""
    return _COUNTS.get(sock)


def at_rest(sock: Any) -> bool:
    """Whether ``sock`` is counted and nothing is on its way to or from it."""
    counts = counts_of(sock)
    if counts is None:
        return False
    try:
        local = sock.getsockname()
    except OSError:
        return False
    return ledger.at_rest(counts, local)


def _connect(real: Callable[..., Any], live: Live) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        scheduler = live()
        if scheduler is None or isinstance(self, ssl.SSLSocket) or is_machinery():
            return real(self, address)
        port = ledger.stub_port(address)
        if port is None or not scheduler.knows(threading.current_thread()):
            return real(self, address)  # a thread outside the block reads in real time
        with _LOCK:
            _COUNTS[self] = ledger.SocketCounts(port)
        try:
            return real(self, address)
        finally:  # a connect in progress (asyncio's) has its address already
            with contextlib.suppress(OSError):
                ledger.counted(port, self.getsockname())

    return connect


def _send(real: Callable[..., int], live: Live) -> Callable[..., int]:
    def send(self: socket.socket, data: Any, *flags: int) -> int:
        counts = _mine(self, live)
        sent = real(self, data, *flags)
        if counts is not None:
            counts.sent += sent
        return sent

    return send


def _sendall(real: Callable[..., None], live: Live) -> Callable[..., None]:
    def sendall(self: socket.socket, data: Any, *flags: int) -> None:
        counts = _mine(self, live)
        if counts is None:
            return real(self, data, *flags)
        try:
            real(self, data, *flags)
        except BaseException:
            counts.unknown = True  # some of it may have gone
            raise
        counts.sent += memoryview(data).nbytes

    return sendall


def _recv(real: Callable[..., bytes], live: Live) -> Callable[..., bytes]:
    def recv(self: socket.socket, bufsize: int, flags: int = 0) -> bytes:
        counts = _counted(self, flags, live)
        data = real(self, bufsize, flags)
        if counts is not None:
            counts.read += len(data)
        return data

    return recv


def _recv_into(real: Callable[..., int], live: Live) -> Callable[..., int]:
    def recv_into(self: socket.socket, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        counts = _counted(self, flags, live)
        got = real(self, buffer, nbytes, flags)
        if counts is not None:
            counts.read += got
        return got

    return recv_into


def _counted(sock: socket.socket, flags: int, live: Live) -> ledger.SocketCounts | None:
    """The counts a read of ``sock`` with ``flags`` adds to, after waiting for it to be
    readable (a peek takes nothing, and waits for nothing)."""
    counts = _mine(sock, live)
    if counts is None or flags & socket.MSG_PEEK:
        return None
    if not flags & socket.MSG_DONTWAIT:
        _readable(sock, live)
    return counts


def _mine(sock: socket.socket, live: Live) -> ledger.SocketCounts | None:
    """``sock``'s counts, if it is counted; a thread outside the block that uses it (a
    pool shared with one) makes it uncounted for good: that thread reads in real time,
    and an answer a timer holds for it must not come at a jump."""
    counts = _COUNTS.get(sock)
    if counts is None or counts.unknown or is_machinery():
        return counts
    scheduler = live()
    if scheduler is None or not scheduler.knows(threading.current_thread()):
        counts.unknown = True
        with contextlib.suppress(OSError):
            ledger.uncounted(counts.port, sock.getsockname())
    return counts


def _readable(sock: socket.socket, live: Live) -> None:
    """Return once ``sock`` has something to read (or the block ended: the read is the
    real one); raise ``TimeoutError`` when its timeout comes first on the virtual clock."""
    timeout = sock.gettimeout()
    scheduler = live()
    if scheduler is None or is_machinery() or timeout == 0 or _ready(sock):
        return
    if not scheduler.knows(threading.current_thread()):
        return  # no participant: its read is the real one
    deadline = None if timeout is None else CLOCK.now() + timeout
    wake_r, wake_w = os.pipe()
    try:
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        while not _ready(sock):
            if deadline is not None and CLOCK.now() >= deadline:
                raise TimeoutError("timed out")
            if at_rest(sock):
                waited, _ = scheduler.wait_io(
                    deadline,
                    lambda left: _wait(sock, wake_r, left),
                    lambda: _ready(sock) or not at_rest(sock),
                    lambda: _poke(wake_w),
                )
                if not waited:
                    return  # the block ended, or this thread is no participant
            else:
                left = LOOK if deadline is None else min(LOOK, deadline - CLOCK.now())
                _wait(sock, wake_r, max(left, 0.0))
            _drain(wake_r)
    finally:
        os.close(wake_r)
        os.close(wake_w)


def _ready(sock: socket.socket) -> bool:
    """Whether a read of ``sock`` would not block (bytes, an end, or an error to raise)."""
    try:
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        return bool(poll.poll(0))
    except (OSError, ValueError):  # closed: the real read raises what it should
        return True


def _wait(sock: socket.socket, wake: int, timeout: float | None) -> None:
    """Until ``sock`` is readable, ``wake`` is written to, or ``timeout`` real seconds."""
    with contextlib.suppress(OSError, ValueError):
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        poll.register(wake, select.POLLIN)
        poll.poll(None if timeout is None else max(timeout * 1000.0, 0.0))


def _poke(wake: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.write(wake, b"\0")


def _drain(wake: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.read(wake, 64)
