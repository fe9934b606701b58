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
import contextvars
import datetime as dt
import math
import random
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from .. import validate
from ..clock import CLOCK
from ..errors import ConfigurationError
from .answers import (
    Answer,
    ErrorBody,
    Request,
    Shape,
    check_retry_after,
    check_retry_after_ms,
    default_error,
    fault_answer,
    shape,
    wait_headers,
)

Next = Callable[[Request], Awaitable[Answer]]
PAUSE: contextvars.ContextVar[Callable[[float], Awaitable[None]]] = contextvars.ContextVar(
    "PAUSE", default=asyncio.sleep
)
"""How a step holds an answer ``seconds``: the HTTP layer sets it for each connection, so
that the hold is a timer of the plugin's clock (:meth:`~.server.HttpLayer.pause`)."""


class Step:
    """One link of the chain; ``count`` None means every matching request."""

    name = "step"

    def __init__(self, count: int | None, route: Route | None) -> None:
        self.remaining = count
        self.route = route
        self.on_spent: Callable[[], None] | None = None
        """Called on the loop once the step is spent and no request it counted is still
        being answered (a held or cut answer is ready by then, not yet sent)."""
        self.answering = 0
        """Requests it counted whose answer is not ready yet."""
        self.ended = False
        """Whether ``on_spent`` was called (:meth:`Script.snapshot` puts it back)."""

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
    """The next ``count`` matching requests get ``answer`` (a copy each)."""

    name = "fail"

    def __init__(self, answer: Answer, count: int | None, route: Route | None) -> None:
        super().__init__(count, route)
        self.answer = answer

    async def __call__(self, request: Request, next_: Next) -> Answer:
        return replace(self.answer, headers=list(self.answer.headers))


class FailShare(Step):
    """Each matching request gets ``answer`` with probability ``share`` (seeded)."""

    name = "fail"

    def __init__(
        self, answer: Answer, share: float, rng: random.Random, route: Route | None
    ) -> None:
        super().__init__(None, route)
        self.answer = answer
        self.share = share
        self.rng = rng

    async def __call__(self, request: Request, next_: Next) -> Answer:
        if self.rng.random() >= self.share:
            return await next_(request)
        return replace(self.answer, headers=list(self.answer.headers))


class Burst(Fail):
    """The next ``count`` requests get a 429 (or ``status``) carrying its wait headers."""

    name = "rate_limit"


class TokenBucket(Step):
    """``rate`` requests a second with bursts of ``burst``; the rest get ``answer`` (a 429)
    with the Retry-After a real limiter would send."""

    name = "rate_limit"

    def __init__(self, rate: float, burst: int, answer: Answer, route: Route | None) -> None:
        super().__init__(None, route)
        self.rate = rate
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.answer = answer
        """The limited answer; its Retry-After is set per request."""
        self.stamp = CLOCK.now()

    async def __call__(self, request: Request, next_: Next) -> Answer:
        now = CLOCK.now()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return await next_(request)
        wait = str(math.ceil((1 - self.tokens) / self.rate))
        headers = [(k, wait if k == "Retry-After" else v) for k, v in self.answer.headers]
        return replace(self.answer, headers=headers)


class Reshape(Step):
    """A step that passes the request on and reshapes the answer that comes back, or,
    given ``answer``, sends that answer instead (a fault answer: nothing applied)."""

    def __init__(
        self,
        count: int | None,
        route: Route | None,
        shaped: Shape | None = None,
        answer: Answer | None = None,
    ) -> None:
        super().__init__(count, route)
        self.shaped = shaped or Shape()
        self.answer = answer

    async def _answer(self, request: Request, next_: Next) -> Answer:
        if self.answer is not None:
            return replace(self.answer, headers=list(self.answer.headers))
        answer = await next_(request)
        return answer if self.shaped.empty else self.shaped.onto(answer)


class Delay(Reshape):
    """Hold the answer ``seconds``."""

    name = "delay"

    def __init__(
        self,
        seconds: float,
        count: int | None,
        route: Route | None,
        shaped: Shape | None = None,
        answer: Answer | None = None,
    ) -> None:
        super().__init__(count, route, shaped, answer)
        self.seconds = seconds

    async def __call__(self, request: Request, next_: Next) -> Answer:
        await PAUSE.get()(self.seconds)
        return await self._answer(request, next_)


class Cut(Reshape):
    """The answer starts, then the connection closes halfway through its body."""

    name = "cut"

    async def __call__(self, request: Request, next_: Next) -> Answer:
        # A copy: the answer may be the one stored for its Idempotency-Key, and a replay
        # of it must arrive whole.
        answer = await self._answer(request, next_)
        return replace(answer, cut=True, scripted=True, step=self.name)


def fail_step(
    status: int = 503,
    count: int | None = None,
    *,
    rate: float | None = None,
    json: Any = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    error: ErrorBody = default_error,
    route: Route | None = None,
    rng: random.Random | None = None,
) -> tuple[Step, str]:
    """Validated ``fail()`` arguments as a step, and how to describe it."""
    validate.error_status(status, "fail")
    shaped = shape(json, body, content_type, headers)
    answer = fault_answer(status, shaped, error, "fail")
    if rate is not None:
        if count is not None:
            raise ConfigurationError("fail takes count= or rate=, not both.")
        if validate.share(rate, "rate (the share of requests to fail)") == 0:
            raise ConfigurationError(
                "rate (the share of requests to fail) must be above 0; drop the fault instead."
            )
        share = FailShare(answer, float(rate), rng or random.Random(0), route)
        return share, f"status={status} rate={rate:g}"
    count = validate.count(count)
    return Fail(answer, count, route), f"status={status} count={count}"


