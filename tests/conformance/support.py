"""What the API conformance tests share: the shapes and error bodies Toxiproxy 2.12.0
answers with, and small helpers.

Expectations are what a real Toxiproxy 2.12.0 answers; the embedded engine must answer
the same.  Where the real server's message comes from Go itself (JSON decoder and
``net.Listen`` errors), only its stable prefix or gist is pinned.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

PROXY_KEYS = {"name", "listen", "upstream", "enabled", "toxics"}
TOXIC_KEYS = {"name", "type", "stream", "toxicity", "attributes"}

PROXY_NOT_FOUND = {"error": "proxy not found", "status": 404}
TOXIC_NOT_FOUND = {"error": "toxic not found", "status": 404}
PROXY_EXISTS = {"error": "proxy already exists", "status": 409}
TOXIC_EXISTS = {"error": "toxic already exists", "status": 409}
INVALID_TOXIC_TYPE = {"error": "invalid toxic type", "status": 400}
INVALID_STREAM = {
    "error": "stream was invalid, can be either upstream or downstream",
    "status": 400,
}

DEFAULT_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},  # Toxiproxy's internal pass-through toxic is a valid type too
}


def shape(proxy: dict[str, Any]) -> dict[str, Any]:
    """The proxy object without Toxiproxy's stray ``Logger`` key, which clients ignore."""
    return {key: value for key, value in proxy.items() if key != "Logger"}


def assert_bad_request_body(response: Any) -> None:
    """400 whose message starts ``bad request body: `` (the rest is Go's decoder error)."""
    __tracebackhide__ = True
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400, body
    assert body["error"].startswith("bad request body: "), body


def port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


@contextlib.contextmanager
def refusing_address() -> Iterator[str]:
    """An address that refuses connections (bound, never listening) while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
