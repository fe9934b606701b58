"""The engine's express lane: one thread that relays the links no toxic touches.

A link whose proxy has no toxic when it connects is handed here: its two sockets are
read and written by this thread's own ``epoll`` loop, a few bytecodes per chunk,
instead of by the event loop's transports and protocol callbacks.  That is what
brings the engine's added round trip to that of a minimal compiled relay
(``benchmarks/``).  A toxic added to the proxy takes the link back to the event loop
(:meth:`Lane.release`): the bytes read but not yet written go with it, and the toxic
applies to everything after them.

Semantics are the event loop's: a close or a read error on either side closes the
whole link once the bytes in flight are written, as Toxiproxy does (it carries no
half-close); the proxy's byte counters move as bytes are read and written.  The
event loop learns that a link ended through ``call_soon_threadsafe``, and asks this
thread for anything else through :meth:`Lane.call`, which waits for the answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..clock import machinery_thread
from ..runtime.sockets import reset_on_close

if TYPE_CHECKING:
    from .link import Link

T = TypeVar("T")
log = logging.getLogger(__name__)

CHUNK = 1 << 16
"""Bytes read at most per readiness (what Go's io.Copy reads at a time is 32 KiB)."""
_IN, _OUT = select.EPOLLIN, select.EPOLLOUT
_GONE = select.EPOLLHUP | select.EPOLLERR


class _Way:
    """One direction of an express link: reads ``src``, writes ``dst``."""

    __slots__ = ("counters", "dst", "eof", "pending", "src")

    def __init__(self, src: socket.socket, dst: socket.socket, counters: list[int]) -> None:
        self.src = src
        self.dst = dst
        self.pending = b""
        """Bytes read from ``src`` that ``dst`` has not taken yet (``src`` is not read
        meanwhile: the event loop's flow control, without a buffer to fill)."""
        self.eof = False
        self.counters = counters


class _Express:
    __slots__ = ("client", "closing", "down", "link", "up", "upstream")

    def __init__(self, link: Link, client: socket.socket, upstream: socket.socket) -> None:
        self.link = link
        self.client = client
        self.upstream = upstream
        counters = link.proxy.counters
        self.up = _Way(client, upstream, counters["upstream"])
        self.down = _Way(upstream, client, counters["downstream"])
        self.closing = False


_Side = tuple[_Express, _Way, _Way]
"""One socket of an express link: the link, the way that reads the socket, and the way
that writes to it."""

Released = tuple[socket.socket, socket.socket, bytes, bytes, bool, bool]
"""What a link takes back to the event loop: its client and upstream sockets, the bytes
owed to the upstream and to the client, and whether each side had sent its EOF."""


class Lane:
    """The thread, its ``epoll``, and the links it relays."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, _IN)
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._by_fd: dict[int, _Side] = {}
        self._by_link: dict[Link, _Express] = {}
        self._parked: set[int] = set()
        """Sockets taken out of the epoll while they hung up with nothing to read yet."""
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)
        self._running = True
        self._thread = machinery_thread(self._run, "pytest-resilience-engine-lane")
        self._thread.start()

    @property
    def native_id(self) -> int | None:
        """The thread's id in the operating system (for its CPU time in /proc)."""
        return self._thread.native_id

    # -- from the event loop ----------------------------------------------------------

    def adopt(self, link: Link, client: socket.socket, upstream: socket.socket) -> None:
        """Relay ``link``'s two connected sockets from now on (returns at once)."""
        if not self._thread.is_alive():  # the engine is stopping: close, as its links are
            client.close()
            upstream.close()
            link.ended()
            return
        for sock in (client, upstream):
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._submit(lambda: self._add(_Express(link, client, upstream)))

    def release(self, links: Iterable[Link]) -> dict[Link, Released]:
        """Stop relaying ``links``; what each takes back to the event loop (one that has
        ended, or is closing, is left to finish here)."""
        wanted = list(links)
        if not wanted or not self._thread.is_alive():  # stopped: every link was closed
            return {}

        def release() -> dict[Link, Released]:
            return {link: r for link in wanted if (r := self._release(link)) is not None}

        return self.call(release)

    def close(self, links: Iterable[Link], *, reset: bool = False) -> None:
        """Close ``links``: with FIN once the bytes in flight are written, or with RST."""
        wanted = list(links)

        def close() -> None:
            for link in wanted:
                self._close(link, reset)

        if wanted and self._thread.is_alive():
            self.call(close)

    def stop(self) -> None:
        """Close every link at once and end the thread (on the event loop's thread, as
        every other call from outside the lane)."""
        if self._thread.is_alive():
            self.call(self._stop)
            self._thread.join(5)
        else:  # it died of a bug of ours: close what it held
            for express in list(self._by_link.values()):
                express.client.close()
                express.upstream.close()
            self._by_link.clear()
        if not self._epoll.closed:
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lane's thread and return what it returned."""
        if threading.current_thread() is self._thread:
            return fn()
        done = threading.Event()
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, fn()))
            except BaseException as exc:
                outcome.append((False, exc))
            finally:
                done.set()

        self._submit(run)
        while not done.wait(0.5):
            if not self._thread.is_alive():
                raise RuntimeError("the engine's express lane has stopped (see its log)")
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _submit(self, command: Callable[[], None]) -> None:
        self._commands.append(command)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        poll = self._epoll.poll
        by_fd = self._by_fd
        pump = self._pump
        wake = self._wake_r
        while self._running:
            for fd, events in poll():
                side = by_fd.get(fd)
                if side is None:
                    if fd == wake:
                        self._commanded()
                    continue  # else it ended earlier in this batch
                express, way, _ = side
                try:
                    # The common turn, bytes to read and nothing in the way, goes straight
                    # to the pump (as _ready would send it); every other through _ready.
                    if events == _IN and not (way.pending or way.eof or express.closing):
                        pump(express, way)
                    else:
                        self._ready(fd, events, side)
                except Exception:  # a bug of ours: this link ends, the others go on
                    log.exception("the engine's express lane failed on link %d", express.link.id)
                    self._drop(express)

    def _commanded(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        while self._commands:
            try:
                self._commands.popleft()()
            except Exception:  # a bug of ours: the lane goes on
                log.exception("the engine's express lane failed a command")

    def _drop(self, express: _Express) -> None:
        """End a link at once, whatever stands in the way."""
        express.up.pending = express.down.pending = b""
        try:
            self._end(express)
        except Exception:
            log.exception("the engine's express lane could not end link %d", express.link.id)
            for sock in (express.client, express.upstream):
                with contextlib.suppress(OSError):
                    self._unregister(sock)
                sock.close()
            self._by_link.pop(express.link, None)

    def _ready(self, fd: int, events: int, side: _Side) -> None:
        """Write what waits for ``fd`` if it has room; read it if it has bytes."""
        express, way, back = side
        if events & (_OUT | _GONE):
            self._flush(express, back)
        if not events & (_IN | _GONE) or fd not in self._by_fd or express.closing:
            return
        if not way.pending and not way.eof:
            self._pump(express, way)
        elif events & _GONE and not back.pending:
            # The peer hung up while its bytes wait for room on the other side: epoll
            # would report it on every turn, so stop watching until they are written
            # (then the hang-up reads as an EOF).
            self._epoll.unregister(fd)
            self._parked.add(fd)

    def _add(self, express: _Express) -> None:
        if express.link.closed:
            express.client.close()
            express.upstream.close()
            return
        self._by_link[express.link] = express
        for sock, way, back in (
            (express.client, express.up, express.down),
            (express.upstream, express.down, express.up),
        ):
            self._by_fd[sock.fileno()] = (express, way, back)
            self._epoll.register(sock.fileno(), _IN)

    def _pump(self, express: _Express, way: _Way) -> None:
        try:
            n = way.src.recv_into(self._buffer)
        except BlockingIOError:
            return
        except OSError:
            n = 0  # Toxiproxy takes a read error for a close: what is in flight still goes
        if n == 0:
            way.eof = True
            self._end(express)
            return
        way.counters[0] += n
        try:
            sent = way.dst.send(self._view[:n])
        except BlockingIOError:
            sent = 0
        except OSError:
            self._end(express)
            return
        way.counters[1] += sent
        if sent < n:
            way.pending = bytes(self._view[sent:n])
            self._interest(express)

    def _flush(self, express: _Express, way: _Way) -> None:
        if not way.pending:
            return
        try:
            sent = way.dst.send(way.pending)
        except BlockingIOError:
            return
        except OSError:
            way.pending = b""
            self._end(express)
            return
        way.counters[1] += sent
        way.pending = way.pending[sent:]
        if express.closing:
            self._end(express)
        elif not way.pending:
            self._interest(express)

    def _interest(self, express: _Express) -> None:
        """Read a side while nothing read from it waits; watch for room where bytes wait."""
        for sock, out, into in (
            (express.client, express.up, express.down),
            (express.upstream, express.down, express.up),
        ):
            fd = sock.fileno()
            if fd < 0:
                continue  # closed
            mask = 0 if express.closing or out.pending or out.eof else _IN
            if into.pending:
                mask |= _OUT
            if fd in self._parked:
                if mask:
                    self._parked.discard(fd)
                    self._epoll.register(fd, mask)
            else:
                self._epoll.modify(fd, mask)

    def _end(self, express: _Express) -> None:
        """Stop reading; close each socket once the bytes owed to it are written."""
        express.closing = True
        owed = False
        for sock, into in ((express.client, express.down), (express.upstream, express.up)):
            if into.pending or sock.fileno() < 0:
                owed = owed or bool(into.pending)
                continue
            self._unregister(sock)
            sock.close()
        if owed:
            self._interest(express)
            return
        self._by_link.pop(express.link, None)
        self._loop.call_soon_threadsafe(express.link.ended)

    def _unregister(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0 or self._by_fd.pop(fd, None) is None:
            return
        if fd in self._parked:
            self._parked.discard(fd)
        else:
            self._epoll.unregister(fd)

    def _release(self, link: Link) -> Released | None:
        express = self._by_link.get(link)
        if express is None or express.closing:
            return None
        del self._by_link[link]
        for sock in (express.client, express.upstream):
            self._unregister(sock)
        return (
            express.client,
            express.upstream,
            express.up.pending,
            express.down.pending,
            express.up.eof,
            express.down.eof,
        )

    def _close(self, link: Link, reset: bool) -> None:
        express = self._by_link.get(link)
        if express is None:
            return
        if reset:
            reset_on_close(express.client)
            reset_on_close(express.upstream)
            express.up.pending = express.down.pending = b""
        self._end(express)

    def _stop(self) -> None:
        for express in list(self._by_link.values()):
            self._drop(express)
        self._running = False
