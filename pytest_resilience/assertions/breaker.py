"""Verdict on circuit breakers: open after N failures, stay quiet, probe once, resume."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import validate
from ..errors import ConfigurationError
from ..http.records import Exchange
from ..observe.records import Call, IntentEvent
from .calls import call_rows
from .lateness import lateness
from .operations import FailureSet, answered_at, status_text
from .report import (
    ANSWERING_FAULTS,
    Blind,
    Row,
    blind_spans,
    fail,
    insufficient,
    overlaps,
    plural,
)


def check_breaker_opened(
    exchanges: Sequence[Exchange],
    calls: Sequence[Call],
    after_failures: int,
    cooldown: float,
    *,
    tolerance: float = 0.05,
    failure_statuses: Iterable[Any] | None = None,
    blind: Blind = (),
    origin: float | None = None,
    noise: Callable[[float, float], Sequence[float]] = lambda since, until: (),
    jumps: Sequence[tuple[float, float]] = (),
) -> None:
    """After ``after_failures`` consecutive failures at the service (``failure_statuses``: its
    failure set), the client keeps being called but the service hears nothing for
    ``cooldown`` seconds; then one probe at a time.

    ``blind`` lists spans in which attempts could leave no record: "heard nothing" is not
    shown where one overlaps the time judged, nor are failures missing from a streak
    (insufficient evidence, unless a recorded attempt broke the rule).

    A request begun within ``tolerance`` of the opening may have left before the answer
    that opened the breaker reached the client, and is not counted; one begun later by no
    more than timing noise can add (:meth:`.timing.Noise.most` of the samples ``noise``
    gives between two instants, the probe's, from the opening to the last such request; on virtual time no more than the real time from the opening to the request,
    read from ``jumps``) may have too, on a busy machine: it is set aside, and where the
    verdict would pass with no request later than that, it is insufficient evidence.
    """
    __tracebackhide__ = True
    validate.count(after_failures, "after_failures", allow_none=False)
    validate.number(cooldown, "cooldown (seconds)", above=True)
    validate.seconds(tolerance, "tolerance")
    if cooldown <= 2 * tolerance:
        raise ConfigurationError(
            f"cooldown ({cooldown:g} s) must be over twice the tolerance ({tolerance:g} s): a "
            "call begun within the tolerance of the opening or of the cooldown's end shows "
            "nothing held back, so no call could show the breaker open; pass a smaller tolerance."
        )
    is_failure = FailureSet(failure_statuses)
    ordered = sorted(exchanges, key=lambda e: e.started_at)
    start = (
        origin
        if origin is not None
        else min([e.started_at for e in ordered] + [c.started_at for c in calls], default=0.0)
    )

    def rows(opened: float | None = None, flagged: set[int] | None = None) -> list[Row]:
        out = [
            Row(
                e.started_at,
                f"{e.method} {e.path.split('?', 1)[0]}",
                "",
                status_text(e),
                None,
                ""
                if opened is None or e.started_at <= opened
                else f"none before +{cooldown * 1000:.0f} ms",
                i in (flagged or set()),
            )
            for i, e in enumerate(ordered)
        ]
        out += call_rows(calls)
        return sorted(out, key=lambda r: r.at)

    streak = 0
    opened_at: float | None = None
    opened_index = -1
    for index, exchange in enumerate(ordered):
        streak = streak + 1 if is_failure(exchange) else 0
        if streak >= after_failures:
            opened_at = exchange.ended_at if exchange.ended_at is not None else exchange.started_at
            opened_index = index
            break
    last = max([e.started_at for e in ordered] + [c.started_at for c in calls], default=0.0)
    if opened_at is None and overlaps(blind, -math.inf, last):  # failures may lie in one
        raise insufficient(
            f"the service never saw {after_failures} consecutive failures on record, but "
            f"attempts could leave no record ({blind_spans(blind, start)}); "
            f"{ANSWERING_FAULTS}.",
            rows(),
            start,
        )
    if opened_at is None:
        raise insufficient(
            f"the breaker cannot be judged: the service never saw {after_failures} consecutive "
            "failures; inject a fault that lasts longer.",
            rows(),
            start,
        )
    first = opened_index - after_failures + 1  # the streak's first failure
    since = answered_at(ordered[first - 1]) if first > 0 else -math.inf
    if overlaps(blind, since, ordered[first].started_at):
        raise insufficient(
            f"the service saw {after_failures} consecutive failures on record, but failures "
            f"before them could leave no record ({blind_spans(blind, start)}), so the breaker "
            "may have counted more before it opened; judge it on a fault that answers (fail, "
            'rate_limit, cut, a partition of the answers alone: direction="downstream").',
            rows(),
            start,
        )
    # A request begun within ``tolerance`` of the failure that opens the breaker may have
    # left before that answer reached the client (concurrent callers on a busy machine), so
    # only a call begun after that shows the breaker holding a request back.
    after = [e for e in ordered[opened_index + 1 :] if e.started_at > opened_at + tolerance]
    during = [
        c for c in calls if opened_at + tolerance < c.started_at < opened_at + cooldown - tolerance
    ]

    set_aside: list[str] = []  # why requests early in the cooldown show nothing (below)
    aside: set[int] = set()  # those requests

    def quiet(until: float, ends: float | None = None) -> None:
        """Pass, if the records show the quiet (no breach on record was found): up to
        ``until``, and, where no probe showed a cooldown over, with a call begun when the
        cooldown that ``ends`` then was over (within ``tolerance``)."""
        __tracebackhide__ = True
        if not during:
            raise insufficient(
                f"the breaker cannot be judged: the client was not called in the {cooldown:g} s "
                f"after {after_failures} consecutive failures (beyond the tolerance of "
                f"{tolerance * 1000:.0f} ms), so no call shows one held back; keep calling "
                "it (resilience.load) through the cooldown.",
                rows(opened_at),
                start,
            )
        _quiet_on_record(blind, opened_at, until, tolerance, rows(opened_at), start)
        if ends is not None and not any(c.started_at >= ends - tolerance for c in calls):
            last = max(c.started_at for c in calls)
            raise insufficient(
                f"the client's last call began {(last - ends + cooldown) * 1000:.0f} ms after "
                f"the breaker opened, before its {cooldown:g} s cooldown ended (within the "
                f"{tolerance * 1000:.0f} ms tolerance): a breaker with a cooldown that short "
                "leaves the same records; keep calling the client (resilience.load) until the "
                "cooldown has ended.",
                rows(opened_at),
                start,
            )
        if set_aside:
            raise insufficient(set_aside[0], rows(opened_at, aside), start)

    if after and after[0].started_at < opened_at + cooldown - tolerance:
        early = [
            i
            for i, e in enumerate(ordered)
            if opened_at + tolerance < e.started_at < opened_at + cooldown - tolerance
        ]
        late = lateness(
            noise,
            jumps,
            {
                i: (ordered[i].started_at - opened_at - tolerance, opened_at, ordered[i].started_at)
                for i in early
            },
            "from the opening to the request",
        )
        if late.beyond:
            held = sorted(late.beyond)
            raise fail(
                f"breaker did not open: after {after_failures} consecutive failures the service "
                f"still got {plural(len(held), 'call')} within the {cooldown:g} s cooldown, the first "
                f"{(ordered[held[0]].started_at - opened_at) * 1000:.0f} ms later"
                f"{late.by_more_than(f'the {tolerance * 1000:.0f} ms tolerance plus ')}.",
                rows(opened_at, set(held)),
                start,
            )
        # Set aside: what follows (a burst of probes, a failed probe not heeded) may still
        # fail the verdict; where it would pass, these make it insufficient evidence.
        they = "it" if len(early) == 1 else "they"
        set_aside.append(
            f"after {after_failures} consecutive failures the service got "
            f"{plural(len(early), 'request')} within the {cooldown:g} s cooldown, but none more "
            f"than {late.most_past * 1000:.0f} ms past the {tolerance * 1000:.0f} ms "
            f"tolerance, {late.within()}: on a busy "
            f"machine {they} may have left before the answer that opened the breaker reached "
            "the client (concurrent callers), so whether it opened is not shown; what decides "
            "is a request reaching the service later than that, or none."
        )
        aside = set(early)
        after = [e for e in after if e.started_at >= opened_at + cooldown - tolerance]
    judged_until = opened_at + cooldown  # the quiet judged so far, then each probe's
    whole = False  # a cooldown shown whole: a probe came once it was over
    while after:
        probe = after[0]
        probe_end = probe.ended_at if probe.ended_at is not None else probe.started_at + cooldown
        burst = [
            i
            for i, e in enumerate(ordered)
            if e is not probe and probe.started_at <= e.started_at < probe_end
        ]
        if burst:
            raise fail(
                f"breaker let {len(burst) + 1} calls through at once after the cooldown; a half-open "
                "breaker sends one probe and waits for its answer.",
                rows(opened_at, set(burst)),
                start,
            )
        if not is_failure(probe):
            quiet(probe_end)
            return
        # A failed probe opens the breaker again, for another cooldown (the one before it
        # was shown whole: the probe came once it was over).
        reopened = probe_end
        whole = True
        judged_until = reopened + cooldown
        early = [
            i
            for i, e in enumerate(ordered)
            if reopened <= e.started_at < reopened + cooldown - tolerance and e is not probe
        ]
        if early:
            raise fail(
                f"breaker did not open again after its probe failed: the service got "
                f"{plural(len(early), 'call')} within the {cooldown:g} s that followed, the first "
                f"{(ordered[early[0]].started_at - reopened) * 1000:.0f} ms later.",
                rows(opened_at, set(early)),
                start,
            )
        after = [e for e in after[1:] if e.started_at >= reopened + cooldown - tolerance]
    # A last cooldown cut short by the end of the calls is judged as far as they go, once
    # one before it was shown whole.
    quiet(max([judged_until, *(e.started_at for e in ordered)]), None if whole else judged_until)


def _quiet_on_record(
    blind: Blind, opened_at: float, until: float, tolerance: float, rows: list[Row], start: float
) -> None:
    """Pass only if no ``blind`` span overlaps the time judged (from the opening to the
    answer of the probe that closed the breaker, or the end of the last cooldown; its
    ``tolerance`` at each end excused, as for the requests): in one, the client may have
    reached for the service with no record of it."""
    __tracebackhide__ = True
    if overlaps(blind, opened_at + tolerance, until - tolerance):
        raise insufficient(
            "the service heard nothing on record while the breaker should have been open, "
            f"but attempts could leave no record ({blind_spans(blind, start)}); "
            f"{ANSWERING_FAULTS}.",
            rows,
            start,
        )


def check_breaker_respected(
    exchanges: Sequence[Exchange],
    intents: Sequence[IntentEvent],
    calls: Sequence[Call] | None,
    *,
    tolerance: float = 0.05,
    blind: Blind = (),
    origin: float | None = None,
    noise: Callable[[float, float], Sequence[float]] = lambda since, until: (),
    jumps: Sequence[tuple[float, float]] = (),
) -> None:
    """While the client's breaker said it was open, no request reached the service.

    The windows come from the breaker's own state changes (``intent.breaker_listener()``):
    from each change to ``open`` until the next change (half-open for a probe, or closed).
    A request that reached the service within ``tolerance`` of the opening was already on
    its way.  One later by no more than timing noise can add (:mod:`.lateness`: 4 wake-ups
    as late as the latest the probe measured, ``noise``, over the span from the first
    opening judged to the last request judged; on virtual time no more than the real time
    from its opening to the request, read from ``jumps``) may have been let through before
    the breaker opened and held on the way by a busy machine (concurrent callers): it
    shows nothing either way, and with no request later than that the verdict is
    insufficient evidence.  A breaker never open longer than ``tolerance`` shows nothing.

    No request while it was open passes only if the client was called then: one of
    ``calls`` (the run's; None: no run given) began in an open spell more than
    ``tolerance`` from both its ends, when a breaker not respected would have sent a
    request, and no ``blind`` span, in which a request could leave no record, overlaps
    the spell.  Otherwise it is insufficient evidence.  A refused call tells no listener
    (pybreaker 1.4 ``CircuitOpenState.before_call`` raises before the listeners'
    ``before_call``), so only the run shows it; and pybreaker half-opens on a call, the
    first after its reset timeout, which begins just before the change it causes and goes
    through: the spell's last ``tolerance`` is not judged for that reason.
    """
    __tracebackhide__ = True
    validate.seconds(tolerance, "tolerance")
    changes = sorted((i for i in intents if i.kind == "breaker"), key=lambda i: i.at)
    ordered = sorted(exchanges, key=lambda e: e.started_at)
    start = origin if origin is not None else min([e.started_at for e in ordered], default=0.0)
    if not changes:
        raise insufficient(
            "the breaker cannot be judged: it reported no state change; pass "
            "listeners=[resilience.intent(service).breaker_listener()] to the breaker.",
            [],
            start,
        )
    windows = [
        (change.at, changes[n + 1].at if n + 1 < len(changes) else float("inf"))
        for n, change in enumerate(changes)
        if str(change.value).lower() == "open"
    ]
    if not windows:
        raise insufficient(
            "the breaker cannot be judged: it never said it was open (its changes: "
            + ", ".join(str(c.value) for c in changes)
            + "); inject failures enough to open it.",
            [Row(c.at, f"breaker -> {c.value}", "", "") for c in changes],
            start,
        )
    longest = max(until - at for at, until in windows)
    if longest <= tolerance:  # no request could be shown let through while it was open
        raise insufficient(
            f"the breaker cannot be judged: it stayed open {longest * 1000:.0f} ms at most, "
            f"within the {tolerance * 1000:.0f} ms tolerance in which a request let through "
            "before it opened may still reach the service; pass a smaller tolerance, or give "
            "the breaker a longer reset timeout.",
            [Row(c.at, f"breaker -> {c.value}", "", "") for c in changes],
            start,
        )
    opened = {
        n: opened_at
        for n, e in enumerate(ordered)
        for opened_at, until in windows
        if opened_at + tolerance < e.started_at < until
    }
    if not opened:
        _held_back_on_record(windows, calls, blind, tolerance, changes, start)
        return
    late = lateness(
        noise,
        jumps,
        {
            n: (ordered[n].started_at - at - tolerance, at, ordered[n].started_at)
            for n, at in opened.items()
        },
        "from the opening to the request",
    )
    flagged = late.beyond or frozenset(opened)
    rows = [
        Row(
            e.started_at,
            f"{e.method} {e.path.split('?', 1)[0]}",
            n + 1,
            status_text(e),
            None,
            "breaker open: none" if n in flagged else "",
            n in flagged,
        )
        for n, e in enumerate(ordered)
    ]
    rows += [Row(c.at, f"breaker -> {c.value}", "", "") for c in changes]
    rows.sort(key=lambda r: r.at)
    if late.beyond:
        first = min(late.beyond)
        raise fail(
            f"breaker said open, yet {plural(len(late.beyond), 'request')} reached the service; the "
            f"first {(ordered[first].started_at - opened[first]) * 1000:.0f} ms after it opened"
            f"{late.by_more_than(f'the {tolerance * 1000:.0f} ms tolerance plus ')}. Calls "
            "that bypass the breaker (another client, a retry outside it) keep hammering the "
            "service.",
            rows,
            start,
        )
    they = "it" if len(opened) == 1 else "they"
    raise insufficient(
        f"{plural(len(opened), 'request')} reached the service while the breaker said open, "
        f"but none more than {late.most_past * 1000:.0f} ms past the {tolerance * 1000:.0f} ms "
        f"tolerance, {late.within()}: on a busy machine {they} may have been let through "
        "before it opened and held on the way (concurrent callers), so whether the breaker "
        "is respected is not shown; what decides is a request reaching the service later "
        "than that, or none.",
        rows,
        start,
    )


def _held_back_on_record(
    windows: Sequence[tuple[float, float]],
    calls: Sequence[Call] | None,
    blind: Blind,
    tolerance: float,
    changes: Sequence[IntentEvent],
    start: float,
) -> None:
    """Pass only if the record shows the breaker holding a call back: a call begun in an
    open spell more than ``tolerance`` from both its ends, and no ``blind`` span
    overlapping the spells."""
    __tracebackhide__ = True
    rows = [Row(c.at, f"breaker -> {c.value}", "", "") for c in changes]
    if any(overlaps(blind, at + tolerance, until) for at, until in windows):
        raise insufficient(
            "no request reached the service on record while the breaker said open, but "
            f"requests could leave no record ({blind_spans(blind, start)}); judge the "
            "breaker under a fault that answers (fail, rate_limit, cut, a partition of the "
            'answers alone: direction="downstream").',
            rows,
            start,
        )
    if calls is None:
        raise insufficient(
            "no request reached the service while the breaker said open, but no run was "
            "given to show that the client was called then (a call the breaker refuses "
            "leaves no other record); pass the run (of resilience.load or drive) that "
            "called the client while its breaker was open.",
            rows,
            start,
        )
    if not any(
        at + tolerance < c.started_at < until - tolerance for c in calls for at, until in windows
    ):
        raise insufficient(
            "no request reached the service while the breaker said open, but no call of the "
            f"run began in an open spell more than {tolerance * 1000:.0f} ms from its "
            "opening and its end, so nothing showed the breaker holding one back; call the "
            "client through the run while the breaker is open.",
            sorted(rows + call_rows(calls), key=lambda r: r.at),
            start,
        )
