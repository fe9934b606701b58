"""The client-side tap: a TCP relay in front of a Toxiproxy proxy.

Toxiproxy sees what the service processed; only a hop on the client's side of
it sees what reached the client (a response eaten by a downstream partition, a
reset).  The tap is that hop: the address a service hands to the code under
test is the tap's, and the tap forwards to the Toxiproxy proxy.  It records a
:class:`~pytest_resilience.observe.ConnectionEvent` when a connection opens and
when it ends, carries half-closes and resets through (a reset on one side is
passed on as a real RST on the other), and stops listening while the proxy is
disabled so that a refused connection is still refused.

Data is written transport to transport.  Nothing is buffered past the kernel's on
the client's side: reading from the proxy pauses while any byte waits for the
client's socket, and its taking the last one is what tells an answer delivered.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from ..clock import CLOCK
from ..observe.join import Trace
from ..observe.records import ConnectionEvent, Side
from ..runtime.loop import BackgroundLoop
from ..runtime.sockets import abort_with_reset
from ..runtime.wire import HEAD_LIMIT, head_digest

Recorder = Callable[[ConnectionEvent], None]


class _Link:
    """One client connection and its leg to the proxy."""

    def __init__(self, tap: Tap, client: asyncio.Transport, link_id: int) -> None:
        self.tap = tap
        self.id = link_id
        self.client = client
        self.upstream: asyncio.Transport | None = None
        self.bytes_up = 0
        self.bytes_down = 0
        self.client_eof = False
        self.upstream_eof = False
        self.ended = False
        self.head = bytearray()
        self.digest: str | None = None
        self.early = bytearray()
        """Client data read before the leg to the proxy existed (see _ClientSide)."""
        self.opened_at = CLOCK.now()
        self.ended_at: float | None = None
        self.peer: object = client.get_extra_info("peername")
        """The client socket's address: how virtual time finds its link (:mod:`~..runtime.ledger`)."""
        self.upstream_done = False
        """The proxy's side ended (a close or a reset) while the client's was open."""
        self.client_end_passed = False
        """The client's end (a close, a reset, a half-close) went on to the proxy's side."""

    def pending_up(self) -> int:
        """Bytes taken from the client and not yet handed to the proxy's socket."""
        upstream = self.upstream
        return len(self.early) + (0 if upstream is None else upstream.get_write_buffer_size())

    def delivered(self) -> int:
        """Bytes from the proxy that the client's socket took."""
        return self.bytes_down - self.client.get_write_buffer_size()

    def proxy_ended(self) -> None:
        """The proxy's side closed or reset, first: counted once, as one byte down (the
        HTTP layer counts its own closes so), unless the client had half-closed."""
        if not (self.ended or self.upstream_done or self.client_eof):
            self.upstream_done = True
            self.tap.down_total += 1

    def pass_client_end(self) -> None:
        """The client's end goes on to the proxy's side (before it does): counted once, as
        one byte up (the HTTP layer counts its arrival so), unless the proxy's side had
        ended (the layer's connection is gone, and counts nothing)."""
        ended = self.upstream_eof or self.upstream_done or self.client_end_passed
        if self.upstream is not None and not ended:
            self.client_end_passed = True
            self.tap.up_total += 1

    def record(self, kind: str, by: Side, undelivered: int = 0) -> None:
        self.tap.record(
            ConnectionEvent(
                CLOCK.now(),
                self.tap.service,
                self.id,
                kind,  # type: ignore[arg-type]
                by,
                self.bytes_up,
                self.bytes_down - undelivered,
            )
        )

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _UpstreamSide(self), *self.tap.target
            )
        except OSError:
            # As Toxiproxy does when its upstream is down: accept, then close.
            self.end(None, by="upstream")
            return
        self.tap.connected += 1  # the proxy makes one connection to the layer for it
        if self.ended:
            self.tap.up_total += 1  # the client's end, passed on as this reset
            transport.abort()
            return
        self.upstream = transport
        if self.early:
            early = bytes(self.early)
            self.early.clear()  # first: a count read meanwhile takes it as passed on, not lost
            transport.write(early)
        if self.client_eof and transport.can_write_eof():
            self.pass_client_end()
            transport.write_eof()
        self.client.resume_reading()

    def end(self, exc: BaseException | None, *, by: Side) -> None:
        """One side is gone: pass a reset on as a reset, a close as a close."""
        if self.ended:
            return
        if by == "upstream" and self.upstream is not None:
            self.proxy_ended()
        elif by == "client":
            self.pass_client_end()
        self.ended = True
        self.ended_at = CLOCK.now()
        self.tap.links.discard(self)
        self.tap.by_peer.pop(self.peer, None)
        if exc is not None or self.upstream is None:  # a close sends what is buffered first
            self.tap.up_lost += self.pending_up()
        other = self.upstream if by == "client" else self.client
        undelivered = self.client.get_write_buffer_size() if by == "upstream" else 0
        if exc is not None:
            if other is not None:
                abort_with_reset(other)
            self.record("reset", by, undelivered)
        else:
            if other is not None:
                other.close()
            self.record("closed", by)
        self.tap.finished.append(self.trace(undelivered, ended=True))
        self.tap.progressed()
        if not self.tap.links and self.tap.on_idle is not None:
            self.tap.on_idle()
        CLOCK.poke()  # a client outside the block may have held the jumps

    def trace(self, undelivered: int | None = None, *, ended: bool = False) -> Trace:
        if undelivered is None:
            undelivered = self.client.get_write_buffer_size()
        return Trace(
            self.id,
            self.digest,
            self.bytes_down - undelivered,
            ended,
            self.opened_at,
            self.ended_at,
            self.peer[1] if isinstance(self.peer, tuple) else None,
        )

    def half_close(self, side: Side) -> None:
        if side == "client":
            self.client_eof = True
            target = self.upstream
        else:
            self.upstream_eof = True
            target = self.client
        if self.client_eof and self.upstream_eof:
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()
        elif target is not None and target.can_write_eof():
            if side == "client":
                self.pass_client_end()
            target.write_eof()


