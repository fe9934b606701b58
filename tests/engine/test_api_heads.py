"""The API reads a request head it has seen before from memory (``http11.Heads``): every
answer must be the one h11's reading gives, however the bytes arrive."""

from __future__ import annotations

import base64
import itertools
import re
import socket
import time
from typing import Any

import h11
import pytest
from net import read_at_most
from processes import wait_for

from pytest_resilience.engine import Engine
from pytest_resilience.engine.http11 import request_ids

from .support import IO_TIMEOUT, EchoUpstream, create_proxy

UPDATE = b'{"enabled": true}'
UPDATE_HEAD = (
    b"POST /proxies/target HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
    b"Content-Length: 17\r\n\r\n"
)
VERSION = b"GET /version HTTP/1.1\r\nHost: engine\r\n\r\n"
# Each case: what the client sends, piece by piece; each piece is sent once the server
# holds every byte before it (so that a piece is read on its own).  Then the client ends
# its side and reads until the server closes.
CASES = {
    "get": [VERSION],
    "one-after-another": [VERSION, UPDATE_HEAD + UPDATE, VERSION],
    "post-with-body": [UPDATE_HEAD + UPDATE],
    "body-after-the-head": [UPDATE_HEAD, UPDATE],
    "head-cut-in-two": [UPDATE_HEAD[:20], UPDATE_HEAD[20:] + UPDATE],
    "pipelined": [UPDATE_HEAD + UPDATE + VERSION + UPDATE_HEAD + UPDATE],
    "pipelined-cut-in-a-body": [VERSION + UPDATE_HEAD + UPDATE[:4], UPDATE[4:] + VERSION],
    "http-1.0": [b"GET /version HTTP/1.0\r\n\r\n" + VERSION],
    "connection-close": [
        b"GET /version HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n" + VERSION
    ],
    "ended-in-the-body": [UPDATE_HEAD + UPDATE[:5]],
    "unknown-route-with-body": [
        b"POST /no/such/route HTTP/1.1\r\nHost: e\r\nContent-Length: 17\r\n\r\n" + UPDATE + VERSION
    ],
    "head-request": [b"HEAD /version HTTP/1.1\r\nHost: e\r\n\r\n" + VERSION],
}
_STAMPS = re.compile(rb"(Date|X-Toxiproxy-Request-Id): [^\r]*\r\n")


def transcript(engine: Engine, pieces: list[bytes]) -> bytes:
    """What the server answered to ``pieces``, without its dates and request ids."""
    api = engine._api
    assert api is not None
    with socket.create_connection(("127.0.0.1", engine.port), timeout=IO_TIMEOUT) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        for i, piece in enumerate(pieces):
            conn.sendall(piece)
            sent += len(piece)
            if i < len(pieces) - 1:
                wait_for(
                    lambda sent=sent: any(c.received >= sent for c in api._open),
                    timeout=IO_TIMEOUT,
                    what=f"the server to read the first {sent} bytes",
                    interval=0.001,
                )
        conn.shutdown(socket.SHUT_WR)
        answer = read_at_most(conn, 1 << 20)
    return _STAMPS.sub(b"", answer)


@pytest.mark.parametrize("case", CASES)
def test_a_head_read_from_memory_answers_as_h11_read_it(
    engine: Engine, upstream: EchoUpstream, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first time through, h11 reads every head; the second time, the heads it read
    whole are known: the answers must be byte for byte the same (dates and ids aside),
    and h11 is not asked again."""
    create_proxy(engine.url, "target", upstream.address)
    readings = []

    class Counted(h11.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            readings.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(h11, "Connection", Counted)
    first = transcript(engine, CASES[case])
    read_first = len(readings)

    again = transcript(engine, CASES[case])

    assert first.startswith(b"HTTP/1.1 "), first[:200]
    assert again == first
    # A head that arrives in pieces is h11's to read (it judges a part: garbage is refused
    # at its first byte); in "ended-in-the-body" none was read whole, so none is known.
    if case not in ("head-cut-in-two", "ended-in-the-body"):
        assert read_first > 0
        assert len(readings) == read_first  # every head the second time from memory


def test_request_ids_carry_the_time_one_process_and_a_counter_as_xid_does() -> None:
    """github.com/rs/xid (id.go, ``NewWithTime``): 4 bytes of seconds, 3 of the machine, 2
    of the pid, a 3-byte counter, encoded in 20 lowercase base32hex letters."""
    ids = request_ids()
    before = int(time.time())
    raw = [base64.b32hexdecode(next(ids).upper() + "====") for _ in range(3000)]
    after = int(time.time())

    assert all(before <= int.from_bytes(r[:4], "big") <= after for r in raw)
    assert len({r[4:9] for r in raw}) == 1
    counters = [int.from_bytes(r[9:], "big") for r in raw]
    assert all((b - a) % (1 << 24) == 1 for a, b in itertools.pairwise(counters))
