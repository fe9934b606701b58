"""An HTTP service: the TCP service's faults, plus HTTP answers, routes and records."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, ResilienceError
from ..http.records import Effect, Exchange, ExchangeList
from ..http.script import (
    Burst,
    Cut,
    Delay,
    Fail,
    Route,
    Script,
    Step,
    TokenBucket,
    check_count,
    check_seconds,
    check_status,
    make_answer,
)
from ..observe.join import pair, reached_client
from .tcp import TcpService

if TYPE_CHECKING:
    from ..http.server import HttpLayer


class _Scripting:
    """The script calls, for the whole service or for one route."""

    _script: Script
    _route: Route | None

    def respond(
        self,
        status: int = 200,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """The default answer (to requests no fault answers)."""
        self._script.set_default(make_answer(status, json, body, headers), self._route)

    def fail(self, status: int = 503, count: int | None = None) -> Step:
        """Answer ``status`` to the next ``count`` requests (None: to every request)."""
        return self._script.add(Fail(check_status(status), check_count(count), self._route))

    def rate_limit(
        self,
        burst: int | None = None,
        retry_after: float | dt.datetime | None = None,
        status: int = 429,
        *,
        rate: float | None = None,
    ) -> Step:
        """``rate_limit(burst=3, retry_after=1)``: the next 3 requests get 429 + Retry-After.

        ``rate_limit(rate=5, burst=2)``: a token bucket of 5 requests a second (bursts of
        2); the rest get 429 with the Retry-After a real limiter would send.
        """
        check_status(status)
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise ConfigurationError(f"rate must be requests per second > 0, got {rate!r}.")
            if retry_after is not None:
                raise ConfigurationError(
                    "with rate= the Retry-After is computed from the bucket; drop retry_after=."
                )
            size = check_count(burst if burst is not None else max(1, int(rate)), "burst")
            assert size is not None
            return self._script.add(TokenBucket(float(rate), size, status, self._route))
        if burst is None:
            raise ConfigurationError(
                "rate_limit needs burst= (the next N requests are limited) or rate= (a token bucket)."
            )
        if retry_after is not None and not isinstance(retry_after, dt.datetime):
            retry_after = check_seconds(retry_after, "retry_after")
        count = check_count(burst, "burst", allow_none=False)
        assert count is not None
        return self._script.add(Burst(count, retry_after, status, self._route))

    def delay(self, seconds: float, count: int | None = None) -> Step:
        """Hold the next ``count`` answers (None: every answer) for ``seconds``."""
        return self._script.add(
            Delay(check_seconds(seconds, "delay"), check_count(count), self._route)
        )

    def cut(self, count: int | None = 1) -> Step:
        """Close the connection halfway through the next ``count`` answers."""
        return self._script.add(Cut(check_count(count), self._route))


class RouteScript(_Scripting):
    """``payments.route("POST", "/charges")``: script calls for one method and path."""

    def __init__(self, script: Script, route: Route) -> None:
        self._script = script
        self._route = route


class HttpService(TcpService, _Scripting):
    """A named HTTP service; the code under test uses :attr:`url`.

    Stub mode answers from a script (``respond``, ``fail``, ``rate_limit``,
    ``delay``, ``cut``, per route with ``route()``); forward mode relays to a real
    upstream.  Every TCP fault applies too.
    """

    def __init__(self, name: str, upstream: str, *, layer: HttpLayer, **kwargs: Any) -> None:
        super().__init__(name, upstream, **kwargs)
        self._layer = layer
        self._script = layer.script
        self._route = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` for the code under test."""
        return f"http://{self.address}"

    @property
    def forward_to(self) -> str | None:
        if self._layer.forward_to is None:
            return None
        host, port, base = self._layer.forward_to
        return f"http://{host}:{port}{base}"

    def route(self, method: str, path: str) -> RouteScript:
        """Script calls that apply only to ``method path`` (the query string is ignored)."""
        return RouteScript(self._script, Route(method, path))

    def reset_script(self) -> None:
        """Forget every step and default answer (the default becomes an empty 200)."""
        self._script.clear()

    # -- records --------------------------------------------------------------------

    def check(self) -> None:
        """Raise an error the HTTP layer met on its thread, if any."""
        if self._layer.errors:
            error = self._layer.errors[0]
            raise ResilienceError(
                f"the HTTP layer of service {self.name!r} failed: {error!r}"
            ) from error

    @property
    def exchanges(self) -> ExchangeList:
        """Every request the service received, with whether its answer reached the client."""
        self.check()
        layer = self._layer
        with layer._lock:
            pending = list(layer.pending)
            connections = [(c.id, c.digest) for c in layer.connections.values()]
        traces = pair(connections, self._tap.traces())
        return ExchangeList(
            Exchange(
                self.name,
                p.connection,
                p.index,
                p.started_at,
                p.ended_at,
                p.request.method,
                p.request.path,
                tuple(p.request.headers),
                p.key,
                p.fingerprint,
                p.status,
                p.scripted,
                p.step,
                p.retry_after,
                reached_client(
                    traces.get(p.connection), p.answer_range[1] if p.answer_range else None
                ),
            )
            for p in pending
        )

    @property
    def effects(self) -> list[Effect]:
        """Side effects applied: unsafe requests processed (once per Idempotency-Key)."""
        self.check()
        with self._layer._lock:
            return list(self._layer.effects)

    def close(self) -> None:
        try:
            super().close()
        finally:
            loop = self._tap.loop
            if loop.running:
                loop.run(self._layer.close())
        self.check()

    def __repr__(self) -> str:
        mode = f"forward to {self.forward_to}" if self.forward_to else "stub"
        return f"<HttpService {self.name!r} at {self.url} ({mode})>"
