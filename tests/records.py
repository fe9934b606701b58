"""Record factories and failure-message readers for the verdict tests on synthetic timelines."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from pytest_resilience import ResilienceError
from pytest_resilience.assertions import InsufficientEvidence, ResilienceAssertionError
from pytest_resilience.http.identity import fingerprint
from pytest_resilience.http.records import Effect, Exchange, retry_after_seconds
from pytest_resilience.observe import Call

T0 = 50.0
"""Monotonic time the synthetic timelines start at (not 0, so that origins are exercised)."""
WALL = 1_700_000_000.0
"""Wall-clock 'now' against which HTTP-date Retry-After values are read."""
CHARGE = {"amount": 1999, "currency": "eur"}
HEADER = ["t+ms", "operation", "try", "status", "gap", "ms", "allowed"]

_connections = itertools.count()


# -- record factories -----------------------------------------------------------------


def body_of(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def exchange(
    at: float,
    status: int | None = 503,
    *,
    key: str | None = None,
    body: Any = CHARGE,
    method: str = "POST",
    path: str = "/charges",
    took: float = 0.002,
    retry_after: str | None = None,
    delivered: bool | None = True,
    headers: tuple[tuple[str, str], ...] = (),
) -> Exchange:
    """One request ``at`` seconds after T0, answered ``took`` later (never, if status is None)."""
    if key is not None:
        headers = (*headers, ("Idempotency-Key", key))
    return Exchange(
        service="payments",
        connection=next(_connections),
        index=0,
        started_at=T0 + at,
        ended_at=None if status is None else T0 + at + took,
        method=method,
        path=path,
        headers=headers,
        idempotency_key=key,
        fingerprint=fingerprint(method, path, body_of(body)),
        status=status,
        scripted=status != 200,
        step="respond" if status == 200 else "fail",
        retry_after=retry_after,
        retry_after_delay=retry_after_seconds(retry_after, lambda: WALL),
        delivered=None if status is None else delivered,
    )


def attempts(
    at: float,
    gaps: list[float],
    key: str,
    *,
    final: int = 200,
    failure: int = 503,
    mint: bool = False,
) -> list[Exchange]:
    """One operation: a first attempt ``at``, then a retry after each gap; the last one ``final``.

    Each operation has its own body; ``mint`` gives every attempt a new key, as a client that
    mints a key per attempt does.
    """
    starts = [at, *itertools.accumulate(gaps, initial=at)][1:]
    last = len(starts) - 1
    return [
        exchange(
            start,
            final if n == last else failure,
            key=f"{key}-{n + 1}" if mint else key,
            body={"order": key},
        )
        for n, start in enumerate(starts)
    ]


def effect(
    at: float,
    *,
    key: str | None = None,
    body: Any = CHARGE,
    method: str = "POST",
    path: str = "/charges",
    status: int = 201,
) -> Effect:
    return Effect(
        service="payments",
        at=T0 + at,
        method=method,
        path=path,
        idempotency_key=key,
        fingerprint=fingerprint(method, path, body_of(body)),
        status=status,
        exchange=(next(_connections), 0),
    )


class CircuitOpenError(Exception):
    """What a client whose breaker is open raises at once."""


def call(
    index: int,
    at: float,
    latency: float = 0.001,
    error: BaseException | None = None,
    value: Any = "ok",
) -> Call:
    return Call(index, T0 + at, T0 + at + latency, None if error else value, error)


# -- reading failure messages -----------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One row of an evidence table, as printed."""

    flagged: bool
    t: str
    operation: str
    attempt: str
    status: str
    gap: str
    allowed: str


def failure(check: Callable[..., None], *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ResilienceAssertionError) as info:
        check(*args, **kwargs)
    assert isinstance(info.value, ResilienceError)
    return str(info.value)


def insufficient(check: Callable[..., None], *args: Any, **kwargs: Any) -> str:
    """The message of ``check``, which must say the evidence is insufficient."""
    with pytest.raises(InsufficientEvidence) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert message.startswith("insufficient evidence: ")
    return message


def rule(message: str) -> str:
    return message.splitlines()[0]


def evidence(message: str) -> list[Line]:
    """The rows of the table under the rule; fails if the table or its columns are missing."""
    lines = message.splitlines()
    assert lines[1].split() == HEADER, f"no evidence table under the rule:\n{message}"
    rows = []
    for line in lines[2:]:
        if line[:1] not in (">", " ") or line.startswith("  ("):
            break
        rest = line[42:]
        status = rest.split("  ", 1)[0].rstrip()
        tail = rest[max(8, len(status)) :]
        rows.append(
            Line(
                flagged=line[0] == ">",
                t=line[2:10].strip(),
                operation=line[12:36].strip(),
                attempt=line[37:40].strip(),
                status=status,
                gap=tail[1:8].strip(),
                allowed=tail[10:],
            )
        )
    return rows


def marked(message: str) -> list[tuple[str, str, str]]:
    """(t+ms, operation, try) of the rows marked ``>``."""
    return [(r.t, r.operation, r.attempt) for r in evidence(message) if r.flagged]


# -- a circuit breaker's timeline ---------------------------------------------------------


def breaker(
    service: Iterable[tuple[float, int, float]] = (),
    client: Iterable[float] = (0.2, 0.4, 0.6, 0.8, 1.15, 1.3, 1.4),
) -> tuple[list[Exchange], list[Call]]:
    """Three 503s at 0, 50 and 100 ms (the last answered at 102 ms: the breaker opens
    there), then ``service`` (at, status, took); client calls at the first three and at
    ``client`` (failing fast until 1.1 s, while the breaker is open)."""
    exchanges = [exchange(at, 503, method="GET", path="/stock") for at in (0.0, 0.05, 0.1)]
    exchanges += [
        exchange(at, status, method="GET", path="/stock", took=took) for at, status, took in service
    ]
    calls = [call(n, at, 0.003, ConnectionError("503")) for n, at in enumerate((0.0, 0.05, 0.1))]
    calls += [
        call(3 + n, at, 0.0002, CircuitOpenError() if at < 1.1 else None)
        for n, at in enumerate(client)
    ]
    return exchanges, calls


HEALTHY = [(1.15, 200, 0.03), (1.3, 200, 0.002), (1.4, 200, 0.002)]
"""A breaker's service after the cooldown: one probe, then the rest, all answered."""
