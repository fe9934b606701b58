"""The embedded engine: a Toxiproxy-compatible server inside the package.

It speaks Toxiproxy 2.12's HTTP API (same routes, JSON, status codes and toxic
semantics), so the plugin's one control path drives it like a real server.
Its randomness (jitter, toxicity, slicer sizes) comes from ``seed``.

    engine = Engine(seed=1234)
    url = engine.start()        # "http://127.0.0.1:PORT"
    ...
    engine.stop()               # closes every socket and task

Standalone: ``python -m pytest_resilience.engine --listen 127.0.0.1:8474``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..runtime.loop import BackgroundLoop
from .api import ApiServer
from .collection import Collection

T = TypeVar("T")

VERSION = "2.12.0"
"""The Toxiproxy version whose API and semantics the engine follows."""

__all__ = ["VERSION", "Engine"]


class Engine:
    """A Toxiproxy-compatible engine serving its API on ``host:port`` (0: the OS chooses).

    ``express``: relay the links of proxies without toxics on a thread of their own
    (:mod:`.lane`), as fast as a minimal compiled relay.  Worth it where the engine has
    its process to itself; where it shares one with the code under test, that thread
    would contend for the GIL with the test's threads, and every wait for it lands in
    the timings the verdicts judge, so the plugin turns it off (``toxiproxy/backends.py``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        *,
        loop: BackgroundLoop | None = None,
        express: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.collection = Collection(VERSION, seed, express=express)
        self._loop = loop
        self._own_loop = loop is None
        self._api: ApiServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return self._loop.run(coro, timeout=30)

    def start(self) -> str:
        """Serve the API and return its URL."""
        if self._loop is None:
            self._loop = BackgroundLoop("pytest-resilience-engine")
        api = ApiServer(self.collection)
        try:
            self.port = self._run(api.start(self.host, self.port))
        except BaseException:
            self._stop_loop()
            raise
        self._api = api
        return self.url

    def stop(self) -> None:
        """Stop the API, close every proxy and connection, and end the loop if it is ours."""
        api, self._api = self._api, None
        if self._loop is not None and self._loop.running:
            if api is not None:
                self._run(api.stop())
            self._run(self.collection.close_all())
            self._run(_settle())
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._own_loop and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


async def _settle() -> None:
    # Let transports closed by close_all() run their connection_lost callbacks.
    for _ in range(3):
        await asyncio.sleep(0)
