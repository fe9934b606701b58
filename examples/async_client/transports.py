"""Two async HTTP stacks behind one small interface, so the retry logic is written once.

Each transport makes one attempt and either returns the whole answer or raises
:class:`TransportError`: refused, reset, timed out, or cut off halfway through the
body are all the same thing to the caller (no usable answer, maybe processed).
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx


class TransportError(Exception):
    """The attempt got no complete answer; the server may or may not have acted on it."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class Transport(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer: ...

    async def aclose(self) -> None: ...


class HttpxTransport:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient()

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        try:
            response = await self._client.request(
                method, url, json=json, headers=headers, timeout=timeout
            )
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return Answer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class AiohttpTransport:
    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        # A ClientSession belongs to the running loop: create the transport inside it.
        self._session = session or aiohttp.ClientSession()

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        try:
            async with self._session.request(
                method,
                url,
                json=json,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return Answer(response.status, response.headers, body)

    async def aclose(self) -> None:
        await self._session.close()
