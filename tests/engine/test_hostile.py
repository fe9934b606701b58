"""Hostile requests to the engine's API get Toxiproxy's answer, and the engine keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass

import pytest
import requests
from net import read_at_most, read_until
from processes import wait_for

from pytest_resilience.engine import VERSION, Engine
from pytest_resilience.engine.api import DEFER_ACCEPT, MAX_BODY

from .support import (
    API_TIMEOUT,
    IO_TIMEOUT,
    EchoUpstream,
    create_proxy,
    echo_round_trip,
    port_of,
)


@dataclass
class Hostile:
    method: str
    path: str
    body: bytes | None
    status: int
    error: str | None = None
    """What the JSON error message starts with; None: not checked."""
    changes_nothing: bool = True


def _junk_proxy(extra: str) -> bytes:
    return ('{"name": "junk", "upstream": "127.0.0.1:1", "enabled": false, ' + extra + "}").encode()


BAD_BODY = "bad request body: "
HOSTILE = {
    # The answers are Toxiproxy 2.12.0's, each checked against the real server.
    "malformed-json": Hostile("POST", "/proxies", b"{name: junk}", 400, BAD_BODY),
    "truncated-json": Hostile(
        "POST", "/proxies", b'{"name": "junk", "upstream": "127.', 400, BAD_BODY
    ),
    "20mb-body": Hostile("POST", "/proxies", b"x" * (20 << 20), 400, BAD_BODY),
    # Go's decoder stops at 10,000 levels ("exceeded max depth"); Python's recursion limit is lower.
    "deeply-nested-json": Hostile(
        "POST", "/proxies", b"[" * 200_000 + b"]" * 200_000, 400, BAD_BODY
    ),
    # Python refuses to convert integers over 4,300 digits; Go never converts an ignored
    # field, and refuses a number where a string belongs.
    "5000-digit-number-as-name": Hostile(
        "POST",
        "/proxies",
        b'{"upstream": "127.0.0.1:1", "name": ' + b"7" * 5000 + b"}",
        400,
        BAD_BODY,
    ),
    "5000-digit-number-in-unknown-field": Hostile(
        "POST", "/proxies", _junk_proxy('"port": ' + "7" * 5000), 201, changes_nothing=False
    ),
    # NaN is not JSON; Python's decoder takes it, Go's refuses it.
    "nan-literal": Hostile("POST", "/proxies", _junk_proxy('"weight": NaN'), 400, BAD_BODY),
    "enabled-as-string": Hostile("POST", "/proxies/target", b'{"enabled": "yes"}', 400, BAD_BODY),
    "attribute-as-string": Hostile(
        "POST",
        "/proxies/target/toxics",
        b'{"type": "latency", "attributes": {"latency": "slow"}}',
        400,
        BAD_BODY,
    ),
    "attribute-beyond-int64": Hostile(
        "POST",
        "/proxies/target/toxics",
        b'{"type": "latency", "attributes": {"latency": 9223372036854775808}}',
        400,
        BAD_BODY,
    ),
    "toxicity-beyond-float32": Hostile(
        "POST", "/proxies/target/toxics", b'{"type": "latency", "toxicity": 1e400}', 400, BAD_BODY
    ),
    "toxicity-nan": Hostile(
        "POST", "/proxies/target/toxics", b'{"type": "latency", "toxicity": NaN}', 400, BAD_BODY
    ),
    "attributes-as-list": Hostile(
        "POST", "/proxies/target/toxics", b'{"type": "slicer", "attributes": [1, 2]}', 400, BAD_BODY
    ),
    "unknown-toxic-type": Hostile(
        "POST", "/proxies/target/toxics", b'{"type": "earthquake"}', 400, "invalid toxic type"
    ),
    "unknown-route": Hostile("GET", "/proxies/target/nothing/here", None, 404),
    "unknown-top-level-route": Hostile("POST", "/shutdown", b"{}", 404),
    "wrong-method-on-version": Hostile("DELETE", "/version", None, 405),
    "wrong-method-on-toxics": Hostile("PUT", "/proxies/target/toxics", b"{}", 405),
}


@pytest.fixture
def target(engine: Engine, upstream: EchoUpstream) -> int:
    """A proxy called ``target`` in front of the echo upstream; its port."""
    return create_proxy(engine.url, "target", upstream.address)


def assert_still_serving(engine: Engine, upstream: EchoUpstream, target: int) -> None:
    """A normal request answers, a new proxy works, and ``target`` still echoes."""
    __tracebackhide__ = True
    version = requests.get(f"{engine.url}/version", timeout=API_TIMEOUT)
    assert version.status_code == 200, version.text
    assert version.json()["version"].startswith("2.")
    port = create_proxy(engine.url, f"after-{time.monotonic_ns()}", upstream.address)
    assert echo_round_trip(port) == b"ping"
    assert echo_round_trip(target) == b"ping"


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_request_gets_toxiproxys_answer_and_the_engine_keeps_serving(
    engine: Engine, upstream: EchoUpstream, target: int, case: Hostile
) -> None:
    before = requests.get(f"{engine.url}/proxies", timeout=API_TIMEOUT).json()

    response = requests.request(
        case.method, f"{engine.url}{case.path}", data=case.body, timeout=API_TIMEOUT
    )

    assert response.status_code == case.status, response.text[:300]
    if case.error is not None:
        assert response.json()["status"] == case.status
        assert response.json()["error"].startswith(case.error), response.text[:300]
    if case.changes_nothing:
        assert requests.get(f"{engine.url}/proxies", timeout=API_TIMEOUT).json() == before
    assert_still_serving(engine, upstream, target)


def test_body_just_over_the_limit_is_refused_and_the_engine_keeps_serving(
    engine: Engine, upstream: EchoUpstream, target: int
) -> None:
    response = requests.post(
        f"{engine.url}/proxies", data=b" " * (MAX_BODY + 1), timeout=API_TIMEOUT
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith(BAD_BODY)
    assert_still_serving(engine, upstream, target)


def test_five_megabyte_valid_body_creates_the_proxy(
    engine: Engine, upstream: EchoUpstream, target: int
) -> None:
    """Unknown fields are ignored however many there are, as Go's decoder does."""
    silly = {
        "name": "silly",
        "upstream": upstream.address,
        "listen": "127.0.0.1:0",
        "padding": [7] * 2_600_000,
        "notes": {f"note{i}": "x" * 8 for i in range(20_000)},
    }
    body = json.dumps(silly, separators=(",", ":")).encode()
    assert len(body) > 5 << 20

    response = requests.post(f"{engine.url}/proxies", data=body, timeout=API_TIMEOUT)

    assert response.status_code == 201, response.text[:300]
    assert echo_round_trip(port_of(response.json()["listen"])) == b"ping"
    assert_still_serving(engine, upstream, target)