class _ClientSide(asyncio.Protocol):
    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        self.link: _Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        # No buffering past the kernel's: writing pauses (and so does reading from the
        # proxy) while anything waits in our buffer, and resume_writing says when the
        # client's socket took the last byte, which is when an answer was delivered.
        transport.set_write_buffer_limits(high=0)
        self.link = _Link(self.tap, transport, next(self.tap.ids))
        self.tap.links.add(self.link)
        self.tap.by_peer[self.link.peer] = self.link
        self.link.record("opened", "")
        self.tap.spawn(self.link.connect())

    def data_received(self, data: bytes) -> None:
        link = self.link
        assert link is not None
        link.bytes_up += len(data)
        self.tap.up_total += len(data)
        if self.tap.trace_heads and link.digest is None and len(link.head) < HEAD_LIMIT:
            link.head += data
            link.digest = head_digest(bytes(link.head))
        if link.upstream is None:
            # Older CPythons (3.11.2's selector transport, for one) add the reader after
            # connection_made even though it paused reading, so a client that speaks first
            # (PostgreSQL's startup packet) is read before the leg to the proxy exists.
            link.early += data
            return
        link.upstream.write(data)

    def eof_received(self) -> bool:
        assert self.link is not None
        self.link.half_close("client")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        assert self.link is not None
        self.link.end(exc, by="client")

    def pause_writing(self) -> None:
        if self.link is not None and self.link.upstream is not None:
            self.link.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.link is not None and self.link.upstream is not None:
            self.link.upstream.resume_reading()
        self.tap.progressed()


class _UpstreamSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.bytes_down += len(data)
        if not self.link.client_eof:  # else the layer, once it knows, counts nothing sent
            self.link.tap.down_total += len(data)
        self.link.client.write(data)
        if not self.link.client.get_write_buffer_size():
            self.link.tap.progressed()  # all of it is in the client's socket already

    def eof_received(self) -> bool:
        self.link.proxy_ended()
        self.link.half_close("upstream")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link.upstream is not None:
            self.link.end(exc, by="upstream")

    def pause_writing(self) -> None:
        self.link.client.pause_reading()

    def resume_writing(self) -> None:
        self.link.client.resume_reading()


class Tap:
    """Listens on a loopback port and relays every connection to ``target``."""

    def __init__(
        self,
        loop: BackgroundLoop,
        service: str,
        target: tuple[str, int],
        record: Recorder,
        host: str = "127.0.0.1",
        *,
        trace_heads: bool = False,
    ) -> None:
        self.loop = loop
        self.service = service
        self.target = target
        self.record = record
        self.host = host
        self.port = 0
        self.links: set[_Link] = set()
        self.ids = itertools.count(1)
        self.trace_heads = trace_heads
        """Hash each connection's first request head, to pair it with the HTTP layer's."""
        self.finished: list[Trace] = []
        self.by_peer: dict[object, _Link] = {}
        """Open links by their client socket's address."""
        self.up_total = 0
        """Bytes taken from clients, in all."""
        self.up_lost = 0
        """Of those, bytes never handed to the proxy (their connection ended first)."""
        self.down_total = 0
        """Bytes got from the proxy, in all, and one per link the proxy's side ended."""
        self.connected = 0
        """Links whose leg to the proxy was made, in all."""
        self.on_idle: Callable[[], None] | None = None
        """Called on the loop when the last open link ended."""
        self.on_progress: Callable[[], None] | None = None
        """Called on the loop when bytes reached a client's socket or a connection ended."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()

    def progressed(self) -> None:
        if self.on_progress is not None:
            self.on_progress()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _listen(self) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _ClientSide(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def _close(self) -> None:
        await self._stop_listening()
        await self._cut_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _cut_all(self) -> None:
        for link in list(self.links):
            link.pass_client_end()  # its reset reaches the layer, which counts it
            link.ended = True
            link.client.abort()
            if link.upstream is not None:
                link.upstream.abort()
        self.links.clear()
        self.by_peer.clear()
        self.finished.clear()

    def cut_all(self) -> None:
        """Drop every open connection, unrecorded, and forget those so far; keep listening
        (explore's next example starts with fresh connections)."""
        self.loop.run(self._cut_all())

    def start(self) -> int:
        """Listen on ``host:0`` and return the port the OS chose."""
        self.loop.run(self._listen())
        return self.port

    def stop_listening(self) -> None:
        """Refuse new connections (the proxy is disabled); open ones live on."""
        self.loop.run(self._stop_listening())

    def resume_listening(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self.loop.run(self._listen())

    def traces(self) -> list[Trace]:
        """Every connection so far, ended or open, in the order they opened."""

        async def snapshot() -> list[Trace]:
            return self.finished + [link.trace() for link in self.links]

        traces = self.loop.run(snapshot()) if self.loop.running else list(self.finished)
        return sorted(traces, key=lambda t: t.id)

    def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self.loop.running:
            self.loop.run(self._close())
