"""Driving the code under test: ``drive`` calls it N times, ``load`` on a schedule.

Each call is recorded (start, end, value or exception) in a :class:`Run`, whose
assertions judge what the client saw: fail-fast, availability, recovery.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import validate

if TYPE_CHECKING:
    from .observe.timeline import Timeline


@dataclass(frozen=True, slots=True)
class Call:
    """One call of the code under test."""

    index: int
    started_at: float
    ended_at: float
    value: Any
    exception: BaseException | None

    @property
    def latency(self) -> float:
        return self.ended_at - self.started_at

    @property
    def ok(self) -> bool:
        """The call returned (a fallback value counts) rather than raised."""
        return self.exception is None


def _caller(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` as a plain callable; a coroutine function runs on a loop of the calling thread."""
    if not inspect.iscoroutinefunction(fn):
        return fn
    local = threading.local()

    def run() -> Any:
        loop = getattr(local, "loop", None)
        if loop is None:
            loop = local.loop = asyncio.new_event_loop()
            loops.append(loop)
        return loop.run_until_complete(fn())

    loops: list[asyncio.AbstractEventLoop] = []
    run.loops = loops  # type: ignore[attr-defined]
    return run


def _close_loops(call: Callable[[], Any]) -> None:
    for loop in getattr(call, "loops", []):
        loop.close()


def _one(call: Callable[[], Any], index: int) -> Call:
    started = time.monotonic()
    try:
        value = call()
    except Exception as exc:  # the code under test failing is what is being measured
        return Call(index, started, time.monotonic(), None, exc)
    return Call(index, started, time.monotonic(), value, None)


class Run:
    """The calls of one ``drive`` or ``load``, with the client-side verdicts."""

    def __init__(
        self,
        calls: Sequence[Call],
        heals: Callable[[], list[float]] | None = None,
        timeline: Timeline | None = None,
    ):
        self.calls = sorted(calls, key=lambda c: c.started_at)
        self._heals = heals or (lambda: [])
        self._timeline = timeline

    def _verdict(self, name: str) -> AbstractContextManager[None]:
        """Records the verdict in the test's timeline, when the run belongs to a test."""
        if self._timeline is None:
            return nullcontext()
        return self._timeline.verdict(name)

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def values(self) -> list[Any]:
        return [c.value for c in self.calls if c.ok]

    @property
    def errors(self) -> list[BaseException]:
        return [c.exception for c in self.calls if c.exception is not None]

    @property
    def span(self) -> tuple[float, float] | None:
        """When the first call started and the last one ended (monotonic); None if no call."""
        if not self.calls:
            return None
        return self.calls[0].started_at, max(c.ended_at for c in self.calls)

    @property
    def availability(self) -> float:
        return sum(c.ok for c in self.calls) / len(self.calls) if self.calls else 0.0

    def _rows(self, flagged: set[int], allowed: str = "") -> list[Any]:
        from .assertions.report import Row

        return [
            Row(
                c.started_at,
                "client call",
                c.index + 1,
                "ok" if c.ok else type(c.exception).__name__,
                c.latency,
                allowed if c.index in flagged else "",
                c.index in flagged,
            )
            for c in self.calls
        ]

    def _origin(self) -> float:
        return self.calls[0].started_at if self.calls else 0.0

    def assert_fail_fast(self, max_latency: float, skip: int = 0) -> None:
        """Every call after the first ``skip`` returned or failed within ``max_latency`` s."""
        __tracebackhide__ = True
        validate.number(max_latency, "max_latency (seconds)", above=True)
        validate.integer(skip, "skip")
        from .assertions.report import fail

        with self._verdict("assert_fail_fast"):
            slow = {c.index for c in self.calls[skip:] if c.latency > max_latency}
            if slow:
                worst = max(c.latency for c in self.calls if c.index in slow)
                raise fail(
                    f"{len(slow)} of {len(self.calls) - skip} calls took longer than "
                    f"{max_latency * 1000:.0f} ms (the slowest {worst * 1000:.0f} ms); a client that "
                    "fails fast does not wait on a service it knows is down.",
                    self._rows(slow, f"<= {max_latency * 1000:.0f} ms"),
                    self._origin(),
                )

    def assert_availability(self, min: float) -> None:
        """At least a share ``min`` of calls returned a value (fallbacks included)."""
        __tracebackhide__ = True
        validate.share(min, "min (the share of calls that returned)")
        from .assertions.report import fail

        with self._verdict("assert_availability"):
            if not self.calls:
                raise fail("cannot judge availability: the run made no calls.", [], 0.0)
            if self.availability < min:
                failed = {c.index for c in self.calls if not c.ok}
                raise fail(
                    f"availability {self.availability:.0%} is below {min:.0%}: {len(failed)} of "
                    f"{len(self.calls)} calls raised instead of answering (a fallback counts as an answer).",
                    self._rows(failed, "a value"),
                    self._origin(),
                )

    def assert_recovers(self, within: float) -> None:
        """Every call that started ``within`` s after the last fault healed succeeded."""
        __tracebackhide__ = True
        validate.seconds(within, "within")
        from .assertions.report import fail

        with self._verdict("assert_recovers"):
            heals = self._heals()
            if not heals:
                raise fail(
                    "cannot judge recovery: no fault was healed during the run.",
                    self._rows(set()),
                    self._origin(),
                )
            healed = max(heals)
            later = [c for c in self.calls if c.started_at >= healed + within]
            if not later:
                raise fail(
                    f"cannot judge recovery: no call started {within:g} s after the last fault healed; "
                    "run the load longer.",
                    self._rows(set()),
                    self._origin(),
                )
            failed = {c.index for c in later if not c.ok}
            if failed:
                raise fail(
                    f"no recovery: {len(failed)} calls still failed more than {within:g} s after the "
                    f"last fault healed (at +{(healed - self._origin()) * 1000:.0f} ms).",
                    self._rows(failed, "ok"),
                    self._origin(),
                )


