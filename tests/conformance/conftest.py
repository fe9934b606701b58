"""Backends, HTTP and socket helpers for the Toxiproxy conformance suite.

Every test here runs once per backend: the real ``toxiproxy-server`` and the embedded
engine (``pytest_resilience.engine``).  What the real server does is the contract.
Choose backends without a command-line flag through ``RESILIENCE_CONFORMANCE_BACKENDS``
(a comma list, default ``toxiproxy,embedded``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

BACKENDS = ("toxiproxy", "embedded")
BACKENDS_ENV = "RESILIENCE_CONFORMANCE_BACKENDS"
REQUIRE_TOXIPROXY_ENV = "RESILIENCE_REQUIRE_TOXIPROXY"
LOCAL_BINARY = Path(__file__).resolve().parents[2] / ".bin" / "toxiproxy-server"

API_TIMEOUT = 5.0
"""Seconds any API call may take before the test fails."""
IO_TIMEOUT = 5.0
"""Seconds a socket read may block before the test fails."""


def _selected_backends() -> list[str]:
    raw = os.environ.get(BACKENDS_ENV, "")
    chosen = [name.strip() for name in raw.split(",") if name.strip()] or list(BACKENDS)
    return list(dict.fromkeys(chosen))


def pytest_configure(config: pytest.Config) -> None:
    unknown = [name for name in _selected_backends() if name not in BACKENDS]
    if unknown:
        raise pytest.UsageError(
            f"{BACKENDS_ENV}={os.environ[BACKENDS_ENV]!r} names unknown backends {unknown}; "
            f"use a comma list of {', '.join(BACKENDS)}, e.g. {BACKENDS_ENV}=toxiproxy."
        )


# -- backends ----------------------------------------------------------------------


def _toxiproxy_binary() -> str | None:
    found = shutil.which("toxiproxy-server")
    if found:
        return found
    return str(LOCAL_BINARY) if os.access(LOCAL_BINARY, os.X_OK) else None


def _run_toxiproxy() -> Iterator[str]:
    binary = _toxiproxy_binary()
    if binary is None:
        reason = (
            f"toxiproxy-server is neither on PATH nor at {LOCAL_BINARY}; "
            "build it with `bash .ci/install-toxiproxy`."
        )
        if os.environ.get(REQUIRE_TOXIPROXY_ENV):
            pytest.fail(f"{REQUIRE_TOXIPROXY_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason)
    from pytest_resilience.toxiproxy.spawn import SpawnedToxiproxy

    # With -proxy-metrics the real server serves /metrics, which the engine always does.
    server = SpawnedToxiproxy(binary, args=("-proxy-metrics",))
    try:
        yield server.start().url
    finally:
        server.stop()


def _run_embedded() -> Iterator[str]:
    try:
        from pytest_resilience.engine import Engine
    except ImportError as exc:
        raise pytest.fail.Exception(
            f"the embedded engine cannot be imported ({exc}); fix pytest_resilience.engine "
            f"or run only the real server with {BACKENDS_ENV}=toxiproxy.",
            pytrace=False,
        ) from None
    engine = Engine(host="127.0.0.1", port=0, seed=1234)
    try:
        yield str(engine.start()).rstrip("/")
    finally:
        engine.stop()


@pytest.fixture(scope="session", params=_selected_backends())
def api_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a running backend, one per backend name."""
    yield from _run_toxiproxy() if request.param == "toxiproxy" else _run_embedded()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the backend this test runs against: ``toxiproxy`` or ``embedded``."""
    return str(request.node.callspec.params["api_url"])


@pytest.fixture
def own_api_url(api_url: str, backend: str) -> Iterator[str]:
    """A fresh server of the backend ``api_url`` names, for this test alone: what the
    test leaves on it (a proxy no address reaches) goes with it."""
    yield from _run_toxiproxy() if backend == "toxiproxy" else _run_embedded()


# -- HTTP API ----------------------------------------------------------------------

_test_numbers = itertools.count(1)


class Api:
    """Plain ``requests`` calls to one backend; remembers nothing but its name prefix."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Unique per test, so a proxy left behind can never collide with another test's.
        self.prefix = f"cf{next(_test_numbers)}_{uuid.uuid4().hex[:6]}_"

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return requests.request(
            method,
            self.url + path,
            json=json,
            data=data,
            headers=headers,
            timeout=API_TIMEOUT,
        )

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def post(self, path: str, json: Any = None, *, data: str | None = None) -> requests.Response:
        return self.request("POST", path, json=json, data=data)

    def patch(self, path: str, json: Any = None, *, data: str | None = None) -> requests.Response:
        return self.request("PATCH", path, json=json, data=data)

    def delete(self, path: str) -> requests.Response:
        return self.request("DELETE", path)

    def name(self, label: str = "proxy") -> str:
        """A proxy name no other test uses; ``cleanup`` deletes every proxy named so."""
        return self.prefix + label

    def create_proxy(
        self,
        upstream: str,
        *,
        label: str = "proxy",
        listen: str = "127.0.0.1:0",
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name(label), "upstream": upstream, "listen": listen}
        if enabled is not None:
            body["enabled"] = enabled
        response = self.post("/proxies", body)
        assert response.status_code == 201, (response.status_code, response.text)
        proxy: dict[str, Any] = response.json()
        return proxy

    def add_toxic(self, proxy: str, type: str, **fields: Any) -> dict[str, Any]:
        """POST a toxic (``stream``, ``name``, ``toxicity``, ``attributes`` as given)."""
        response = self.post(f"/proxies/{proxy}/toxics", {"type": type, **fields})
        assert response.status_code == 200, (response.status_code, response.text)
        toxic: dict[str, Any] = response.json()
        return toxic

    def delete_toxic(self, proxy: str, toxic: str) -> None:
        response = self.delete(f"/proxies/{proxy}/toxics/{toxic}")
        assert response.status_code == 204, (response.status_code, response.text)

    def cleanup(self) -> None:
        response = self.get("/proxies")
        response.raise_for_status()
        for name in response.json():
            if name.startswith(self.prefix):
                self.delete(f"/proxies/{name}")


