"""Verdicts on what the client saw: its calls (``resilience.drive`` and ``resilience.load``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence, Set

from ..observe.records import Call, FaultEvent, fault_spans
from .lateness import lateness
from .report import Row, fail, insufficient, plural


def call_rows(
    calls: Sequence[Call], flagged: Set[int] = frozenset(), allowed: str = ""
) -> list[Row]:
    """The client's calls as failure-table rows, those in ``flagged`` marked."""
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
        for c in calls
    ]


def check_fail_fast(
    calls: Sequence[Call],
    max_latency: float,
    skip: int = 0,
    *,
    origin: float,
    noise: Callable[[float, float], Sequence[float]] = lambda since, until: (),
    jumps: Sequence[tuple[float, float]] = (),
) -> None:
    """Every call after the first ``skip`` returned or failed within ``max_latency`` s;
    without such a call, insufficient evidence.  A busy machine can hold a call past it
    however fast the client fails: a call slower by no more than :meth:`.timing.Noise.most`
    of the samples over the calls judged (:mod:`.lateness`; ``noise`` and ``jumps`` as for
    :func:`check_recovers`, on virtual time no more than the call's own real time) shows
    nothing either way, and with no call slower than that the verdict is insufficient
    evidence.  The samples are read over all the calls judged, not the slow ones alone: one
    slow call's few samples would seldom hold the hiccup that slowed it."""
    if len(calls) <= skip:
        raise insufficient(
            f"fail-fast cannot be judged: the run made {plural(len(calls), 'call')}, all "
            f"within the {skip} skipped; drive more calls.",
            call_rows(calls),
            origin,
        )
    over = [c for c in calls[skip:] if c.latency > max_latency]
    if not over:
        return
    slow = lateness(
        noise,
        jumps,
        {c.index: (c.latency - max_latency, c.started_at, c.ended_at) for c in over},
        "the call took",
        over=(calls[skip].started_at, max(c.ended_at for c in calls[skip:])),
    )
    allowed = f"<= {max_latency * 1000:.0f} ms"
    if slow.beyond:
        worst = max((c for c in over if c.index in slow.beyond), key=lambda c: c.latency)
        raise fail(
            f"{len(slow.beyond)} of {len(calls) - skip} calls took longer than "
            f"{max_latency * 1000:.0f} ms (the slowest {worst.latency * 1000:.0f} ms)"
            f"{slow.by_more_than()}; a client that fails fast does not wait on a service it "
            "knows is down.",
            call_rows(calls, slow.beyond, allowed),
            origin,
        )
    raise insufficient(
        f"{plural(len(over), 'call')} took longer than {max_latency * 1000:.0f} ms, but by no "
        f"more than {slow.most_past * 1000:.0f} ms, {slow.within()}: a busy machine "
        "may have held them that long, so whether the client fails fast is not shown; what "
        "decides is a call slower than that, or none over.",
        call_rows(calls, {c.index for c in over}, allowed),
        origin,
    )


def check_availability(calls: Sequence[Call], min: float, *, origin: float) -> None:
    """At least a share ``min`` of calls returned a value (fallbacks included)."""
    if not calls:
        raise insufficient("availability cannot be judged: the run made no calls.", [], origin)
    availability = sum(c.ok for c in calls) / len(calls)
    if availability < min:
        failed = {c.index for c in calls if not c.ok}
        raise fail(
            f"availability {availability:.0%} is below {min:.0%}: {len(failed)} of "
            f"{len(calls)} calls raised instead of answering (a fallback counts as an answer).",
            call_rows(calls, failed, "a value"),
            origin,
        )


def check_recovers(
    calls: Sequence[Call],
    faults: Sequence[FaultEvent],
    within: float,
    *,
    origin: float,
    noise: Callable[[float, float], Sequence[float]] = lambda since, until: (),
    jumps: Sequence[tuple[float, float]] = (),
) -> None:
    """Every call that started ``within`` s after the last heal succeeded, up to the
    application of a fault never healed (``faults``: the test's applied and healed events):
    under that fault a failure shows nothing of recovery.

    The client learns of its last failure, and wakes from whatever it waits out after it
    (a breaker's cooldown), through wake-ups that a busy machine delays, so its recovery
    may come later than the heal by timing noise: a call that failed past ``within`` by no
    more than :meth:`.timing.Noise.most` (:mod:`.lateness`; from ``noise``, the probe's samples between two
    instants, over the time from the heal to the last failed call; on virtual time never
    more than the real time from the heal to the call, read from ``jumps``) shows nothing
    either way, and with no failure beyond that the verdict is insufficient evidence."""
    heals = [e.at for e in faults if e.action == "healed"]
    if not heals:
        raise insufficient(
            "recovery cannot be judged, no fault was healed during the run.",
            call_rows(calls),
            origin,
        )
    healed = max(heals)
    still = min(
        (s for s in fault_spans(faults) if s.healed_at is None),
        key=lambda s: s.applied_at,
        default=None,
    )
    until = math.inf if still is None else still.applied_at
    later = [c for c in calls if healed + within <= c.started_at < until]
    if not later:
        raise insufficient(
            f"recovery cannot be judged, no call started {within:g} s after the last fault "
            "healed"
            + (
                "; run the load longer."
                if still is None
                else f" and before {still.kind} on {still.service}, applied at "
                f"+{(still.applied_at - origin) * 1000:.0f} ms, which was never healed (its count "
                "not spent when the run ended): heal it, or run the load until it ends."
            ),
            call_rows(calls),
            origin,
        )
    failed = [c for c in later if not c.ok]
    if not failed and not any(not c.ok and c.started_at < healed for c in calls):
        raise insufficient(
            "recovery cannot be judged, no call failed before the last fault healed (at "
            f"+{(healed - origin) * 1000:.0f} ms), so none shows the client recovering from "
            "one; call the client while the fault is in force (a call that falls back "
            "succeeds, and shows no failure).",
            call_rows(calls),
            origin,
        )
    if not failed:
        return
    late = lateness(
        noise,
        jumps,
        {c.index: (c.started_at - healed - within, healed, c.started_at) for c in failed},
        "from the heal to the call",
    )
    heal = f"the last fault healed (at +{(healed - origin) * 1000:.0f} ms)"
    if late.beyond:
        raise fail(
            f"no recovery: {plural(len(late.beyond), 'call')} still failed more than {within:g} s "
            f"after {heal}{late.by_more_than()}.",
            call_rows(calls, late.beyond, "ok"),
            origin,
        )
    raise insufficient(
        f"{plural(len(failed), 'call')} failed more than {within:g} s after {heal}, but by "
        f"no more than {late.most_past * 1000:.0f} ms, {late.within()}: the client may have "
        "learnt of its last failure, or woken from what it waits out after it, that much "
        f"later, so whether it recovers within {within:g} s is not shown; what decides is a "
        "call failing later than that, or none failing.",
        call_rows(calls, set(late.past), "ok"),
        origin,
    )
