"""Forward mode: the HTTP layer as a reverse proxy to a real upstream."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pytest_resilience import ConfigurationError
from pytest_resilience.resilience import Resilience
from pytest_resilience.services.http import HttpService

from .support import (
    call,
    settled,
    via_requests,
)

# -- forward mode ------------------------------------------------------------------------


UPSTREAM_STATUSES = {"/api/charges": 201, "/api/declined": 402, "/api/broken": 500}
"""What the forward-mode upstream answers per path (200 otherwise)."""


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))  # type: ignore[attr-defined]
        status = UPSTREAM_STATUSES.get(self.path.split("?")[0], 200)
        payload = json.dumps(
            {"method": self.command, "path": self.path, "body": body.decode()}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def forwarded(resilience: Resilience, upstream: ThreadingHTTPServer) -> HttpService:
    port = upstream.server_address[1]
    return resilience.http_service("payments", forward_to=f"http://127.0.0.1:{port}/api")


def test_forward_mode_relays_requests_and_answers(
    forwarded: HttpService, upstream: ThreadingHTTPServer, client: str
) -> None:
    reply = call(
        client,
        "POST",
        forwarded.url + "/charges?expand=customer",
        headers={"Idempotency-Key": "k1"},
        body=b'{"amount": 1}',
    )

    assert reply.status == 201
    assert reply.headers["x-upstream"] == "yes"
    assert reply.json() == {
        "method": "POST",
        "path": "/api/charges?expand=customer",
        "body": '{"amount": 1}',
    }
    assert upstream.seen == [("POST", "/api/charges?expand=customer", b'{"amount": 1}')]  # type: ignore[attr-defined]
    [e] = settled(forwarded, 1)
    assert (e.status, e.step, e.scripted, e.delivered) == (201, "forward", False, True)
    assert forwarded.forward_to == f"http://127.0.0.1:{upstream.server_address[1]}/api"


def test_forward_mode_effects_are_only_2xx_answers_to_unsafe_methods(
    forwarded: HttpService, upstream: ThreadingHTTPServer
) -> None:
    for method, path in [
        ("POST", "/charges"),  # 201
        ("POST", "/declined"),  # 402
        ("POST", "/broken"),  # 500
        ("GET", "/charges/1"),  # 200, safe
        ("HEAD", "/charges/1"),  # 200, safe
        ("PUT", "/charges/1"),  # 200
        ("DELETE", "/charges/1"),  # 200
    ]:
        via_requests(method, forwarded.url + path)

    assert [(e.method, e.path, e.status) for e in forwarded.effects] == [
        ("POST", "/charges", 201),
        ("PUT", "/charges/1", 200),
        ("DELETE", "/charges/1", 200),
    ]
    assert len(upstream.seen) == 7  # type: ignore[attr-defined]


def test_forward_mode_faults_answer_before_the_upstream_is_reached(
    forwarded: HttpService, upstream: ThreadingHTTPServer
) -> None:
    forwarded.rate_limit(burst=1, retry_after=1)
    forwarded.route("POST", "/charges").fail(503, count=1)

    statuses = [via_requests("POST", forwarded.url + "/charges").status for _ in range(3)]

    assert statuses == [429, 503, 201]
    assert len(upstream.seen) == 1  # type: ignore[attr-defined]
    assert len(forwarded.effects) == 1


def test_forward_mode_with_a_down_upstream_answers_502(resilience: Resilience) -> None:
    # Bound but not listening: the port stays ours (no listener of this test can get it)
    # and connecting to it is refused.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        service = resilience.http_service("gone", forward_to=f"http://127.0.0.1:{port}")

        reply = via_requests("POST", service.url + "/charges")

    assert reply.status == 502
    assert service.effects == []


def test_forward_to_must_be_an_http_url(resilience: Resilience) -> None:
    with pytest.raises(ConfigurationError, match=r"forward_to must be an http://host:port URL"):
        resilience.http_service("payments", forward_to="https://example.com")
