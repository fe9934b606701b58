"""An echo upstream: a threaded TCP echo server on a loopback port the OS chose.

A pytest plugin, the one source of it: the top-level ``conftest.py`` loads it for the
suite, and tests that start inner pytest runs write this file into the inner project
(``pytester.makeconftest(ECHO.read_text())``), so inner runs, their xdist workers
included, have the same fixtures without importing the suite.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass  # a reset is what some tests inject


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


def _serve() -> Iterator[EchoServer]:
    server = EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """An echo server for one test."""
    yield from _serve()


@pytest.fixture(scope="session")
def upstream() -> Iterator[str]:
    """``host:port`` of an echo server for the whole session."""
    for server in _serve():
        yield server.address


@pytest.fixture
def round_trip() -> Any:
    """``round_trip(service, payload=b"ping", timeout=10.0)``: seconds to get ``payload``
    echoed through ``service``."""

    def measure(service: Any, payload: bytes = b"ping", timeout: float = 10.0) -> float:
        started = time.monotonic()
        with socket.create_connection((service.host, service.port), timeout=timeout) as conn:
            conn.sendall(payload)
            received = b""
            while len(received) < len(payload):
                chunk = conn.recv(65536)
                if not chunk:
                    raise ConnectionError("the service closed before echoing")
                received += chunk
        return time.monotonic() - started

    return measure
