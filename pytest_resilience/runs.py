"""Driving the code under test: ``drive`` calls it N times, ``load`` on a schedule.

Each call is recorded (start, end, value or exception) in a :class:`Run`, whose
assertions judge what the client saw: fail-fast, availability, recovery.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import validate
from .clock import CLOCK
from .observe.records import Call, FaultEvent

if TYPE_CHECKING:
    from .http.records import Exchange, ExchangeList
    from .verdicts import Verdicts


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
    started = CLOCK.now()
    try:
        value = call()
    except Exception as exc:  # the code under test failing is what is being measured
        return Call(index, started, CLOCK.now(), None, exc)
    return Call(index, started, CLOCK.now(), value, None)


class Run:
    """The calls of one ``drive`` or ``load``, with the client-side verdicts."""

    def __init__(
        self,
        calls: Sequence[Call],
        faults: Callable[[], Sequence[FaultEvent]] | None = None,
        verdicts: Verdicts | None = None,
        noise: Callable[[float, float], Sequence[float]] | None = None,
    ):
        """``faults`` gives the test's fault events and ``noise`` the noise probe's samples
        between two instants (:meth:`.observe.noise.NoiseProbe.samples`), when the verdicts
        judge."""
        from .verdicts import Verdicts

        self.calls = sorted(calls, key=lambda c: c.started_at)
        self._faults = faults or (lambda: [])
        self._noise = noise or (lambda since, until: ())
        # Outside a test, failures count t+ms from the first call.
        self._verdicts = verdicts or Verdicts(origin=self.calls[0].started_at if calls else 0.0)

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
        """When the first call started and the last one ended (on the plugin's clock); None
        if no call."""
        if not self.calls:
            return None
        return self.calls[0].started_at, max(c.ended_at for c in self.calls)

    def requests(self, exchanges: Sequence[Exchange]) -> ExchangeList:
        """The ``exchanges`` begun between the first call's start and the last call's end:
        what the run cost the service (``assert_amplification`` and the report count
        these; requests of other clients in that span count too)."""
        from .http.records import ExchangeList

        span = self.span
        return ExchangeList() if span is None else ExchangeList(exchanges).between(*span)

    @property
    def availability(self) -> float:
        return sum(c.ok for c in self.calls) / len(self.calls) if self.calls else 0.0

    def assert_fail_fast(self, max_latency: float, skip: int = 0) -> None:
        """Every call after the first ``skip`` returned or failed within ``max_latency`` s,
        judged beside the timing noise of the run."""
        __tracebackhide__ = True
        from .assertions.calls import check_fail_fast

        validate.number(max_latency, "max_latency (seconds)", above=True)
        validate.integer(skip, "skip")
        self._verdicts.judge(
            "",
            check_fail_fast,
            self.calls,
            max_latency,
            skip,
            noise=self._noise,
            jumps=tuple(CLOCK.jumps),
        )

    def assert_availability(self, min: float) -> None:
        """At least a share ``min`` of calls returned a value (fallbacks included)."""
        __tracebackhide__ = True
        from .assertions.calls import check_availability

        validate.share(min, "min (the share of calls that returned)")
        self._verdicts.judge("", check_availability, self.calls, min)

    def assert_recovers(self, within: float) -> None:
        """Every call that started ``within`` s after the last fault healed succeeded (none
        applied since and never healed), judged beside the timing noise of the run."""
        __tracebackhide__ = True
        from .assertions.calls import check_recovers

        validate.seconds(within, "within")
        self._verdicts.judge(
            "",
            check_recovers,
            self.calls,
            self._faults(),
            within,
            noise=self._noise,
            jumps=tuple(CLOCK.jumps),
        )


def drive(
    fn: Callable[[], Any],
    calls: int,
    faults: Callable[[], Sequence[FaultEvent]] | None = None,
    verdicts: Verdicts | None = None,
    noise: Callable[[float, float], Sequence[float]] | None = None,
) -> Run:
    """Call ``fn`` (sync or async) ``calls`` times, one after another (``faults``,
    ``verdicts`` and ``noise``: what the :class:`Run`'s verdicts read)."""
    validate.callable_(fn, "drive")
    validate.count(calls, "drive: calls", allow_none=False)
    call = _caller(fn)
    try:
        return Run([_one(call, i) for i in range(calls)], faults, verdicts, noise)
    finally:
        _close_loops(call)


def load(
    fn: Callable[[], Any],
    duration: float,
    rate: float,
    concurrency: int = 1,
    faults: Callable[[], Sequence[FaultEvent]] | None = None,
    verdicts: Verdicts | None = None,
    noise: Callable[[float, float], Sequence[float]] | None = None,
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
    started = CLOCK.now()
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
            wait = started + index / rate - CLOCK.now()
            if wait > 0:
                CLOCK.sleep(wait)  # the schedule itself, not a wait for a result
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
    return Run(results, faults, verdicts, noise)
