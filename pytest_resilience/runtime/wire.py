"""HTTP/1.1 requests read off an asyncio stream by h11, for the plugin's two servers: the
HTTP layer behind a service (``http/server.py``) and the embedded engine's API
(``engine/api.py``).  Parsing, framing, ``Expect: 100-continue`` and the body limit are
h11's and this module's, so the two servers read requests one way.  The hash of a
connection's first request head is here too: the tap and the HTTP layer both take it,
to pair their two sides of one connection (``observe/join.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http
from collections.abc import Callable, Iterator

import h11

from ..clock import real_monotonic

LINGER = 1.0
"""Seconds a refused connection is drained before it closes (as servers' lingering close)."""
QUIET = 0.05
"""Seconds without a byte from a refused client after which it is taken to be waiting."""


HEAD_LIMIT = 16 * 1024
"""Bytes looked at for the first request head; a longer head is not traced."""


def head_digest(data: bytes) -> str | None:
    """Hash of ``data`` up to the end of its first request head, once it is all there."""
    end = data.find(b"\r\n\r\n", 0, HEAD_LIMIT)
    if end < 0:
        return None
    return hashlib.sha1(data[: end + 4]).hexdigest()


class TooLarge(Exception):
    """A request body longer than the server holds, declared or sent."""


async def next_event(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    received: Callable[[bytes], None] | None = None,
    idle: Callable[[], None] | None = None,
) -> object:
    """The next h11 event of ``conn``, reading ``reader`` as it needs (each read handed to
    ``received`` first; ``idle`` called before each read: what was read is acted on).
    Raises ``h11.RemoteProtocolError`` on a malformed request."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        if idle is not None:
            idle()
        data = await reader.read(65536)
        if received is not None:
            received(data)
        conn.receive_data(data)


async def next_request(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    send: Callable[[bytes], None],
    limit: int,
    received: Callable[[bytes], None] | None = None,
    idle: Callable[[], None] | None = None,
) -> tuple[h11.Request, bytes] | None:
    """The next request on ``conn`` and its whole body; None when the client closed.

    A client waiting for ``100 Continue`` gets it (through ``send``) when its body is read.
    Raises :class:`TooLarge` when the body declares or reaches more than ``limit`` bytes
    (the rest is not read), ``h11.RemoteProtocolError`` on a malformed request.
    """
    event = await next_event(conn, reader, received, idle)
    if isinstance(event, h11.ConnectionClosed):
        return None
    assert isinstance(event, h11.Request), event
    if declared_length(event) > limit:
        raise TooLarge
    body = bytearray()
    while True:
        if conn.they_are_waiting_for_100_continue:
            send(
                conn.send(
                    h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                )
            )
        part = await next_event(conn, reader, received, idle)
        if isinstance(part, h11.EndOfMessage):
            return event, bytes(body)
        if isinstance(part, h11.ConnectionClosed):
            return None
        assert isinstance(part, h11.Data), part
        body += part.data
        if len(body) > limit:
            raise TooLarge


def declared_length(request: h11.Request) -> int:
    """The Content-Length a request declared (h11 has checked it is a number), else 0."""
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return 0


def reason(status: int) -> bytes:
    """The status line's reason phrase (``OK``, ``Not Found``); empty for an unknown code."""
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


async def linger(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    ending: Callable[[], None] | None = None,
) -> None:
    """Read and drop what the client still sends until it pauses, then end our side
    (``ending`` called just before) and drop the rest, for a while: closing with unread
    data would reset the connection and could lose the answer just sent.  (Toxiproxy
    closes the client's connection when ours ends, so the client's bytes must have passed
    through it before our end does.)"""
    deadline = real_monotonic() + LINGER
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        while (left := deadline - real_monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(65536), min(left, QUIET)):
                return
    if ending is not None:
        ending()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        while (left := deadline - real_monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(65536), left):
                return


class Connections:
    """The open connections of an asyncio server, so that stopping it ends them all."""

    def __init__(self) -> None:
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @contextlib.contextmanager
    def open(self, writer: asyncio.StreamWriter) -> Iterator[None]:
        """Around the handling of one connection, in the task that handles it.  Cancelled
        by :meth:`close`, the task ends as if the connection had: CPython 3.11's streams
        would log a connection task that ends cancelled as an error with a traceback."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            yield
        except asyncio.CancelledError:
            if not self._closing:
                raise
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def close(self, server: asyncio.Server | None) -> None:
        """Stop ``server`` listening, cut every connection, and wait for their tasks."""
        if server is not None:
            server.close()
        await self.cut_all()
        self._closing = True

    async def cut_all(self) -> None:
        """Cut every open connection and wait for their tasks; the server keeps listening."""
        self._closing = True
        try:
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self._closing = False