FOLLOW_UP = b"GET /version HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n\r\n"


@dataclass
class Pipelined:
    """The first answer's status and headers, and every byte the server sent after them."""

    status: int
    headers: dict[str, str]
    rest: bytes


def pipelined(port: int, first: bytes) -> Pipelined:
    """Send ``first`` and FOLLOW_UP on one connection at once, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as conn:
        conn.sendall(first + FOLLOW_UP)
        raw = read_at_most(conn, 1 << 20)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return Pipelined(
        int(status_line.split(" ")[1]), {k.lower(): v for k, v in headers.items()}, rest
    )


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        (b"PUT /proxies/target/toxics HTTP/1.1", 405),
        (b"POST /no/such/route HTTP/1.1", 404),
        (b"POST /proxies HTTP/1.1\r\nUser-Agent: Mozilla/5.0", 403),
    ],
    ids=["wrong-method", "unknown-route", "browser"],
)
def test_body_of_a_refused_request_is_skipped_and_the_connection_stays_in_step(
    engine: Engine, request_line: bytes, status: int
) -> None:
    """Left unread, the body would be parsed as the next request on the connection."""
    body = b'{"name": "x"}'
    request = request_line + b"\r\nHost: engine\r\nContent-Length: 13\r\n\r\n" + body

    answer = pipelined(engine.port, request)

    assert answer.status == status
    next_answer = answer.rest[int(answer.headers.get("content-length", "0")) :]
    assert next_answer.startswith(b"HTTP/1.1 200 "), next_answer[:300]
    assert f'{{"version": "{VERSION}"}}\n'.encode() in next_answer, next_answer[:300]


@pytest.mark.parametrize(("path", "status"), [("/no/such/route", 404), ("/version", 405)])
def test_head_request_is_answered_without_a_body_and_the_connection_stays_in_step(
    engine: Engine, path: str, status: int
) -> None:
    """A body after a HEAD answer would be read as the start of the next response."""
    answer = pipelined(engine.port, f"HEAD {path} HTTP/1.1\r\nHost: engine\r\n\r\n".encode())

    assert answer.status == status
    assert answer.rest.startswith(b"HTTP/1.1 200 "), answer.rest[:300]


def test_chunked_request_body_is_read_and_the_connection_stays_in_step(
    engine: Engine, upstream: EchoUpstream, target: int
) -> None:
    """A body sent with Transfer-Encoding: chunked (requests does so for an iterable) counts."""
    parts = [b'{"name": "chunked", ', f'"upstream": "{upstream.address}"}}'.encode()]
    with requests.Session() as session:
        created = session.post(f"{engine.url}/proxies", data=iter(parts), timeout=API_TIMEOUT)
        # The next request on the same keep-alive connection must get its own answer.
        version = session.get(f"{engine.url}/version", timeout=API_TIMEOUT)

    assert created.status_code == 201, created.text
    assert version.status_code == 200, version.text
    assert version.json()["version"].startswith("2.")
    assert_still_serving(engine, upstream, target)


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1e3"])
def test_invalid_content_length_answers_400_and_the_engine_keeps_serving(
    engine: Engine, upstream: EchoUpstream, target: int, length: bytes
) -> None:
    request = (
        b"POST /proxies HTTP/1.1\r\nHost: engine\r\nContent-Length: "
        + length
        + b"\r\nConnection: close\r\n\r\n{}"
    )
    with socket.create_connection(("127.0.0.1", engine.port), timeout=IO_TIMEOUT) as conn:
        conn.sendall(request)
        answer = read_at_most(conn, 1 << 16)

    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert_still_serving(engine, upstream, target)


def test_garbage_instead_of_http_is_refused_and_the_engine_keeps_serving(
    engine: Engine, upstream: EchoUpstream, target: int
) -> None:
    with socket.create_connection(("127.0.0.1", engine.port), timeout=IO_TIMEOUT) as conn:
        conn.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        answer = read_at_most(conn, 1 << 16)

    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
    assert_still_serving(engine, upstream, target)


def test_pipelined_requests_from_a_client_that_does_not_read_wait_then_are_all_answered(
    engine: Engine,
) -> None:
    """2,000 requests sent at once by a client that reads nothing for a while: once the
    kernel's buffers and the transport's are full, the API stops reading and answering
    (it does not answer into memory without end), then answers every one in order.
    (Reaches into the engine: the API's side of the connection gets a small send buffer,
    and the test waits until it holds its answers.)"""
    count = 2000
    request = b"GET /version HTTP/1.1\r\nHost: engine\r\n\r\n"
    with socket.socket() as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        conn.settimeout(IO_TIMEOUT)
        conn.connect(("127.0.0.1", engine.port))
        conn.sendall(request)  # answered before the test: the connection is taken
        read_until(conn, b"}\n")
        api = engine._api
        assert api is not None
        # The engine's side of the connection with a small send buffer too, so that the
        # kernel does not absorb the answers (it takes up to 4 MiB on loopback).
        served = wait_for(
            lambda: next(iter(api._open), None), timeout=IO_TIMEOUT, what="a connection"
        )
        served.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sender = threading.Thread(target=conn.sendall, args=(request * count,), daemon=True)
        sender.start()
        held = wait_for(
            lambda: next((c for c in api._open if c.held), None),
            timeout=IO_TIMEOUT,
            what="the API to hold its answers",
        )
        assert len(held.unsent) < 65536  # no more read, nor answered, meanwhile
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < count or not received.endswith(b"}\n"):
            chunk = conn.recv(65536)
            assert chunk, f"closed after {received.count(b'HTTP/1.1 ')} answers"
            received += chunk
        sender.join(timeout=IO_TIMEOUT)
        assert not sender.is_alive()
    ids = [line for line in received.split(b"\r\n") if line.startswith(b"X-Toxiproxy-Request-Id")]
    assert len(ids) == count and len(set(ids)) == count


def test_a_client_that_connects_and_waits_is_taken_and_answered_when_it_speaks(
    engine: Engine,
) -> None:
    """The API's listener reports a connection once its first bytes arrive (Linux's
    TCP_DEFER_ACCEPT, ``api.DEFER_ACCEPT``).  One that sends nothing is still taken (the
    kernel hands it over after about a second, where Toxiproxy takes it at once), and is
    answered when it speaks.  (Reaches into the engine for its listener and connection.)"""
    api = engine._api
    assert api is not None
    if DEFER_ACCEPT is not None:
        listener = api._listeners[0]
        assert listener.getsockopt(socket.IPPROTO_TCP, DEFER_ACCEPT)
    with socket.create_connection(("127.0.0.1", engine.port), timeout=IO_TIMEOUT) as conn:
        taken = wait_for(
            lambda: next(iter(api._open), None), timeout=IO_TIMEOUT, what="the idle connection"
        )
        # Set on the listener, TCP_NODELAY is the accepted connection's, as Go sets it.
        assert taken.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        conn.sendall(b"GET /version HTTP/1.1\r\nHost: engine\r\n\r\n")
        answer = read_until(conn, b"}\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and VERSION.encode() in answer


def test_an_operation_that_fails_unexpectedly_ends_its_connection_only(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect in an operation (here: /version made to raise) ends that request's
    connection, as Go's server ends one whose handler panicked, whether it raised at once
    or after waiting; the engine serves the next request."""
    blocked = asyncio.Event()

    async def raises_at_once() -> None:
        raise RuntimeError("a defect")

    async def raises_after_waiting() -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(blocked.wait(), 0.01)
        raise RuntimeError("a defect")

    url = f"http://127.0.0.1:{engine.port}"
    for broken in (raises_at_once, raises_after_waiting):
        with monkeypatch.context() as patch:
            patch.setattr(engine.collection, "get_version", broken)
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{url}/version", timeout=API_TIMEOUT)
        assert requests.get(f"{url}/version", timeout=API_TIMEOUT).json() == {"version": VERSION}
    api = engine._api
    assert api is not None
    wait_for(lambda: not api._open, timeout=IO_TIMEOUT, what="every API connection to close")
