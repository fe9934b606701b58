"""One client connection through an engine proxy: two sockets, two pipes.

The ``upstream`` pipe carries client bytes to the upstream, the ``downstream``
pipe the answers back.  While a pipe has no toxic at work, bytes go from one
transport straight to the other (the fast path, with read pausing for flow
control); with toxics, chunks queue and one task walks them through the stages
in order.  A close on either side closes the whole connection once the bytes in
flight are through, as Toxiproxy does (it carries no half-close).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import TYPE_CHECKING

from ..runtime.sockets import abort_with_reset
from .toxics import TYPES, Chunk, Stage, Toxic

if TYPE_CHECKING:
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
        self.queue.append(Chunk(data, time.monotonic()))
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
    """The protocol of one of a link's two sockets."""

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
        if self.name == "client":
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()
            self.link.accepted(transport)

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


class Link:
    """A client connection and its connection to the upstream."""

    def __init__(self, proxy: Proxy, link_id: int) -> None:
        self.proxy = proxy
        self.id = link_id
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pipes: dict[str, Pipe] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.open_sides = 0
        self.closed = False

    def client_protocol(self) -> _Side:
        return _Side(self, "client")

    def accepted(self, transport: asyncio.Transport) -> None:
        self.client = transport
        self.open_sides += 1
        self.proxy.links.add(self)
        task = asyncio.get_running_loop().create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self) -> None:
        assert self.client is not None
        upstream_side = _Side(self, "upstream")
        try:
            host, port = self.proxy.upstream_address()
            transport, _ = await asyncio.get_running_loop().create_connection(
                lambda: upstream_side, host, port
            )
        except (OSError, ValueError):  # ValueError: ListenError too
            # As Toxiproxy does, also for an upstream it cannot even parse ("noport"):
            # the client was accepted, now it is closed.
            self.client.close()
            return
        if self.closed or self.client.is_closing():
            transport.close()
            return
        self.open_sides += 1
        self.upstream = transport
        client_side = self.client.get_protocol()
        assert isinstance(client_side, _Side)
        up = Pipe(self, "upstream", self.client, transport)
        down = Pipe(self, "downstream", transport, self.client)
        self.pipes = {"upstream": up, "downstream": down}
        client_side.out, client_side.into = up, down
        upstream_side.out, upstream_side.into = down, up
        for toxic in self.proxy.toxics:
            self.pipes[toxic.direction].attach(toxic, live=False)
        up.started()
        down.started()
        if client_side.early:
            up.feed(bytes(client_side.early))
            client_side.early.clear()
        if client_side.early_eof:
            up.feed_eof()
        self.client.resume_reading()

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

    def _forget(self) -> None:
        self.closed = True
        self.proxy.links.discard(self)
        for task in list(self.tasks):
            task.cancel()

    def close(self, *, reset: bool = False) -> None:
        """Close both sockets: with FIN after the bytes in flight, or at once with RST."""
        for transport in (self.client, self.upstream):
            if transport is None or (transport.is_closing() and not reset):
                continue
            if reset:
                abort_with_reset(transport)
            else:
                transport.close()
