"""What an HTTP service answers: small steps that chain, then the default answer.

A request walks the service's steps in the order they were added.  A step may
answer (a 503, a 429 with Retry-After), pass the request on (a delay, a token
bucket with tokens left) or change how the answer goes out (a cut).  A step
that has answered its ``count`` requests drops out; a step scoped to a route
lets other requests by without counting them.  What no step answers gets the
default answer, or the real upstream's in forward mode.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json as jsonlib
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import ConfigurationError

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    step: str = "respond"
    scripted: bool = False
    cut: bool = False
    """Close the connection halfway through the body."""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


Next = Callable[[Request], Awaitable[Answer]]


def check_status(status: Any, what: str = "status") -> int:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ConfigurationError(f"{what} must be an HTTP status from 100 to 599, got {status!r}.")
    return status


def check_final_status(status: Any, what: str = "status") -> int:
    """A status a final answer can carry: 1xx are interim answers the layer sends itself."""
    check_status(status, what)
    if status < 200:
        raise ConfigurationError(
            f"{what} {status} is informational (1xx) and cannot end an exchange; "
            "use a status from 200 to 599."
        )
    return int(status)


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def check_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    out = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ConfigurationError(f"header name {name!r} is not a valid HTTP header name.")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigurationError(
                f"header {name!r} must have a str value without CR, LF or NUL, got {value!r}."
            )
        out.append((name, value))
    return out


def check_count(count: Any, what: str = "count", *, allow_none: bool = True) -> int | None:
    if count is None and allow_none:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"{what} must be a whole number >= 1, got {count!r}.")
    return count


def check_seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(f"{what} must be a number of seconds >= 0, got {value!r}.")
    return float(value)


def check_method(method: Any) -> str:
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ConfigurationError(
            f"unknown HTTP method {method!r}; use one of {', '.join(sorted(METHODS))}."
        )
    return method.upper()


def make_answer(
    status: int = 200,
    json: Any = None,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """An answer from ``respond()``-style arguments."""
    check_final_status(status)
    if json is not None and body is not None:
        raise ConfigurationError("pass json= or body=, not both.")
    if status in (204, 304) and (json is not None or body):
        raise ConfigurationError(f"a {status} answer carries no body; drop json=/body=.")
    out_headers = check_headers(headers or {})
    if json is not None:
        payload = jsonlib.dumps(json).encode()
        if not any(k.lower() == "content-type" for k, _ in out_headers):
            out_headers.append(("Content-Type", "application/json"))
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body or b""
    return Answer(status, out_headers, payload)


class Step:
    """One link of the chain; ``count`` None means every matching request."""

    name = "step"

    def __init__(self, count: int | None, route: Route | None) -> None:
        self.remaining = count
        self.route = route

    def matches(self, request: Request) -> bool:
        return self.route is None or self.route.matches(request)

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def use(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1

    async def __call__(self, request: Request, next_: Next) -> Answer:
        raise NotImplementedError


class Fail(Step):
    name = "fail"

    def __init__(self, status: int, count: int | None, route: Route | None) -> None:
        super().__init__(count, route)
        self.status = status

    async def __call__(self, request: Request, next_: Next) -> Answer:
        body = jsonlib.dumps({"error": "injected failure", "status": self.status}).encode()
        return Answer(
            self.status, [("Content-Type", "application/json")], body, self.name, scripted=True
        )


class FailShare(Step):
    """Each matching request fails with ``status`` with probability ``share`` (seeded)."""

    name = "fail"

    def __init__(self, status: int, share: float, rng: random.Random, route: Route | None) -> None:
        super().__init__(None, route)
        self.status = status
        self.share = share
        self.rng = rng

    async def __call__(self, request: Request, next_: Next) -> Answer:
        if self.rng.random() >= self.share:
            return await next_(request)
        body = jsonlib.dumps({"error": "injected failure", "status": self.status}).encode()
        return Answer(
            self.status, [("Content-Type", "application/json")], body, self.name, scripted=True
        )


def format_retry_after(value: float | dt.datetime) -> str:
    """Retry-After as delta-seconds, or as an HTTP-date for a datetime (RFC 9110 10.2.3)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                "retry_after datetime must be timezone-aware, e.g. datetime.now(timezone.utc)."
            )
        return email.utils.format_datetime(value.astimezone(dt.timezone.utc), usegmt=True)
    return str(math.ceil(value))


class Burst(Step):
    """The next ``count`` requests get ``status`` with a Retry-After."""

    name = "rate_limit"

    def __init__(
        self, count: int, retry_after: float | dt.datetime | None, status: int, route: Route | None
    ) -> None:
        super().__init__(count, route)
        self.retry_after = retry_after
        self.status = status

    async def __call__(self, request: Request, next_: Next) -> Answer:
        headers = [("Content-Type", "application/json")]
        if self.retry_after is not None:
            headers.append(("Retry-After", format_retry_after(self.retry_after)))
        body = jsonlib.dumps({"error": "rate limited", "status": self.status}).encode()
        return Answer(self.status, headers, body, self.name, scripted=True)


class TokenBucket(Step):
    """``rate`` requests a second with bursts of ``burst``; the rest get 429 and an honest Retry-After."""

    name = "rate_limit"

    def __init__(self, rate: float, burst: int, status: int, route: Route | None) -> None:
        super().__init__(None, route)
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.status = status
        self.stamp = time.monotonic()

    async def __call__(self, request: Request, next_: Next) -> Answer:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return await next_(request)
        wait = (1 - self.tokens) / self.rate
        headers = [("Content-Type", "application/json"), ("Retry-After", str(math.ceil(wait)))]
        body = jsonlib.dumps({"error": "rate limited", "status": self.status}).encode()
        return Answer(self.status, headers, body, self.name, scripted=True)


