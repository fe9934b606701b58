"""The timing verdict on retries: the cap, growth and jitter of the waits between
attempts (:func:`check_backoff`).

The waits, and the noise each can carry, are read by :mod:`.waits`; the statistics are
:mod:`.timing`'s.  Times are monotonic seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import validate
from ..errors import ConfigurationError
from ..http.records import Exchange
from .operations import FailureSet, Grouping, InFlight, Operation, operations
from .report import (
    ANSWERING_FAULTS,
    Blind,
    blind_spans,
    fail,
    insufficient,
    operation_rows,
    origin_of,
    overlaps,
    retry_cells,
)
from .retries import Failures, may_hide_attempts
from .timing import (
    ALPHA,
    MIN_JITTER,
    Noise,
    judge_growth,
    judge_no_jitter,
)
from .waits import (
    NOTHING_ASKED,
    asked_in,
    asked_sleeps,
    convergence,
    in_flight_of,
    measured_noise,
    noise_bounds,
    on_real_time,
    places_note,
    spread_of,
    undecided_jitter,
    veto_clear,
    wait_columns,
)

if TYPE_CHECKING:
    from ..observe.pacing import Pacing
    from ..observe.records import Call


def check_backoff(
    exchanges: Sequence[Exchange],
    jitter: bool = True,
    min_factor: float = 1.5,
    max_delay: float | None = None,
    *,
    tolerance: float = 0.02,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    noise: Noise | Sequence[float] = (),
    jumps: Sequence[tuple[float, float]] = (),
    calls: Sequence[Call] = (),
    pacing: Pacing | None = None,
    blind: Blind = (),
    origin: float | None = None,
) -> None:
    """Waits between retries grow, carry jitter, and stay under the cap.

    - cap: no retry more than ``max_delay`` after the answer before it (after its start
      when no answer reached the client), by more than timing noise can add plus
      ``tolerance``; past it by less is insufficient evidence (:func:`_over_the_cap`);
    - growth and jitter are statistical tests on the waits below the cap
      (:mod:`.timing`): "does not grow by ``min_factor``" and "no jitter" are each claimed
      at a false-alarm rate under 1 in 1,000; growth is clear when the later waits lie so
      far above ``min_factor`` times the first ones that a client never growing by it would
      leave them there under 1 in 2,000 times (:func:`.timing.judge_growth`); a cap that
      stops the growth leaves it undecided, never passed; jitter is clear when waits at
      the same retry of several operations lie further apart than the measured ``noise``
      (delays in seconds, or a :class:`Noise`) explains, with the way out of the driven
      ``calls`` when they pair with the operations (:func:`.operations.outbound`).  When
      the evidence decides neither way, :class:`InsufficientEvidence` says what would.

    ``blind`` lists spans in which attempts could leave no record (connections refused,
    reset or held on the way in).  A gap between two recorded attempts that overlaps one
    may hold attempts no record shows, so it is no wait: the cap is not judged on it.
    While an operation may have made attempts in a span (:func:`.retries.may_hide_attempts`)
    its waits are not known retry by retry, and the others, those done before the span,
    are the quicker ones: growth and jitter are not judged, and only a breach of the cap
    on a gap no span overlaps decides (else insufficient evidence).
    """
    __tracebackhide__ = True
    validate.flag(jitter, "jitter")
    validate.number(min_factor, "min_factor")
    if max_delay is not None:
        validate.number(max_delay, "max_delay (seconds)", above=True)
    validate.seconds(tolerance, "tolerance")
    if not jitter and min_factor <= 1 and max_delay is None:
        raise ConfigurationError(
            "assert_backoff(jitter=False, min_factor<=1) without max_delay judges nothing: "
            "ask for growth (min_factor > 1), jitter (jitter=True) or a cap (max_delay=)."
        )
    failed = FailureSet(failure_statuses)
    all_ops = operations(exchanges, group, failed)
    ops = [op for op in all_ops if len(op.attempts) > 1]
    start = origin_of(exchanges, origin)
    if not ops:
        raise insufficient(
            f"no operation retried ({len(exchanges)} attempts in {len(all_ops)} operations), so "
            "there is no wait to judge; inject a longer fault.",
            operation_rows(all_ops),
            start,
        )
    measured = measured_noise(noise, calls, all_ops, jumps)
    in_flight = in_flight_of(all_ops, measured)
    pacing = on_real_time(pacing, measured)
    missing: list[str] = []
    if max_delay is not None:
        missing += _over_the_cap(
            ops, max_delay, tolerance, measured, in_flight, pacing, start, blind
        )
    blinded = [op for op in ops if may_hide_attempts(op, blind, failed)]
    if blinded:
        # Their waits are not known retry by retry, and the operations left are those that
        # ended before a span began (the quicker ones): judged alone, they would be a
        # biased sample.  Only the cap, on gaps no span overlaps, decides.
        missing.insert(
            0,
            f"attempts could leave no record ({blind_spans(blind, start)}), so "
            f"{len(blinded)} of the {len(ops)} operations that retried may have made "
            "attempts before, between or after those recorded, and growth and jitter are "
            f"not judged; {ANSWERING_FAULTS}",
        )
        raise insufficient("; ".join(missing) + ".", operation_rows(all_ops), start)
    cap = None if max_delay is None else max_delay - tolerance
    columns = wait_columns(ops, cap)
    # Jitter and growth at half the false-alarm rate each, so that together they keep it.
    asked = asked_sleeps(ops, cap, pacing)
    bounds = noise_bounds(ops, cap, measured, in_flight, asked)
    converged = convergence(ops, cap, columns, measured)
    lockstep = veto_clear(judge_no_jitter(columns, measured, ALPHA / 2, bounds), converged)
    if min_factor > 1:
        capped = cap is not None and any(w >= cap for op in ops for w in op.waits)
        growth = judge_growth(columns, min_factor, measured, ALPHA / 2)
        if growth.outcome == "claim":
            raise fail(
                f"retry waits do not grow: the longest wait after the first retry is "
                f"{max(w for c in columns[1:] for w in c) * 1000:.0f} ms, against "
                f"{max(columns[0]) * 1000:.0f} ms before the first; jitter-free waits growing "
                f"{min_factor:g}x a retry would leave them this low with p = "
                f"{growth.claim_p:.2g} (false-alarm rate {ALPHA:g}). A fixed interval keeps "
                "hammering a struggling service.",
                operation_rows(ops, flagged=retry_cells(ops)),
                start,
            )
        if growth.outcome == "undecided":
            below = " below the cap" if capped else ""
            missing.append(
                f"growth needs waits before a first and a later retry{below}"
                if sum(1 for c in columns if c) < 2 or not columns[0]
                else f"the later waits{below} do not lie far enough above {min_factor:g}x the "
                f"first ones to rule out a client that never grows (p = {growth.clear_p:.2g}, "
                f"against {growth.level:g}): the first waits may all be low jitter draws and "
                f"any wait may carry noise beyond the {len(measured.samples)} measured; growth "
                f"shows with more operations and retries{below} (about 10 with 5 retries "
                "under full jitter), or pass min_factor=1 to judge the cap and jitter alone"
                + (
                    ""
                    if growth.claim_p == 1.0
                    else f"; nor low enough to rule growth out (p = {growth.claim_p:.2g})"
                )
            )
    if jitter:
        if lockstep.outcome == "claim":
            raise fail(
                f"retry waits carry no jitter: {spread_of(columns, measured)}, where jitter of at least "
                f"x{1 - MIN_JITTER:g}-1.0 would leave them this close with p = "
                f"{lockstep.claim_p:.2g} (false-alarm rate {ALPHA:g}); clients that failed "
                "together retry together.",
                operation_rows(ops, flagged=retry_cells(ops)),
                start,
            )
        if lockstep.outcome == "undecided":
            places = places_note(ops, pacing)
            missing.append(undecided_jitter(lockstep, columns, measured, asked, converged, places))
    if missing:
        raise insufficient("; ".join(missing) + ".", operation_rows(ops), start)


def _over_the_cap(
    ops: Sequence[Operation],
    max_delay: float,
    tolerance: float,
    noise: Noise,
    in_flight: InFlight | None,
    pacing: Pacing | None,
    start: float,
    blind: Blind = (),
) -> list[str]:
    """Fail the retries that waited longer than ``max_delay`` by more than timing noise
    can have added; what lies above it by no more than that is insufficient evidence.
    A gap that overlaps a ``blind`` span is not judged (:func:`check_backoff`).

    The client's wait begins at the answer it got, so the cap is judged on the time from
    that answer: how long the service (slowed by a busy machine) took is not the client's
    wait.  A wait is the client's choice plus the noise of :data:`.timing.HOPS` wake-ups,
    each taken as no longer than the longest the probe measured over the same span
    (:meth:`.timing.Noise.most`: a stall of the process reaches the probe too, which sleeps
    a few ms at a time throughout).  Past the cap by ``tolerance`` or less is not judged.
    ``tests/test_timing_verdicts.py`` checks the false-alarm rate on capped herds whose
    simulated delays, unlike a stall, strike each client apart.

    Two records say more than the wire.  On virtual time, the virtual time a retry may
    have spent queued behind other attempts (:meth:`.operations.InFlight.queued`) is
    allowed too.  On real time, where the client (thread or task) that sent a retry is
    known (:mod:`~..observe.pacing`), a wait past the cap by more than noise whose client
    asked no more than the cap (and ``tolerance``) in it, or no sleep at all, was spent
    otherwise (queued behind others, at its own work, or in a wait not noted):
    insufficient evidence, not a breach.  What a client asked never fails it by itself: a
    queue slept through from the same place as its backoff reads as asked too (one slept
    from another place does not, :meth:`.Pacing.asked`).
    """
    waits = []
    for i, op in enumerate(ops):
        pairs = itertools.pairwise(op.attempts)
        for j, ((previous, following), w, span) in enumerate(
            zip(pairs, op.waits, op.wait_spans, strict=True)
        ):
            if overlaps(blind, *span):
                continue
            behind = 0.0 if in_flight is None else in_flight.queued(previous, following)
            asked = None if pacing is None else asked_in(pacing, previous, following)
            waits.append((i, j + 1, w, noise.most(span), behind, asked))
    above = [entry for entry in waits if entry[2] > max_delay + tolerance]
    if not above:
        return []
    over = {
        (i, j)
        for i, j, w, most, behind, asked in above
        if w - max_delay > most + tolerance + behind
        and (asked is None or asked > max_delay + tolerance)
    }
    # The allowance named is that of the longest wait judged (over the cap, if any is).
    _, _, longest, most, _, _ = max(
        (entry for entry in above if (entry[0], entry[1]) in over or not over),
        key=lambda entry: entry[2],
    )
    beyond_noise = [entry for entry in above if entry[2] - max_delay > entry[3] + tolerance]
    awake = [entry for entry in beyond_noise if entry[5] is not None]
    queued = [entry for entry in beyond_noise if entry[5] is None]
    cap = f"the cap of {max_delay * 1000:.0f} ms"
    if awake and not over:
        slept = max(entry[5] or 0.0 for entry in awake)
        told = (
            f"slept no longer than {slept * 1000:.0f} ms in their waits{places_note(ops, pacing)}"
            if slept > 0
            else NOTHING_ASKED
        )
        return [
            f"{len(awake)} of the retries waited longer than {cap} by more than timing noise "
            f"can add, but the clients that sent them {told}: the rest of each wait was no "
            "sleep they asked (queued behind others for a lock, a connection or a pool slot, "
            "their own work, a wait the plugin does not see, such as Event.wait or a sleep in "
            "C, or a sleep of a caller other than the sender, such as the task that awaited "
            "an anyio worker thread), so whether they chose it is not shown; judge the cap "
            "with clients that share nothing and back off with time.sleep or asyncio.sleep, "
            "or on virtual time"
        ]
    if queued and not over:
        return [
            f"{len(queued)} of the retries waited longer than {cap} by more than timing "
            "noise can add, but each began right after other attempts that were in flight "
            f"for as long as its excess (up to {max(entry[4] for entry in queued) * 1000:.0f} "
            "ms), so it may have queued behind them (a connection, lock or slot they shared) "
            "rather than chosen that wait; judge the cap with clients that share nothing, "
            "or with answers that come at once"
        ]
    allowance = f"{noise.most_said(most)} plus the {tolerance * 1000:.0f} ms tolerance"
    if over:
        allowed = {key: f"<= {max_delay * 1000:.0f} ms" for key in over}
        beyond = f", by more than {allowance}" if most >= 0.0005 else ""
        raise fail(
            f"a retry waited {longest * 1000:.0f} ms after the answer before it, above {cap}"
            f"{beyond}.",
            operation_rows(ops, allowed, over),
            start,
        )
    return [
        f"a retry waited {longest * 1000:.0f} ms after the answer before it, "
        f"{(longest - max_delay) * 1000:.0f} ms above {cap}, within {allowance}, so whether "
        "the client keeps its cap is not shown"
    ]
