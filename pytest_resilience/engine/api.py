"""The engine's HTTP front end: Toxiproxy's routes, HTTP/1.1 by h11 on the engine's loop.

Requests are read as the plugin's HTTP layer reads them (:mod:`..runtime.wire`), on the
engine's event loop beside its proxies; the operations run one at a time (a lock), so
no two ever interleave on proxy state.  The listen backlog is Go's (``somaxconn``), so a
burst of API clients is queued as Toxiproxy queues it, not refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import h11

from ..runtime import wire
from . import gojson
from .collection import ERROR_TYPE, Answer, ApiError, Collection, bad_body

MAX_BODY = 16 << 20
"""Larger request bodies are refused as a bad request body (Toxiproxy sets no limit)."""
BACKLOG = 4096
"""Pending connections the API's listener queues (Go's net.Listen on Linux)."""

_PROXY = r"/proxies/(?P<proxy>[^/]+)"
_TOXIC = _PROXY + r"/toxics/(?P<toxic>[^/]+)"
ROUTES: list[tuple[re.Pattern[str], dict[str, str]]] = [
    (re.compile(r"/version"), {"GET": "get_version"}),
    (re.compile(r"/reset"), {"POST": "reset"}),
    (re.compile(r"/metrics"), {"GET": "metrics"}),
    (re.compile(r"/populate"), {"POST": "populate"}),
    (re.compile(r"/proxies"), {"GET": "index", "POST": "create"}),
    (re.compile(_PROXY), {"GET": "show", "POST": "update", "PATCH": "update", "DELETE": "delete"}),
    (re.compile(_PROXY + r"/toxics"), {"GET": "toxics", "POST": "add_toxic"}),
    (
        re.compile(_TOXIC),
        {
            "GET": "show_toxic",
            "POST": "update_toxic",
            "PATCH": "update_toxic",
            "DELETE": "delete_toxic",
        },
    ),
]
_TAKES_BODY = {"create", "update", "populate", "add_toxic", "update_toxic"}
NO_ROUTE = Answer(404, "404 page not found\n", ERROR_TYPE)
NO_METHOD = Answer(405, "")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
"""A percent sign that does not start an escape, which Go's URL parsing refuses."""
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n400 Bad Request"
)
"""Go's net/http answer to a request it cannot parse, word for word (its server writes
these bytes itself, before any handler); it closes the connection."""


class ApiServer:
    """Toxiproxy's HTTP API over ``collection``, served on the running event loop."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._server: asyncio.Server | None = None
        self._operations = asyncio.Lock()
        self._connections = wire.Connections()
        self._ids = request_ids()

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: the OS chooses) and return the port."""
        self._server = await asyncio.start_server(self._serve, host, port, backlog=BACKLOG)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, end every connection, and wait for their tasks to finish."""
        server, self._server = self._server, None
        await self._connections.close(server)
        if server is not None:
            await server.wait_closed()

    # -- one connection -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with self._connections.open(writer):
                await self._cycle_all(h11.Connection(h11.SERVER), reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client ended the connection
        finally:
            writer.close()

    async def _cycle_all(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            too_large = malformed = False
            got: tuple[h11.Request, bytes] | None = None
            try:
                got = await wire.next_request(conn, reader, writer.write, MAX_BODY)
            except wire.TooLarge:
                too_large = True
            except h11.RemoteProtocolError:
                malformed = True
            if got is not None and _BAD_ESCAPE.search(got[0].target.decode("ascii", "replace")):
                malformed = True  # Go's URL parsing refuses the request line
            if too_large or malformed:  # outside the except: the body read so far is freed
                if too_large:
                    answer = bad_body(f"larger than {MAX_BODY} bytes").answer()
                    self._write(conn, writer, "POST", answer, close=True)
                else:
                    writer.write(BAD_REQUEST)
                await writer.drain()
                await wire.linger(reader, writer)
                return
            if got is None:
                return
            request, body = got
            method = request.method.decode("ascii", "replace")
            path = unquote(request.target.decode("ascii", "replace").split("?", 1)[0])
            user_agent = dict(request.headers).get(b"user-agent", b"").decode("latin-1")
            # Routed on the decoded path, as gorilla/mux routes on Go's URL.Path: a proxy
            # named "a b" lives at /proxies/a%20b.
            answer = await self._answer(method, path, user_agent, body)
            # Toxiproxy's middleware stamps each request its router took on.
            routed = answer is not NO_ROUTE and answer is not NO_METHOD
            self._write(
                conn, writer, method, answer, request_id=next(self._ids) if routed else None
            )
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def _answer(self, method: str, path: str, user_agent: str, body: bytes) -> Answer:
        for pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            operation = methods.get(method)
            if operation is None:
                return NO_METHOD
            if "Mozilla/" in user_agent:
                # Toxiproxy's guard (a middleware on its routes) against requests a
                # browser was tricked into sending.
                return Answer(403, "User agent not allowed\n", ERROR_TYPE)
            args: list[Any] = list(match.groupdict().values())
            if operation in _TAKES_BODY:
                args.append(body)
            try:
                async with self._operations:
                    answer: Answer = await getattr(self.collection, operation)(*args)
                return answer
            except ApiError as exc:
                return exc.answer()
        return NO_ROUTE

    @staticmethod
    def _write(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        method: str,
        answer: Answer,
        close: bool = False,
        request_id: str | None = None,
    ) -> None:
        if answer.status == 204:
            payload = b""
        elif isinstance(answer.body, str):
            payload = answer.body.encode()
        else:
            payload = gojson.dumps(answer.body).encode()
        headers = [("Date", email.utils.formatdate(usegmt=True))]
        if payload:
            headers.append(("Content-Type", answer.content_type))
            if answer.content_type == ERROR_TYPE:
                headers.append(("X-Content-Type-Options", "nosniff"))  # as http.Error sets
        if request_id is not None:
            headers.append(("X-Toxiproxy-Request-Id", request_id))
        if answer.status != 204:  # Go sends no length with a 204, which has no body
            headers.append(("Content-Length", str(len(payload))))
        if close:
            headers.append(("Connection", "close"))
        with contextlib.suppress(h11.LocalProtocolError):  # a request h11 could not frame
            out = conn.send(
                h11.Response(
                    status_code=answer.status, headers=headers, reason=wire.reason(answer.status)
                )
            )
            if payload and method != "HEAD":  # a HEAD answer has headers only
                out += conn.send(h11.Data(data=payload))
            writer.write(out + conn.send(h11.EndOfMessage()))


def request_ids() -> Iterator[str]:
    """Request ids shaped as Toxiproxy's (github.com/rs/xid): 4 bytes of the time, 5 of
    this process, a 3-byte counter from a random start, in lowercase base32hex."""
    process = os.urandom(3) + (os.getpid() & 0xFFFF).to_bytes(2, "big")
    counter = int.from_bytes(os.urandom(3), "big")
    while True:
        counter = (counter + 1) & 0xFFFFFF
        raw = int(time.time()).to_bytes(4, "big") + process + counter.to_bytes(3, "big")
        yield base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()
