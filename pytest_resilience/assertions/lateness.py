"""How far records lie past a fixed time limit, beside what timing noise can add.

Four verdicts judge a record against a limit the user set: a call's latency against
``max_latency`` (:func:`.calls.check_fail_fast`), a failure against ``within`` of the heal
(:func:`.calls.check_recovers`), a request against the ``tolerance`` after a breaker
opened (:func:`.breaker.check_breaker_opened`, :func:`.breaker.check_breaker_respected`).
A busy machine moves each record later by wake-ups the client could not help, so a record
past its limit by no more than :meth:`.timing.Noise.most` shows nothing either way; one
past it by more breaks the limit.  On real time the allowance is one for all the records
judged: 4 wake-ups as late as the latest the probe measured over the span from the first
record's start to the last one's end (a stall anywhere in it excuses them all: more
insufficient evidence, never a false pass); on virtual time each record's is bounded by
the real time of its own span.  With no noise measured (no probe samples over the span)
none is allowed, and a record past the limit breaks it.

The allowance is a bound from the noise measured, not a p-value: each verdict's
simulation in the suite gives its rates (``tests/test_runs.py``,
``tests/test_breaker_verdicts.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

from .timing import Noise, RealTime

K = TypeVar("K", bound=Hashable)

NAMED = 0.0005
"""An allowance below this (seconds) rounds to 0 ms and is not named in a failure."""


@dataclass(frozen=True)
class Lateness(Generic[K]):
    """Records (keyed ``K``) past a limit: ``past`` seconds each, ``allowed`` the most
    timing noise can add over each one's span, ``span`` that span in words (what bounds it
    on virtual time)."""

    noise: Noise
    past: Mapping[K, float]
    allowed: Mapping[K, float]
    span: str

    @cached_property
    def beyond(self) -> frozenset[K]:
        """The records past their limit by more than timing noise can add (or with none
        measured): each breaks it."""
        return frozenset(
            k for k, x in self.past.items() if x > self.allowed[k] or self.allowed[k] == 0.0
        )

    @property
    def most_past(self) -> float:
        """The furthest any record lies past its limit (seconds)."""
        return max(self.past.values())

    def by_more_than(self, plus: str = "") -> str:
        """The clause a failure ends with: ``", by more than <plus>the N ms that timing
        noise can add (how)"``, naming the smallest allowance of the records beyond; empty
        where that rounds to nothing."""
        most = min(self.allowed[k] for k in self.beyond)
        return (
            f", by more than {plus}{self.noise.most_said(most, self.span)}" if most >= NAMED else ""
        )

    def within(self) -> str:
        """Where no record is beyond: ``"within the N ms that timing noise can add (how)"``,
        the largest allowance."""
        return f"within {self.noise.most_said(max(self.allowed.values()), self.span)}"


def lateness(
    noise: Callable[[float, float], Sequence[float]],
    jumps: Sequence[tuple[float, float]],
    records: Mapping[K, tuple[float, float, float]],
    span: str,
    over: tuple[float, float] | None = None,
) -> Lateness[K]:
    """Judge ``records`` (key → seconds past the limit, and the span its noise is read
    over: since, until) beside the noise ``noise`` (the probe's samples between two
    instants) gives from the earliest ``since`` to the latest ``until``; on virtual time
    (``jumps``) never more than the real time each record's span took
    (:class:`.timing.RealTime`); ``over``: read the samples over that span instead.
    ``records`` must not be empty."""
    since, until = over or (
        min(s for _, s, _ in records.values()),
        max(u for _, _, u in records.values()),
    )
    timing = Noise(noise(since, until), real=RealTime(jumps) if jumps else None)
    return Lateness(
        timing,
        {k: x for k, (x, _, _) in records.items()},
        {k: timing.most((s, u)) for k, (_, s, u) in records.items()},
        span,
    )
