"""The upstream process: an asyncio echo server and a sink that discards what it reads."""

from __future__ import annotations

import asyncio
import struct
from multiprocessing.connection import Connection


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close


class _Sink(asyncio.BufferedProtocol):
    """Reads an 8-byte length N, discards N bytes, answers one byte; repeats.

    The one-byte answer tells the client every byte went through the proxy
    (Toxiproxy carries no half-close, so "shut down writing, wait for the close"
    would not work).  Reads land in one preallocated buffer: no allocation per read.
    """

    def __init__(self) -> None:
        self.buffer = memoryview(bytearray(1 << 20))
        self.header = b""
        self.expected = -1
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        view = self.buffer[:nbytes]
        while view:
            if self.expected < 0:
                need = 8 - len(self.header)
                self.header += bytes(view[:need])
                view = view[need:]
                if len(self.header) < 8:
                    continue
                (self.expected,) = struct.unpack("!Q", self.header)
                self.got = 0
            take = min(len(view), self.expected - self.got)
            self.got += take
            view = view[take:]
            if self.got == self.expected:
                self.transport.write(b"k")
                self.expected, self.header = -1, b""

    def eof_received(self) -> bool:
        return False


def serve_upstream(conn: Connection) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        echo = await loop.create_server(_Echo, "127.0.0.1", 0, backlog=4096)
        sink = await loop.create_server(_Sink, "127.0.0.1", 0, backlog=4096)
        conn.send([f"{h}:{p}" for h, p in (s.sockets[0].getsockname()[:2] for s in (echo, sink))])
        stop = loop.create_future()

        # A message or EOF on the pipe (the parent said stop, or is gone) ends the server.
        def wake() -> None:
            if not stop.done():
                stop.set_result(None)

        loop.add_reader(conn.fileno(), wake)
        try:
            await stop
        finally:
            loop.remove_reader(conn.fileno())
            echo.close()
            sink.close()

    asyncio.run(serve())
