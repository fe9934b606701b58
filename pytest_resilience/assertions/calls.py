"""Verdicts on what the client saw: its calls (``resilience.drive`` and ``resilience.load``)."""

from __future__ import annotations

import math
from collections.abc import Sequence, Set

from ..observe.records import Call, FaultEvent, fault_spans
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
    calls: Sequence[Call], max_latency: float, skip: int = 0, *, origin: float
) -> None:
    """Every call after the first ``skip`` returned or failed within ``max_latency`` s;
    without such a call, insufficient evidence."""
    if len(calls) <= skip:
        raise insufficient(
            f"fail-fast cannot be judged: the run made {plural(len(calls), 'call')}, all "
            f"within the {skip} skipped; drive more calls.",
            call_rows(calls),
            origin,
        )
    slow = {c.index for c in calls[skip:] if c.latency > max_latency}
    if slow:
        worst = max(c.latency for c in calls if c.index in slow)
        raise fail(
            f"{len(slow)} of {len(calls) - skip} calls took longer than "
            f"{max_latency * 1000:.0f} ms (the slowest {worst * 1000:.0f} ms); a client that "
            "fails fast does not wait on a service it knows is down.",
            call_rows(calls, slow, f"<= {max_latency * 1000:.0f} ms"),
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
    calls: Sequence[Call], faults: Sequence[FaultEvent], within: float, *, origin: float
) -> None:
    """Every call that started ``within`` s after the last heal succeeded, up to the
    application of a fault never healed (``faults``: the test's applied and healed events):
    under that fault a failure shows nothing of recovery."""
    spans = fault_spans(faults)
    heals = [s.healed_at for s in spans if s.healed_at is not None]
    if not heals:
        raise insufficient(
            "recovery cannot be judged, no fault was healed during the run.",
            call_rows(calls),
            origin,
        )
    healed = max(heals)
    still = min((s for s in spans if s.healed_at is None), key=lambda s: s.applied_at, default=None)
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
    failed = {c.index for c in later if not c.ok}
    if failed:
        raise fail(
            f"no recovery: {len(failed)} calls still failed more than {within:g} s after the "
            f"last fault healed (at +{(healed - origin) * 1000:.0f} ms).",
            call_rows(calls, failed, "ok"),
            origin,
        )
