"""One client connection through an engine proxy: two sockets, two pipes.

A link whose proxy has no toxic is relayed by the express lane (``lane.py``).  On the
event loop, the ``upstream`` pipe carries client bytes to the upstream, the
``downstream`` pipe the answers back.  While a pipe has no toxic at work, bytes go
from one transport straight to the other (with read pausing for flow control); with
toxics, chunks queue and one task walks them through the stages in order.  A close on either side closes the whole connection once the bytes in
flight are through, as Toxiproxy does (it carries no half-close).
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
from typing import TYPE_CHECKING

from ..clock import real_monotonic
from ..runtime.sockets import abort_with_reset
from .toxics import TYPES, Chunk, Stage, Toxic

if TYPE_CHECKING:
    from .lane import Released
    from .proxy import Proxy

_HIGH_WATER = 1 << 20  # queued bytes at which a toxic pipe stops reading its source
_LOW_WATER = 1 << 18
_EOF = None


class Pipe:
    """One direction of a link: reads ``source``, writes ``dest``."""

    def __init__(
        self, link: Link, direction: str, source: asyncio.Transport, dest: asyncio.Transport
    ) -> None:
        self.link = link
        self.direction = direction
        self.source = source
        self.dest = dest
        self.stages: list[Stage] = []
        self.idle: dict[str, Toxic] = {}
        """Toxics whose toxicity roll said 'not on this connection'."""
        self.queue: collections.deque[Chunk | None] = collections.deque()
        self.queued = 0
        self.task: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.eof = False
        self.counters = link.proxy.counters[direction]

    # -- toxics -------------------------------------------------------------------

    def attach(self, toxic: Toxic, *, live: bool) -> None:
        rng = random.Random(
            f"{self.link.proxy.seed}:{self.link.proxy.name}:{self.link.id}:{toxic.name}"
        )
        if rng.random() >= toxic.toxicity:
            self.idle[toxic.name] = toxic
            return
        stage = TYPES[toxic.type](toxic, self, rng)
        self.stages.append(stage)
        if live:
            stage.attached()

    def detach(self, name: str) -> None:
        if self.idle.pop(name, None) is not None:
            return
        for stage in self.stages:
            if stage.toxic.name == name:
                self.stages.remove(stage)
                stage.detached()
                return

    def started(self) -> None:
        for stage in self.stages:
            stage.attached()

    # -- data ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        counters = self.counters
        counters[0] += len(data)
        if not self.stages and self.task is None:
            counters[1] += len(data)
            self.dest.write(data)
            return
        self.queue.append(Chunk(data, real_monotonic()))
        self.queued += len(data)
        if self.queued > _HIGH_WATER:
            self.source.pause_reading()
        self._kick()

    def feed_eof(self) -> None:
        if self.eof:
            return
        self.eof = True
        if not self.stages and self.task is None:
            self.dest.close()
            return
        self.queue.append(_EOF)
        self._kick()

    def _kick(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain())
            self.link.tasks.add(self.task)

    async def _drain(self) -> None:
        try:
            while self.queue:
                item = self.queue.popleft()
                if item is _EOF:
                    await self._close_through(list(self.stages))
                    return
                self.queued -= len(item.data)
                if self.queued < _LOW_WATER and self.writable.is_set():
                    self.source.resume_reading()
                await self._through(list(self.stages), 0, item)
        finally:
            self.link.tasks.discard(asyncio.current_task())  # type: ignore[arg-type,unused-ignore]
            self.task = None

    async def _through(self, stages: list[Stage], index: int, chunk: Chunk) -> None:
        while index < len(stages) and stages[index].removed.is_set():
            index += 1
        if index == len(stages):
            await self._write(chunk.data)
            return
        await stages[index].data(chunk, lambda c: self._through(stages, index + 1, c))

    async def _write(self, data: bytes) -> None:
        if not data or self.dest.is_closing():
            return
        await self.writable.wait()
        self.counters[1] += len(data)
        self.dest.write(data)

    async def _close_through(self, stages: list[Stage]) -> None:
        for stage in stages:
            if not stage.removed.is_set() and not await stage.eof():
                return
        self.dest.close()

    # -- flow control from the destination ---------------------------------------

    def dest_paused(self) -> None:
        self.writable.clear()
        self.source.pause_reading()

    def dest_resumed(self) -> None:
        self.writable.set()
        if self.queued < _LOW_WATER:
            self.source.resume_reading()


class _Side(asyncio.Protocol):
    """The protocol of one of a link's two sockets, once the link is on the event loop."""

    def __init__(self, link: Link, name: str) -> None:
        self.link = link
        self.name = name
        self.out: Pipe | None = None  # the pipe that reads this socket
        self.into: Pipe | None = None  # the pipe that writes this socket
        # Read before the pipes exist: older CPythons (3.11.2's selector transport, for one)
        # add the reader after connection_made even though it paused reading.
        self.early = bytearray()
        self.early_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # until the link's pipes are set up

    def data_received(self, data: bytes) -> None:
        if self.out is not None:
            self.out.feed(data)
        else:
            self.early += data

    def eof_received(self) -> bool:
        if self.out is not None:
            self.out.feed_eof()
        else:
            self.early_eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        # Toxiproxy treats a read error like a close: what is in flight still goes out.
        self.link.lost(self)

    def pause_writing(self) -> None:
        if self.into is not None:
            self.into.dest_paused()

    def resume_writing(self) -> None:
        if self.into is not None:
            self.into.dest_resumed()


