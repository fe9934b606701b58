"""What the HTTP service tests share: four real clients giving one shape of answer, raw
sockets for what libraries hide, and waiting for settled records."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx
import real_clients
import requests

from pytest_resilience.http.records import Exchange
from pytest_resilience.services.http import HttpService

T = TypeVar("T")

FAST = 0.25
"""Upper bound for an answer with no fault, with room for a loaded 2-core machine."""
DELAY = 0.3
"""Delays and latencies the timing tests inject, in seconds; above FAST."""
CHARGE = {"amount": 1999, "currency": "eur"}


WAIT = 3.0
"""Seconds a test waits for a condition before it fails (what test_http.py waited)."""


def settled(service: HttpService, count: int) -> list[Exchange]:
    """The service's exchanges once ``count`` of them exist and each knows if it was delivered."""
    return real_clients.settled(service, count, timeout=WAIT)


# -- four real clients, one shape of answer ---------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def via_requests(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    r = requests.request(method, url, headers=headers, data=body, timeout=2)
    return Reply(r.status_code, _lower(r.headers), r.content)


def via_httpx(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    with httpx.Client(timeout=2) as client:
        r = client.request(method, url, headers=headers, content=body)
    return Reply(r.status_code, _lower(r.headers), r.content)


def via_httpx_async(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    async def go() -> Reply:
        async with httpx.AsyncClient(timeout=2) as client:
            r = await client.request(method, url, headers=headers, content=body)
        return Reply(r.status_code, _lower(r.headers), r.content)

    return asyncio.run(go())


def via_aiohttp(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    async def go() -> Reply:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:  # noqa: SIM117
            async with session.request(method, url, headers=headers, data=body) as r:
                return Reply(r.status, _lower(r.headers), await r.read())

    return asyncio.run(go())


CLIENTS: dict[str, Callable[..., Reply]] = {
    "requests": via_requests,
    "httpx": via_httpx,
    "httpx_async": via_httpx_async,
    "aiohttp": via_aiohttp,
}
# What each client raises when the connection closes partway through a body.
INCOMPLETE_READ: dict[str, tuple[type[BaseException], ...]] = {
    "requests": (requests.exceptions.ChunkedEncodingError,),
    "httpx": (httpx.RemoteProtocolError,),
    "httpx_async": (httpx.RemoteProtocolError,),
    "aiohttp": (aiohttp.ClientPayloadError,),
}
# ... and when it closes before a whole answer head (any broken answer).
BROKEN_ANSWER: dict[str, tuple[type[BaseException], ...]] = {
    "requests": (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError),
    "httpx": (httpx.RemoteProtocolError, httpx.ReadError),
    "httpx_async": (httpx.RemoteProtocolError, httpx.ReadError),
    "aiohttp": (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError),
}


def call(client: str, method: str, url: str, **kwargs: Any) -> Reply:
    return CLIENTS[client](method, url, **kwargs)


# -- raw sockets, for what libraries hide -------------------------------------------------


def connect(service: HttpService, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((service.host, service.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}; got {data!r}")
        data += chunk
    return data