class Delay(Step):
    name = "delay"

    def __init__(self, seconds: float, count: int | None, route: Route | None) -> None:
        super().__init__(count, route)
        self.seconds = seconds

    async def __call__(self, request: Request, next_: Next) -> Answer:
        await asyncio.sleep(self.seconds)
        return await next_(request)


class Cut(Step):
    """The answer starts, then the connection closes halfway through its body."""

    name = "cut"

    async def __call__(self, request: Request, next_: Next) -> Answer:
        # A copy: the answer may be the one stored for its Idempotency-Key, and a replay
        # of it must arrive whole.
        answer = await next_(request)
        return replace(answer, cut=True, scripted=True, step=self.name)


def fail_step(
    status: int = 503,
    count: int | None = None,
    *,
    rate: float | None = None,
    route: Route | None = None,
    rng: random.Random | None = None,
) -> tuple[Step, str]:
    """Validated ``fail()`` arguments as a step, and how to describe it."""
    check_final_status(status)
    if rate is not None:
        if count is not None:
            raise ConfigurationError("fail takes count= or rate=, not both.")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ConfigurationError(
                f"rate must be the share of requests to fail, above 0 and at most 1, got {rate!r}."
            )
        share = FailShare(status, float(rate), rng or random.Random(0), route)
        return share, f"status={status} rate={rate:g}"
    count = check_count(count)
    return Fail(status, count, route), f"status={status} count={count}"


def rate_limit_step(
    burst: int | None = None,
    retry_after: float | dt.datetime | None = None,
    status: int = 429,
    *,
    rate: float | None = None,
    route: Route | None = None,
) -> tuple[Step, str]:
    """Validated ``rate_limit()`` arguments as a step, and how to describe it."""
    check_final_status(status)
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ConfigurationError(f"rate must be requests per second > 0, got {rate!r}.")
        if retry_after is not None:
            raise ConfigurationError(
                "with rate= the Retry-After is computed from the bucket; drop retry_after=."
            )
        size = check_count(burst if burst is not None else max(1, int(rate)), "burst")
        assert size is not None
        bucket = TokenBucket(float(rate), size, status, route)
        return bucket, f"rate={rate:g}/s burst={size} status={status}"
    if burst is None:
        raise ConfigurationError(
            "rate_limit needs burst= (the next N requests are limited) or rate= (a token bucket)."
        )
    if isinstance(retry_after, dt.datetime):
        format_retry_after(retry_after)  # a naive datetime fails now, not at the first request
    elif retry_after is not None:
        retry_after = check_seconds(retry_after, "retry_after")
    count = check_count(burst, "burst", allow_none=False)
    assert count is not None
    return Burst(count, retry_after, status, route), (
        f"burst={count} retry_after={retry_after} status={status}"
    )


class Route:
    """Requests with this method and path (query ignored)."""

    def __init__(self, method: str, path: str) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"a route path must start with '/', got {path!r}.")
        self.method = check_method(method)
        self.path = path

    def matches(self, request: Request) -> bool:
        return request.method == self.method and request.path.split("?", 1)[0] == self.path

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


class Script:
    """The steps of one service, and the default answers (per route, then overall)."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.default = make_answer(200)
        self.route_defaults: list[tuple[Route, Answer]] = []
        self._lock = threading.Lock()

    def add(self, step: Step) -> Step:
        with self._lock:
            self.steps = [s for s in self.steps if not s.spent]
            self.steps.append(step)
        return step

    def remove(self, step: Step) -> None:
        """Retire ``step``; it leaves the list at the next add (indices stay put for walkers)."""
        with self._lock:
            step.remaining = 0

    def set_default(self, answer: Answer, route: Route | None) -> None:
        with self._lock:
            if route is None:
                self.default = answer
            else:
                self.route_defaults = [
                    (r, a) for r, a in self.route_defaults if repr(r) != repr(route)
                ]
                self.route_defaults.append((route, answer))

    def clear(self) -> None:
        with self._lock:
            self.steps.clear()
            self.route_defaults.clear()
            self.default = make_answer(200)

    def default_for(self, request: Request) -> Answer:
        with self._lock:
            for route, answer in reversed(self.route_defaults):
                if route.matches(request):
                    return answer
            return self.default

    def _claim(self, steps: list[Step], request: Request, start: int) -> tuple[int, Step] | None:
        """The next live step at or after ``start`` that takes this request (counted now)."""
        with self._lock:
            for index in range(start, len(steps)):
                step = steps[index]
                if step.matches(request) and not step.spent:
                    step.use()
                    return index, step
        return None

    async def run(self, request: Request, last: Next) -> Answer:
        """Walk the steps for ``request``; ``last`` answers what none of them did."""
        # A snapshot: add() compacts the list, which would shift the indices of a walk
        # held by a delay; steps added meanwhile apply from the next request.
        with self._lock:
            steps = list(self.steps)

        async def from_step(position: int, req: Request) -> Answer:
            claimed = self._claim(steps, req, position)
            if claimed is None:
                return await last(req)
            index, step = claimed
            return await step(req, lambda r: from_step(index + 1, r))

        return await from_step(0, request)