async def dial(host: str, port: int) -> socket.socket:
    """A non-blocking socket connected to ``host:port`` (each address in turn, as Go and
    asyncio try them); a numeric host is not looked up."""
    loop = asyncio.get_running_loop()
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    except socket.gaierror:
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"no address for {host}:{port}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


class Link:
    """A client connection and its connection to the upstream.

    It starts as two sockets; with no toxic on its proxy it is relayed by the engine's
    express lane (:mod:`.lane`), else (or once a toxic is added) by two transports on
    the event loop and the pipes between them.
    """

    def __init__(self, proxy: Proxy, link_id: int) -> None:
        self.proxy = proxy
        self.id = link_id
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pipes: dict[str, Pipe] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.open_sides = 0
        self.express = False
        """Relayed by the express lane."""
        self.closing = False
        self.closed = False

    def start(self, client: socket.socket) -> None:
        """Dial the upstream for ``client``, a socket the proxy accepted, then relay."""
        self.proxy.links.add(self)
        task = asyncio.get_running_loop().create_task(self._open(client))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open(self, client: socket.socket) -> None:
        try:
            upstream = await dial(*self.proxy.upstream_address())
        except (OSError, ValueError):  # ValueError: ListenError too
            # As Toxiproxy does, also for an upstream it cannot even parse ("noport"):
            # the client was accepted, now it is closed.
            client.close()
            self._forget()
            return
        except BaseException:
            client.close()
            raise
        if self.closing:
            client.close()
            upstream.close()
            self._forget()
            return
        lane = self.proxy.lane
        if lane is not None and not self.proxy.toxics:
            self.express = True
            lane.adopt(self, client, upstream)
            return
        await self._on_loop(client, upstream)

    async def leave_lane(self, released: Released) -> None:
        """Go on the event loop, where toxics apply, with what the express lane released."""
        await self._on_loop(*released)

    async def _on_loop(
        self,
        client: socket.socket,
        upstream: socket.socket,
        to_upstream: bytes = b"",
        to_client: bytes = b"",
        client_eof: bool = False,
        upstream_eof: bool = False,
    ) -> None:
        loop = asyncio.get_running_loop()
        client_side, upstream_side = _Side(self, "client"), _Side(self, "upstream")
        try:
            self.client, _ = await loop.connect_accepted_socket(lambda: client_side, client)
        except BaseException as exc:
            client.close()
            upstream.close()
            self._forget()
            if isinstance(exc, OSError):
                return  # the client went away meanwhile
            raise
        self.open_sides += 1
        try:
            self.upstream, _ = await loop.create_connection(lambda: upstream_side, sock=upstream)
        except BaseException as exc:
            upstream.close()
            self.client.close()  # its connection_lost forgets the link
            if isinstance(exc, OSError):
                return
            raise
        self.open_sides += 1
        if self.closing:
            self.client.close()
            self.upstream.close()
            return
        up = Pipe(self, "upstream", self.client, self.upstream)
        down = Pipe(self, "downstream", self.upstream, self.client)
        self.pipes = {"upstream": up, "downstream": down}
        client_side.out, client_side.into = up, down
        upstream_side.out, upstream_side.into = down, up
        for toxic in self.proxy.toxics:
            self.pipes[toxic.direction].attach(toxic, live=False)
        up.started()
        down.started()
        for side, pipe, owed, eof in (
            (client_side, up, to_upstream, client_eof),
            (upstream_side, down, to_client, upstream_eof),
        ):
            pipe.counters[0] -= len(owed)  # counted as received already, by the lane
            data = owed + bytes(side.early)
            side.early.clear()
            if data:
                pipe.feed(data)
            if eof or side.early_eof:
                pipe.feed_eof()
        self.client.resume_reading()
        self.upstream.resume_reading()

    def lost(self, side: _Side) -> None:
        self.open_sides -= 1
        if side.out is not None:
            side.out.feed_eof()
        # The socket is gone: nothing more can be written to it.
        if side.into is not None:
            side.into.writable.set()
        other = self.upstream if side.name == "client" else self.client
        if other is None or self.open_sides <= 0:
            self._forget()
        elif not self.pipes:
            other.close()

    def ended(self) -> None:
        """The express lane closed both sockets, or the link never left it whole (called
        on the event loop)."""
        self.express = False
        self._forget()

    def _forget(self) -> None:
        self.closed = True
        self.proxy.links.discard(self)
        for task in list(self.tasks):
            task.cancel()

    def close(self, *, reset: bool = False) -> None:
        """Close both sockets: with FIN after the bytes in flight, or at once with RST."""
        self.closing = True
        if self.express and self.proxy.lane is not None:
            self.proxy.lane.close([self], reset=reset)
            return
        for transport in (self.client, self.upstream):
            if transport is None or (transport.is_closing() and not reset):
                continue
            if reset:
                abort_with_reset(transport)
            else:
                transport.close()
