"""Simulated herds for the timing verdicts' error rates: clients waiting as a schedule
says plus the noise of a machine that wakes threads late, and the noise its probe would
measure meanwhile (``tests/test_timing_verdicts.py``, ``tests/test_zoo_herds.py``)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence

from records import attempts

from pytest_resilience.assertions import InsufficientEvidence, ResilienceAssertionError
from pytest_resilience.assertions.operations import answered_at
from pytest_resilience.assertions.timing import HOPS, Noise
from pytest_resilience.http.records import Exchange
from pytest_resilience.observe.noise import PERIOD
from pytest_resilience.observe.pacing import Pacing
from pytest_resilience.runtime.pacing import Sent, Sleep


def herd(waits: Sequence[Sequence[float]], spread: float = 0.001) -> list[Exchange]:
    """One operation per row of waits, first attempts ``spread`` apart; each fails until its last."""
    return [e for n, row in enumerate(waits) for e in attempts(n * spread, list(row), f"op{n}")]


def real_time(
    timeline: Sequence[Exchange], rows: Sequence[Sequence[float]]
) -> Callable[[float, float], float]:
    """For a :func:`herd` on virtual time: the real seconds between two instants of its
    clock (``Noise.real``): ``rows[n][k]`` for the span of the k-th wait of operation n,
    none between other instants (jumped over: these clients share nothing, so no attempt
    is handed over to the next)."""
    spans = {}
    for n, row in enumerate(rows):
        mine = sorted((e for e in timeline if e.idempotency_key == f"op{n}"), key=_started)
        for (a, b), real in zip(itertools.pairwise(mine), row, strict=True):
            spans[(answered_at(a), b.started_at)] = real
    return lambda start, end: spans.get((start, end), 0.0)


def paced(timeline: Sequence[Exchange], rows: Sequence[Sequence[float]]) -> Pacing:
    """For a :func:`herd` on real time with its clients' sleeps noted: each retry sent by
    a client that asked, right after the answer before it, for its wait less
    ``rows[n][k]`` (that wait's noise) as one sleep (``observe/pacing.py``)."""
    sends = {}
    for n, row in enumerate(rows):
        mine = sorted((e for e in timeline if e.idempotency_key == f"op{n}"), key=_started)
        for (a, b), noise in zip(itertools.pairwise(mine), row, strict=True):
            since = answered_at(a)
            asked = max(b.started_at - since - noise, 0.0)
            sends[b.connection] = (
                Sent(b.connection, 0, b.started_at, n, 0, (Sleep(since, asked),)),
            )
    return Pacing(sends)


def _started(exchange: Exchange) -> float:
    return exchange.started_at


def delay(rng: random.Random, scale: float) -> float:
    """One wake-up delay: exponential with mean ``scale``, 1 in 100 a 10x hiccup."""
    return rng.expovariate(1 / scale) * (10 if rng.random() < 0.01 else 1)


def noisy(waits: Sequence[float], scale: float, rng: random.Random) -> list[float]:
    """``waits`` as recorded: each lengthened by :data:`HOPS` wake-up delays."""
    return [w + sum(delay(rng, scale) for _ in range(HOPS)) for w in waits]


def probed(span: float, scale: float, rng: random.Random) -> Noise:
    """What the probe measures on such a machine over ``span`` seconds: a sample each
    ``PERIOD``."""
    samples = [delay(rng, scale) for _ in range(max(1, int(span / PERIOD)))]
    return Noise(samples, seed=rng.randrange(2**32))


def recorded(
    rows: Sequence[Sequence[float]], scale: float, rng: random.Random, spread: float
) -> tuple[list[Exchange], Noise]:
    """The timeline of clients whose waits are ``rows`` (already :func:`noisy`), first
    attempts ``spread`` apart, and the noise the probe measures over their span."""
    return herd(rows, spread=spread), probed(max(map(sum, rows)), scale, rng)


def outcome(check: Callable[..., None], timeline: list[Exchange], **kwargs: object) -> str:
    """ "pass", "insufficient", or the rule a failing verdict names (its message's head)."""
    return said(lambda: check(timeline, **kwargs))


def said(judge: Callable[[], None]) -> str:
    """What ``judge``, a verdict ready to run, says: "pass", "insufficient", or the rule
    it fails (its message's head)."""
    try:
        judge()
    except InsufficientEvidence:
        return "insufficient"
    except ResilienceAssertionError as exc:
        return str(exc).split(":", 1)[0]
    return "pass"
