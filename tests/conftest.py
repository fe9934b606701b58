from __future__ import annotations

import os
import random
import shutil
import socketserver
import threading
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]


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


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    """A TCP echo server on a loopback port the OS chose."""
    server = EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def seeded_jitter(request: pytest.FixtureRequest) -> Iterator[None]:
    """The global ``random``, from which retry libraries draw their jitter, seeded with the
    test module's ``JITTER_SEED`` so that the draws replay; its state is restored after.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("seeded_jitter")``."""
    state = random.getstate()
    random.seed(request.module.JITTER_SEED)
    yield
    random.setstate(state)


def pytest_configure(config: pytest.Config) -> None:
    # CI sets this so that a missing Toxiproxy fails the run instead of going unnoticed.
    if os.environ.get("RESILIENCE_REQUIRE_TOXIPROXY") and not shutil.which("toxiproxy-server"):
        raise pytest.UsageError(
            "RESILIENCE_REQUIRE_TOXIPROXY is set but toxiproxy-server is not on PATH; "
            "run bash .ci/install-toxiproxy and put .bin/ on PATH."
        )