@pytest.fixture
def api(api_url: str) -> Iterator[Api]:
    """The backend's API; every proxy the test created is deleted afterwards."""
    client = Api(api_url)
    yield client
    client.cleanup()
    # Tests run one at a time per server, so anything left now leaked from this test.
    left = client.get("/proxies").json()
    assert not left, f"proxies left behind, not named with api.name(): {sorted(left)}"


# -- TCP echo upstream -------------------------------------------------------------


@dataclass
class EchoConnection:
    """One connection the echo server accepted, as the upstream saw it."""

    sock: socket.socket
    chunks: list[bytes] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)
    error: OSError | None = None

    @property
    def received(self) -> bytes:
        return b"".join(list(self.chunks))

    def wait_closed(self, timeout: float = IO_TIMEOUT) -> None:
        assert self.closed.wait(timeout), f"upstream connection still open after {timeout}s"


class EchoServer:
    """Threaded TCP echo server on 127.0.0.1:<free port>; resets from peers are expected."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.connections: list[EchoConnection] = []
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, name="echo-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # stop() shut the listener down
            record = EchoConnection(sock)
            thread = threading.Thread(target=self._serve, args=(record,), daemon=True)
            with self._changed:
                if self._stopping:
                    sock.close()
                    return
                self.connections.append(record)
                self._threads.append(thread)
                self._changed.notify_all()
            thread.start()

    def _serve(self, record: EchoConnection) -> None:
        try:
            while data := record.sock.recv(65536):
                record.chunks.append(data)
                record.sock.sendall(data)
        except OSError as exc:
            record.error = exc  # reset_peer and closing proxies reset us on purpose
        finally:
            record.sock.close()
            record.closed.set()

    def connection(self, index: int = 0, timeout: float = IO_TIMEOUT) -> EchoConnection:
        """The ``index``-th accepted connection, waiting for it to arrive."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self.connections) > index, timeout)
            assert arrived, f"upstream saw {len(self.connections)} connections, wanted {index + 1}"
            return self.connections[index]

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(IO_TIMEOUT)
        for record in self.connections:
            with contextlib.suppress(OSError):
                record.sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(IO_TIMEOUT)