def _reshaping(
    step: str,
    status: int | None,
    json: Any,
    body: bytes | str | None,
    content_type: str | None,
    headers: Mapping[str, str] | None,
    error: ErrorBody,
) -> tuple[Shape, Answer | None, str]:
    """A passing step's shape, with ``status`` the answer it gives instead, and how to
    describe that."""
    shaped = shape(json, body, content_type, headers)
    if status is None:
        return shaped, None, ""
    return shaped, fault_answer(status, shaped, error, step), f" status={status}"


def delay_step(
    seconds: float,
    count: int | None = None,
    *,
    status: int | None = None,
    json: Any = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    error: ErrorBody = default_error,
    route: Route | None = None,
) -> tuple[Step, str]:
    """Validated ``delay()`` arguments as a step, and how to describe it."""
    seconds = validate.seconds(seconds, "delay")
    count = validate.count(count)
    shaped, answer, where = _reshaping("delay", status, json, body, content_type, headers, error)
    return Delay(seconds, count, route, shaped, answer), f"seconds={seconds:g} count={count}{where}"


def cut_step(
    count: int | None = 1,
    *,
    status: int | None = None,
    json: Any = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    error: ErrorBody = default_error,
    route: Route | None = None,
) -> tuple[Step, str]:
    """Validated ``cut()`` arguments as a step, and how to describe it."""
    count = validate.count(count)
    shaped, answer, where = _reshaping("cut", status, json, body, content_type, headers, error)
    return Cut(count, route, shaped, answer), f"count={count}{where}"


def rate_limit_step(
    burst: int | None = None,
    retry_after: float | dt.datetime | None = None,
    status: int = 429,
    *,
    rate: float | None = None,
    retry_after_ms: float | None = None,
    json: Any = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    error: ErrorBody = default_error,
    route: Route | None = None,
) -> tuple[Step, str]:
    """Validated ``rate_limit()`` arguments as a step, and how to describe it."""
    validate.error_status(status, "rate_limit")
    shaped = shape(json, body, content_type, headers)
    if rate is not None:
        rate = validate.number(rate, "rate (requests per second)", above=True)
        if retry_after is not None or retry_after_ms is not None:
            raise ConfigurationError(
                "with rate= the Retry-After is computed from the bucket; "
                "drop retry_after= and retry_after_ms=."
            )
        size = validate.count(burst if burst is not None else max(1, int(rate)), "burst")
        assert size is not None
        # Made once; its Retry-After is set per request.
        limited = fault_answer(status, shaped, error, "rate_limit", first=(("Retry-After", "1"),))
        bucket = TokenBucket(rate, size, limited, route)
        return bucket, f"rate={rate:g}/s burst={size} status={status}"
    if burst is None:
        raise ConfigurationError(
            "rate_limit needs burst= (the next N requests are limited) or rate= (a token bucket)."
        )
    waits = wait_headers(check_retry_after(retry_after), check_retry_after_ms(retry_after_ms))
    count = validate.count(burst, "burst", allow_none=False)
    assert count is not None
    answer = fault_answer(status, shaped, error, "rate_limit", first=waits)
    detail = f"burst={count} status={status}" + "".join(f" {k}={v}" for k, v in waits)
    return Burst(answer, count, route), detail


class Route:
    """Requests with this method and path (query ignored)."""

    def __init__(self, method: str, path: str) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"a route path must start with '/', got {path!r}.")
        self.method = validate.method(method)
        self.path = path

    def matches(self, request: Request) -> bool:
        return request.method == self.method and request.path.split("?", 1)[0] == self.path

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


def _state(step: Step) -> dict[str, Any]:
    """What a step counts and draws (its callback aside, which stays as it is)."""
    return {k: v for k, v in vars(step).items() if k != "on_spent"}


class Script:
    """The steps of one service, and the default answers (per route, then overall)."""

    def __init__(self, error: ErrorBody = default_error) -> None:
        self.error = error
        """The JSON body of fault answers that give none (``http_service(error=...)``)."""
        self.steps: list[Step] = []
        self.default = Answer(200)
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

    def snapshot(self) -> Callable[[], None]:
        """A function that puts the steps and default answers back as they are now, each
        step (the same objects, so that their faults still heal them) with the count and
        state it has now: explore starts every example from here."""
        import copy

        with self._lock:
            steps = [s for s in self.steps if not s.spent]
            states = [copy.deepcopy(_state(s)) for s in steps]
            route_defaults, default = list(self.route_defaults), self.default

        def restore() -> None:
            with self._lock:
                for step, state in zip(steps, states, strict=True):
                    vars(step).update(copy.deepcopy(state))
                self.steps, self.route_defaults = list(steps), list(route_defaults)
                self.default = default

        return restore

    def clear(self) -> None:
        with self._lock:
            self.steps.clear()
            self.route_defaults.clear()
            self.default = Answer(200)

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
                    step.answering += 1
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
            try:
                return await step(req, lambda r: from_step(index + 1, r))
            finally:
                self._answered(step)

        return await from_step(0, request)

    def _answered(self, step: Step) -> None:
        with self._lock:
            step.answering -= 1
            ended = step.spent and not step.answering and not step.ended
            if ended:
                step.ended = True
        if ended and step.on_spent is not None:
            step.on_spent()
