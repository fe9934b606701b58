"""The engine's HTTP front end: Toxiproxy's routes on the standard library's HTTP server.

Control-plane traffic is a handful of small requests per test, so a threaded
``http.server`` (the standard library's HTTP/1.1 parsing, no new dependency)
serves it; every operation itself runs on the engine's event loop, one at a
time, so handlers never touch proxy state from their own threads.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .collection import Answer, ApiError, Collection, bad_body

MAX_BODY = 16 << 20
"""Larger request bodies are refused as a bad request body (Toxiproxy sets no limit)."""

Run = Callable[[Coroutine[Any, Any, Answer]], Answer]

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, a keep-alive client's
    # delayed ACK would hold the body back 40 ms.
    disable_nagle_algorithm = True
    # Answer unparseable requests with an HTTP/1.1 status line (as Go does), not HTTP/0.9.
    default_request_version = "HTTP/1.1"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s"
    server: ApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a test run's output is not the place for an access log

    def _dispatch(self) -> None:
        # Read the body first, whatever the answer: left unread, it would be parsed as
        # the next request on this keep-alive connection.
        body = self._read_body()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        if "Mozilla/" in self.headers.get("User-Agent", ""):
            # Toxiproxy's guard against requests a browser was tricked into sending.
            self._send(Answer(403, "User agent not allowed\n", "text/plain; charset=utf-8"))
            return
        for pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            operation = methods.get(self.command)
            if operation is None:
                self._send(Answer(405, ""))
                return
            self._call(operation, match.groupdict(), body)
            return
        self._send(Answer(404, "404 page not found\n", "text/plain; charset=utf-8"))

    def _call(self, operation: str, params: dict[str, str], body: bytes) -> None:
        method = getattr(self.server.collection, operation)
        args: list[Any] = list(params.values())
        if operation in _TAKES_BODY:
            args.append(body)
        try:
            answer = self.server.run(method(*args))
        except ApiError as exc:
            answer = exc.answer()
        self._send(answer)

    def _too_large(self) -> None:
        self.close_connection = True
        self._send(bad_body(f"larger than {MAX_BODY} bytes").answer())

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").strip().lower() == "chunked":
            return self._read_chunked()
        raw = (self.headers.get("Content-Length") or "0").strip()
        if not (raw.isascii() and raw.isdigit()):
            self.send_error(400, "Bad Request")  # Go's net/http answer; it closes the connection
            return None
        length = int(raw)
        if length > MAX_BODY:
            self._too_large()
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes | None:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                self.send_error(400, "Bad Request")
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > MAX_BODY:
                self._too_large()
                return None
            body += self.rfile.read(size)
            self.rfile.readline(3)  # the CRLF after the chunk

    def _send(self, answer: Answer) -> None:
        if answer.status == 204:
            payload = b""
        elif isinstance(answer.body, str):
            payload = answer.body.encode()
        else:
            payload = json.dumps(answer.body, separators=(",", ":")).encode()
        self.send_response(answer.status)
        if payload:
            content_type = answer.content_type
            if answer.status >= 400 and not isinstance(answer.body, str):
                content_type = "text/plain; charset=utf-8"  # what Toxiproxy sends with errors
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has headers only
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_OPTIONS = _dispatch


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler never holds up the interpreter's exit
    # Daemon handler threads are not joined by server_close(): stop() joins them itself.
    block_on_close = False
    JOIN_TIMEOUT = 5.0
    """Seconds stop() waits for each handler thread to finish its request."""

    def __init__(self, address: tuple[str, int], collection: Collection, run: Run) -> None:
        super().__init__(address, _Handler)
        self.collection = collection
        self.run = run
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        handler = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="pytest-resilience-engine-api-handler",
            daemon=True,
        )
        with self._lock:
            self._open.add(request)
            self._handlers = {t for t in self._handlers if t.is_alive()}
            self._handlers.add(handler)
        handler.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever,
            args=(0.05,),
            name="pytest-resilience-engine-api",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        # Wake handlers idling on keep-alive connections, then wait for each to finish.
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(self.JOIN_TIMEOUT)
        self.server_close()
