"""What the engine tests share: timeouts, waiting, descriptor counts, API calls, an echo
upstream that takes thousands of connections."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from net import read_at_most

API_TIMEOUT = 10.0
"""Seconds an API call may take; generous, as a 20 MB upload shares a loaded machine."""
IO_TIMEOUT = 5.0
"""Seconds a socket read may block before the test fails."""
CONNECTIONS = 1000
FD_SLACK = 5
"""Descriptors a settled process may hold above its baseline (e.g. a socket the GC has not reaped)."""
ENGINE_THREAD_PREFIX = "pytest-resilience"


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str | Callable[[], str]
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` once ``timeout`` passes."""
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            described = what if isinstance(what, str) else what()
            pytest.fail(f"still not true after {timeout} s: {described}", pytrace=False)
        time.sleep(0.01)


def fds_back_to(baseline: int) -> None:
    """Wait until this process holds no more descriptors than ``baseline`` (plus slack)."""
    __tracebackhide__ = True
    wait_until(
        lambda: open_fds() <= baseline + FD_SLACK,
        10,
        lambda: f"open descriptors back to {baseline} (+{FD_SLACK}); now {open_fds()}",
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc_fd = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd (Linux)"
)


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT):
            return False
    except ConnectionRefusedError:
        return True


def port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


def create_proxy(url: str, name: str, upstream: str, session: Any = requests) -> int:
    """Create proxy ``name`` on a free loopback port; return that port."""
    response = session.post(
        f"{url}/proxies",
        json={"name": name, "upstream": upstream, "listen": "127.0.0.1:0"},
        timeout=API_TIMEOUT,
    )
    assert response.status_code == 201, response.text
    return port_of(response.json()["listen"])


def add_toxic(
    url: str, proxy: str, type: str, session: Any = requests, **body: Any
) -> dict[str, Any]:
    response = session.post(
        f"{url}/proxies/{proxy}/toxics", json={"type": type, **body}, timeout=API_TIMEOUT
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def echo_round_trip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as conn:
        conn.sendall(payload)
        return read_at_most(conn, len(payload))


def reads_eof_or_reset(conn: socket.socket) -> bool:
    """Drain ``conn``; True once it ends with EOF or a reset, False if it stays open."""
    conn.settimeout(IO_TIMEOUT)
    try:
        while conn.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def engine_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(ENGINE_THREAD_PREFIX)}


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, open_transports: set[asyncio.BaseTransport]) -> None:
        self.open = open_transports
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open.add(transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open.discard(self.transport)


class EchoUpstream:
    """A TCP echo server on an asyncio loop of its own thread: thousands of connections are fine."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="test-engine-echo", daemon=True
        )
        self._transports: set[asyncio.BaseTransport] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(IO_TIMEOUT)

    def start(self) -> EchoUpstream:
        self._thread.start()

        async def serve() -> asyncio.Server:
            return await self._loop.create_server(
                lambda: _EchoProtocol(self._transports), "127.0.0.1", 0, backlog=4096
            )

        self._server = self._call(serve())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for transport in list(self._transports):
                transport.abort()  # type: ignore[attr-defined]
            await self._server.wait_closed()

        try:
            self._call(close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(IO_TIMEOUT)
            self._loop.close()
