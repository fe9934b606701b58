"""The engine's HTTP front end: Toxiproxy's routes, HTTP/1.1 by h11 on the engine's loop.

Requests are read as the plugin's HTTP layer reads them (:mod:`..runtime.wire`), on the
engine's event loop beside its proxies; the operations run one at a time (a lock), so
no two ever interleave on proxy state.  The listen backlog is Go's (``somaxconn``), so a
burst of API clients is queued as Toxiproxy queues it, not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import re
from typing import Any

import h11

from ..runtime import wire
from .collection import Answer, ApiError, Collection, bad_body

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
TEXT = "text/plain; charset=utf-8"
BAD_REQUEST = Answer(400, "400 Bad Request", TEXT)
"""Go's net/http answer to a request it cannot parse; it closes the connection."""


class ApiServer:
    """Toxiproxy's HTTP API over ``collection``, served on the running event loop."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._server: asyncio.Server | None = None
        self._operations = asyncio.Lock()
        self._connections = wire.Connections()

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
            refusal: Answer | None = None
            try:
                got = await wire.next_request(conn, reader, writer.write, MAX_BODY)
            except wire.TooLarge:
                refusal = bad_body(f"larger than {MAX_BODY} bytes").answer()
            except h11.RemoteProtocolError:
                refusal = BAD_REQUEST
            if refusal is not None:  # outside the except: the body read so far is freed
                self._write(conn, writer, "GET", refusal, close=True)
                await writer.drain()
                await wire.linger(reader, writer)
                return
            if got is None:
                return
            request, body = got
            method = request.method.decode("ascii", "replace")
            path = request.target.decode("ascii", "replace").split("?", 1)[0]
            user_agent = dict(request.headers).get(b"user-agent", b"").decode("latin-1")
            answer = await self._answer(method, path, user_agent, body)
            self._write(conn, writer, method, answer)
            await writer.drain()
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def _answer(self, method: str, path: str, user_agent: str, body: bytes) -> Answer:
        if "Mozilla/" in user_agent:
            # Toxiproxy's guard against requests a browser was tricked into sending.
            return Answer(403, "User agent not allowed\n", TEXT)
        for pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            operation = methods.get(method)
            if operation is None:
                return Answer(405, "")
            args: list[Any] = list(match.groupdict().values())
            if operation in _TAKES_BODY:
                args.append(body)
            try:
                async with self._operations:
                    answer: Answer = await getattr(self.collection, operation)(*args)
                return answer
            except ApiError as exc:
                return exc.answer()
        return Answer(404, "404 page not found\n", TEXT)

    @staticmethod
    def _write(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        method: str,
        answer: Answer,
        close: bool = False,
    ) -> None:
        if answer.status == 204:
            payload = b""
        elif isinstance(answer.body, str):
            payload = answer.body.encode()
        else:
            payload = json.dumps(answer.body, separators=(",", ":")).encode()
        headers = [("Date", email.utils.formatdate(usegmt=True))]
        if payload:
            content_type = answer.content_type
            if answer.status >= 400 and not isinstance(answer.body, str):
                content_type = TEXT  # what Toxiproxy sends with errors
            headers.append(("Content-Type", content_type))
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