def drive(
    fn: Callable[[], Any],
    calls: int,
    heals: Callable[[], list[float]] | None = None,
    timeline: Timeline | None = None,
) -> Run:
    """Call ``fn`` (sync or async) ``calls`` times, one after another."""
    validate.callable_(fn, "drive")
    validate.count(calls, "drive: calls", allow_none=False)
    call = _caller(fn)
    try:
        return Run([_one(call, i) for i in range(calls)], heals, timeline)
    finally:
        _close_loops(call)


def load(
    fn: Callable[[], Any],
    duration: float,
    rate: float,
    concurrency: int = 1,
    heals: Callable[[], list[float]] | None = None,
    timeline: Timeline | None = None,
) -> Run:
    """Call ``fn`` ``rate`` times a second for ``duration`` seconds, on ``concurrency`` threads.

    Calls are scheduled at fixed times; a call whose slot comes while every thread is
    busy starts as soon as one is free (the run never makes more calls than scheduled).
    """
    validate.callable_(fn, "load")
    validate.number(duration, "load: duration", above=True)
    validate.number(rate, "load: rate", above=True)
    validate.count(concurrency, "load: concurrency", allow_none=False)
    # Rounded first: 0.29 s at 100/s is 28.999999999999996 in binary floating point.
    total = max(1, math.floor(round(duration * rate, 9)))
    started = time.monotonic()
    slots = iter(range(total))
    lock = threading.Lock()
    results: list[Call] = []
    call = _caller(fn)

    def worker() -> None:
        while True:
            with lock:
                index = next(slots, None)
            if index is None:
                return
            wait = started + index / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the schedule itself, not a wait for a result
            outcome = _one(call, index)
            with lock:
                results.append(outcome)

    threads = [
        threading.Thread(target=worker, name=f"pytest-resilience-load-{n}", daemon=True)
        for n in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        _close_loops(call)
    return Run(results, heals, timeline)
