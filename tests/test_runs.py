"""The verdicts on what the client saw (a run's calls), and ``drive`` and ``load``
themselves, on synthetic and real calls."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
from records import (
    T0,
    CircuitOpenError,
    call,
    evidence,
    failure,
    insufficient,
    rule,
)

from pytest_resilience import ConfigurationError, InsufficientEvidence
from pytest_resilience.observe.records import FaultEvent
from pytest_resilience.runs import Run, drive, load

# -- runs: what the client saw ------------------------------------------------------------


def test_fail_fast_with_skip_ignores_the_calls_that_found_out() -> None:
    run = Run(
        [call(0, 0.0, 1.0, TimeoutError()), call(1, 1.0, 1.0, TimeoutError())]
        + [call(n, 2.0 + n * 0.01, 0.001, CircuitOpenError()) for n in range(2, 6)]
    )
    run.assert_fail_fast(max_latency=0.1, skip=2)

    message = failure(run.assert_fail_fast, max_latency=0.1)
    assert rule(message) == (
        "2 of 6 calls took longer than 100 ms (the slowest 1000 ms); a client that fails fast "
        "does not wait on a service it knows is down."
    )
    rows = evidence(message)
    assert [(r.flagged, r.t, r.attempt, r.status, r.gap, r.allowed) for r in rows[:3]] == [
        (True, "0", "1", "TimeoutError", "1000", "<= 100 ms"),
        (True, "1000", "2", "TimeoutError", "1000", "<= 100 ms"),
        (False, "2020", "3", "CircuitOpenError", "1", ""),
    ]
    assert rule(failure(run.assert_fail_fast, max_latency=0.1, skip=1)).startswith("1 of 5 calls")


def test_fail_fast_with_no_call_after_those_skipped_cannot_be_judged() -> None:
    """It passed: with every call skipped (or none made) there was nothing to judge."""
    message = insufficient(Run([call(0, 0.0, 5.0)]).assert_fail_fast, max_latency=0.1, skip=1)
    assert rule(message) == (
        "insufficient evidence: fail-fast cannot be judged: the run made 1 call, all within "
        "the 1 skipped; drive more calls."
    )
    insufficient(Run([]).assert_fail_fast, max_latency=0.1)


def test_availability_counts_fallbacks_as_answers() -> None:
    run = Run(
        [
            call(0, 0.0, value="fresh"),
            call(1, 0.1, value="cached fallback"),
            call(2, 0.2, value=None),
            call(3, 0.3, error=ConnectionError("refused")),
        ]
    )
    assert run.availability == 0.75
    assert run.values == ["fresh", "cached fallback", None]
    assert [type(e) for e in run.errors] == [ConnectionError]
    run.assert_availability(min=0.75)

    message = failure(run.assert_availability, min=0.8)
    assert rule(message) == (
        "availability 75% is below 80%: 1 of 4 calls raised instead of answering "
        "(a fallback counts as an answer)."
    )
    assert [(r.t, r.attempt, r.status, r.allowed) for r in evidence(message) if r.flagged] == [
        ("300", "4", "ConnectionError", "a value")
    ]


def test_availability_of_an_empty_run_cannot_be_judged() -> None:
    message = insufficient(Run([]).assert_availability, min=0.5)
    assert (
        rule(message)
        == "insufficient evidence: availability cannot be judged: the run made no calls."
    )


def recovery_run(heals: list[float], never_healed: float | None = None) -> Run:
    """Calls failing until 0.7 s; a fault healed at each of ``heals`` (applied just before),
    and one applied at ``never_healed`` that never is."""
    calls = [
        call(n, at, error=None if at >= 0.7 else ConnectionError())
        for n, at in enumerate((0.0, 0.2, 0.4, 0.6, 0.7, 0.8, 0.9))
    ]
    faults = [
        FaultEvent(T0 + h + d, "quotes", "http_error", action, n, "")
        for n, h in enumerate(heals)
        for d, action in ((-0.05, "applied"), (0.0, "healed"))
    ]
    if never_healed is not None:
        faults.append(FaultEvent(T0 + never_healed, "quotes", "cut", "applied", 99, ""))
    return Run(calls, faults=lambda: sorted(faults, key=lambda e: e.at))


def test_recovers_within_passes_when_calls_succeed_after_the_last_heal() -> None:
    recovery_run([0.1, 0.5]).assert_recovers(within=0.15)


def test_recovers_within_fails_when_calls_still_fail_after_the_last_heal() -> None:
    message = failure(recovery_run([0.1, 0.5]).assert_recovers, within=0.05)
    assert rule(message) == (
        "no recovery: 1 calls still failed more than 0.05 s after the last fault healed "
        "(at +500 ms)."
    )
    assert [(r.t, r.attempt, r.allowed) for r in evidence(message) if r.flagged] == [
        ("600", "4", "ok")
    ]


def test_recovery_without_a_heal_or_a_late_enough_call_is_insufficient_evidence() -> None:
    """Neither outcome can be told: no heal to recover from, or no call late enough to
    show it (a false fail would teach users to delete the test; explore skips such a
    schedule rather than report it)."""
    with pytest.raises(InsufficientEvidence) as info:
        recovery_run([]).assert_recovers(within=0.1)
    assert rule(str(info.value)) == (
        "insufficient evidence: recovery cannot be judged, no fault was healed during the run."
    )
    with pytest.raises(InsufficientEvidence) as info:
        recovery_run([0.5]).assert_recovers(within=5)
    assert rule(str(info.value)) == (
        "insufficient evidence: recovery cannot be judged, no call started 5 s after the "
        "last fault healed; run the load longer."
    )


def test_calls_under_a_fault_never_healed_show_nothing_of_recovery() -> None:
    """Explore's correct breaker failed "no recovery" under load (stress run 13): a fault
    applied after the last heal, its count unspent when the load ended, still failed the
    calls, which were judged from the earlier heal.  Calls before it are still judged."""
    with pytest.raises(InsufficientEvidence) as info:
        recovery_run([0.1], never_healed=0.3).assert_recovers(within=0.15)
    assert rule(str(info.value)) == (
        "insufficient evidence: recovery cannot be judged, no call started 0.15 s after the "
        "last fault healed and before cut on quotes, applied at +300 ms, which was never "
        "healed (its count not spent when the run ended): heal it, or run the load until it ends."
    )
    message = failure(recovery_run([0.1], never_healed=0.65).assert_recovers, within=0.15)
    assert rule(message).startswith("no recovery: 2 calls still failed")  # at 0.4 and 0.6 s
    # Applied before the last heal and never healed, a fault leaves no call to judge.
    insufficient(recovery_run([0.1, 0.5], never_healed=0.05).assert_recovers, within=0.15)


def test_run_orders_calls_by_start() -> None:
    run = Run([call(1, 0.2), call(0, 0.1)])
    assert [c.index for c in run.calls] == [0, 1]
    assert len(run) == 2


# -- drive and load ------------------------------------------------------------------------


def test_drive_calls_a_sync_function_in_order_and_records_its_errors() -> None:
    count = itertools.count(1)

    def fn() -> int:
        n = next(count)
        if n == 2:
            raise ConnectionError("refused")
        return n

    run = drive(fn, calls=3)
    assert [c.index for c in run.calls] == [0, 1, 2]
    assert run.values == [1, 3]
    assert [str(e) for e in run.errors] == ["refused"]
    assert all(c.ended_at >= c.started_at for c in run.calls)
    assert run.calls[0].ended_at <= run.calls[1].started_at


def test_drive_awaits_an_async_function() -> None:
    count = itertools.count(1)

    async def fn() -> int:
        await asyncio.sleep(0)
        n = next(count)
        if n == 3:
            raise TimeoutError
        return n

    run = drive(fn, calls=4)
    assert run.values == [1, 2, 4]
    assert [type(e) for e in run.errors] == [TimeoutError]


@pytest.mark.parametrize(
    ("duration", "rate", "expected"),
    [(0.1, 50, 5), (0.2, 25.0, 5), (0.05, 10, 1), (0.29, 100, 29)],
)
def test_load_makes_duration_times_rate_calls_on_schedule(
    duration: float, rate: float, expected: int
) -> None:
    before = time.monotonic()
    run = load(lambda: "ok", duration=duration, rate=rate)
    assert sorted(c.index for c in run.calls) == list(range(expected))
    assert run.availability == 1.0
    for c in run.calls:
        assert c.started_at >= before + c.index / rate - 0.001


def test_load_runs_calls_concurrently() -> None:
    """Two calls meet at a barrier: only concurrent calls get past it."""
    meet = threading.Barrier(2, timeout=2.0)
    run = load(lambda: meet.wait(), duration=0.1, rate=40, concurrency=2)
    assert len(run) == 4
    assert run.errors == []
    assert sorted(run.values) == [0, 0, 1, 1]


def test_load_awaits_an_async_function_on_each_thread() -> None:
    threads: set[str] = set()

    async def fn() -> str:
        await asyncio.sleep(0)
        threads.add(threading.current_thread().name)
        return "ok"

    run = load(fn, duration=0.1, rate=50, concurrency=2)
    assert run.values == ["ok"] * 5
    assert threads <= {"pytest-resilience-load-0", "pytest-resilience-load-1"}


@pytest.mark.parametrize("calls", [0, -1, True, 1.5, "3", None])
def test_drive_rejects_a_bad_call_count(calls: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"drive: calls must be a whole number >= 1"):
        drive(lambda: None, calls=calls)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration": 0},
        {"duration": -0.1},
        {"duration": True},
        {"duration": "1"},
        {"rate": 0},
        {"rate": None},
        {"concurrency": 0},
        {"concurrency": True},
        {"concurrency": 2.0},
    ],
    ids=lambda kwargs: "-".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_load_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    arguments = {"duration": 0.1, "rate": 10, "concurrency": 1, **kwargs}
    name = next(iter(kwargs))
    with pytest.raises(ConfigurationError, match=rf"load: {name} must be"):
        load(lambda: None, **arguments)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration": float("nan")},
        {"duration": float("inf")},
        {"rate": float("nan")},
        {"rate": float("inf")},
    ],
    ids=lambda kwargs: "-".join(f"{k}={v!r}" for k, v in kwargs.items()),
)
def test_load_rejects_a_duration_or_rate_that_is_not_finite(kwargs: dict[str, Any]) -> None:
    """Bug: nan and inf pass the '> 0' check and crash in int() (ValueError, OverflowError)."""
    with pytest.raises(ConfigurationError):
        load(lambda: None, **{"duration": 0.1, "rate": 10, **kwargs})