@pytest.fixture
def start_echo() -> Iterator[Callable[[], EchoServer]]:
    """Start more echo servers; all stop at teardown."""
    servers: list[EchoServer] = []

    def start() -> EchoServer:
        servers.append(EchoServer())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def echo(start_echo: Callable[[], EchoServer]) -> EchoServer:
    """A TCP echo upstream."""
    return start_echo()


@pytest.fixture
def proxy(api: Api, echo: EchoServer) -> dict[str, Any]:
    """A fresh enabled proxy on 127.0.0.1:<free port> in front of ``echo``."""
    return api.create_proxy(echo.address)


# -- TCP clients -------------------------------------------------------------------


@dataclass(frozen=True)
class Closed:
    """How a connection ended: the bytes read before, ``eof`` or ``reset``, and when."""

    data: bytes
    how: str
    at: float


class Client:
    """A blocking client socket with the reads the conformance tests need."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=IO_TIMEOUT)
        self.connected_at = time.monotonic()

    def send(self, data: bytes) -> float:
        """Send everything; return the monotonic time just before sending."""
        started = time.monotonic()
        self.sock.sendall(data)
        return started

    def shutdown_write(self) -> float:
        """Half-close (send FIN); return the monotonic time just before."""
        started = time.monotonic()
        self.sock.shutdown(socket.SHUT_WR)
        return started

    def recv_exactly(self, size: int, timeout: float = IO_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        data = bytearray()
        while len(data) < size:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"only {len(data)} of {size} bytes arrived within {timeout}s: {bytes(data)!r}"
                ) from None
            if not chunk:
                raise AssertionError(f"closed after {len(data)} of {size} bytes: {bytes(data)!r}")
            data += chunk
        return bytes(data)

    def recv_pieces(self, size: int, timeout: float = IO_TIMEOUT) -> list[bytes]:
        """Read ``size`` bytes; return them as the separate recv() results they came in."""
        deadline = time.monotonic() + timeout
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < size:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            piece = self.sock.recv(65536)
            assert piece, f"closed after {sum(map(len, pieces))} of {size} bytes"
            pieces.append(piece)
        return pieces

    def round_trip(self, payload: bytes, timeout: float = IO_TIMEOUT) -> float:
        """Send ``payload``, read the echo back, return the seconds it took."""
        started = self.send(payload)
        assert self.recv_exactly(len(payload), timeout) == payload
        return time.monotonic() - started

    def read_until_closed(self, timeout: float = IO_TIMEOUT) -> Closed:
        """Read until the peer closes; fail if the connection is still open at the deadline."""
        deadline = time.monotonic() + timeout
        data = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"still open after {timeout}s; read {bytes(data)!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return Closed(bytes(data), "reset", time.monotonic())
            if not chunk:
                return Closed(bytes(data), "eof", time.monotonic())
            data += chunk

    def expect_quiet(self, seconds: float) -> None:
        """Wait ``seconds`` and fail if any byte, EOF or reset arrives meanwhile."""
        self.sock.settimeout(seconds)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            raise AssertionError(f"connection reset within {seconds}s") from None
        what = f"data {chunk!r}" if chunk else "EOF"
        raise AssertionError(f"{what} arrived within {seconds}s; expected nothing")

    def close(self) -> None:
        self.sock.close()


class Connector:
    """Opens client connections to proxies and closes them all at teardown."""

    def __init__(self) -> None:
        self.clients: list[Client] = []

    def __call__(self, target: dict[str, Any] | str) -> Client:
        address = target if isinstance(target, str) else target["listen"]
        self.clients.append(Client(address))
        return self.clients[-1]

    @staticmethod
    def assert_refused(target: dict[str, Any] | str) -> None:
        address = target if isinstance(target, str) else target["listen"]
        host, port = address.rsplit(":", 1)
        try:
            sock = socket.create_connection((host, int(port)), timeout=IO_TIMEOUT)
        except ConnectionRefusedError:
            return
        sock.close()
        raise AssertionError(f"{address} accepted a connection; expected it to refuse")

    def close_all(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def connect() -> Iterator[Connector]:
    """``connect(proxy_or_address)`` opens a :class:`Client`; all are closed at teardown."""
    connector = Connector()
    yield connector
    connector.close_all()
