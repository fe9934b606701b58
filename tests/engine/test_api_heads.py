"""The API reads a request head it has seen before from memory (``http11.Heads``): every
answer must be the one h11's reading gives, however the bytes arrive."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import socket
from typing import Any

import h11
import pytest
from net import read_at_most
from processes import wait_for

from pytest_resilience.engine import Engine, http11
from pytest_resilience.engine.http11 import Heads, request_ids

from .support import IO_TIMEOUT, EchoUpstream, create_proxy

UPDATE = b'{"enabled": true}'
UPDATE_HEAD = (
    b"POST /proxies/target HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
    b"Content-Length: 17\r\n\r\n"
)
VERSION = b"GET /version HTTP/1.1\r\nHost: engine\r\n\r\n"
CHUNKED = (
    b"POST /proxies/target HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"11\r\n" + UPDATE + b"\r\n0\r\n\r\n"
)
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
    "known-head-ended-in-the-body": [UPDATE_HEAD + UPDATE + UPDATE_HEAD + UPDATE[:5]],
    "unknown-route-with-body": [
        b"POST /no/such/route HTTP/1.1\r\nHost: e\r\nContent-Length: 17\r\n\r\n" + UPDATE + VERSION
    ],
    "head-request": [b"HEAD /version HTTP/1.1\r\nHost: e\r\n\r\n" + VERSION],
    "bad-escape": [b"GET /proxies/a%zz HTTP/1.1\r\nHost: e\r\n\r\n" + VERSION],
    "expect-100-continue": [
        UPDATE_HEAD[:-2] + b"Expect: 100-continue\r\n\r\n",
        UPDATE + VERSION,
    ],
    "chunked": [CHUNKED + VERSION],
    "head-ended-by-bare-newlines": [b"GET /version HTTP/1.1\nHost: e\n\n" + VERSION],
    "leading-blank-line": [b"\r\n" + VERSION],
}
HEADS_LEFT_TO_H11 = {
    "head-cut-in-two": "a head that arrives in parts (h11 judges a part: garbage is refused "
    "at its first byte)",
    "ended-in-the-body": "no head read whole, so none known",
    "known-head-ended-in-the-body": "a known head whose body the client's end cut short",
    "expect-100-continue": "h11 answers 100 Continue",
    "chunked": "a body not framed by its length",
    "head-ended-by-bare-newlines": "h11 ends it at a blank line without CR",
    "leading-blank-line": "h11 refuses it: never read whole",
}
_STAMPS = re.compile(rb"(Date|X-Toxiproxy-Request-Id): [^\r]*\r\n")


def transcript(engine: Engine, pieces: list[bytes]) -> bytes:
    """What the server answered to ``pieces``, without its dates and request ids."""
    api = engine._api
    assert api is not None
    with socket.create_connection(("127.0.0.1", engine.port), timeout=IO_TIMEOUT) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        me = conn.getsockname()
        sent = 0
        for i, piece in enumerate(pieces):
            conn.sendall(piece)
            sent += len(piece)
            if i < len(pieces) - 1:
                wait_for(
                    lambda sent=sent: any(c.received >= sent for c in api._open if c.peer == me),
                    timeout=IO_TIMEOUT,
                    what=f"the server to read the first {sent} bytes",
                    interval=0.001,
                )
        conn.shutdown(socket.SHUT_WR)
        answer = read_at_most(conn, 1 << 20)
    return _STAMPS.sub(b"", answer)


@pytest.mark.parametrize("waits", [False, True], ids=["at-once", "version-waits"])
@pytest.mark.parametrize("case", CASES)
def test_a_head_read_from_memory_answers_as_h11_read_it(
    engine: Engine,
    upstream: EchoUpstream,
    case: str,
    waits: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The answers to heads the engine knows are byte for byte those h11's reading gives
    (dates and ids aside): h11 alone reads every head for the reference (nothing is
    learned), then once more to learn them, then the same bytes are sent again.  With
    ``version-waits`` GET /version finishes in a task, after a wait."""
    create_proxy(engine.url, "target", upstream.address)
    if waits:
        answer = engine.collection.get_version

        async def after_a_wait() -> Any:
            await asyncio.sleep(0)
            return await answer()

        monkeypatch.setattr(engine.collection, "get_version", after_a_wait)
    with monkeypatch.context() as patch:
        patch.setattr(Heads, "learn", lambda *_: None)
        reference = transcript(engine, CASES[case])
    transcript(engine, CASES[case])
    readings = []

    class Counted(h11.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            readings.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(h11, "Connection", Counted)
    again = transcript(engine, CASES[case])

    assert reference.startswith(b"HTTP/1.1 "), reference[:200]
    assert again == reference
    if case not in HEADS_LEFT_TO_H11:
        assert readings == []  # every head from memory


def test_request_ids_are_xids_of_the_time_this_process_and_a_counter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """github.com/rs/xid (id.go, ``NewWithTime``): 4 bytes of seconds, 3 of the machine, 2
    of the pid, a 3-byte counter from a random start, in 20 lowercase base32hex letters;
    each id against that encoding done plainly, across seconds and the counter's wrap."""
    randoms = iter([bytes.fromhex("a1b2c3"), bytes.fromhex("fffffd")])
    monkeypatch.setattr(os, "urandom", lambda n: next(randoms))
    monkeypatch.setattr(os, "getpid", lambda: 0x12345)
    clock = itertools.count(1_764_000_000 * 2)
    monkeypatch.setattr(http11, "real_wall", lambda: next(clock) / 2)  # a second every 2 reads
    ids = request_ids()
    process = bytes.fromhex("a1b2c3") + (0x12345 & 0xFFFF).to_bytes(2, "big")

    made = [next(ids) for _ in range(12)]

    seconds = [int(base64.b32hexdecode(i.upper() + "====")[:4].hex(), 16) for i in made]
    plain = [
        base64.b32hexencode(
            second.to_bytes(4, "big") + process + ((0xFFFFFE + k) & 0xFFFFFF).to_bytes(3, "big")
        )
        .decode()
        .rstrip("=")
        .lower()
        for k, second in enumerate(seconds)
    ]
    assert made == plain
    assert len(set(seconds)) > 3  # the time moved on
