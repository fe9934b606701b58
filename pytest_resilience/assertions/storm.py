"""The timing verdict on a fleet: operations that failed together do not retry in
lockstep (:func:`check_no_retry_storm`).

The waits, and the noise each can carry, are read by :mod:`.waits`; the statistics are
:mod:`.timing`'s.  Times are monotonic seconds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import validate
from ..http.records import Exchange
from .operations import FailureSet, Grouping, Operation, answered_at, operations
from .report import (
    ANSWERING_FAULTS,
    Blind,
    blind_spans,
    fail,
    insufficient,
    operation_rows,
    origin_of,
)
from .retries import Failures
from .timing import (
    ALPHA,
    MIN_JITTER,
    NOISE_CEILING,
    Noise,
    judge_no_jitter,
)
from .waits import (
    HERD,
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


def _herd(ops: Sequence[Operation], noise: Noise) -> list[Operation]:
    """The most operations that failed together: their first failures within their median
    first wait of each other (the first wait the client chose: typically above the noise,
    not urllib3's immediate first retry), so that each failed before the others waited."""
    ordered = sorted(ops, key=lambda op: answered_at(op.attempts[0]))
    columns = wait_columns(ops, None)
    ceiling = noise.quantile(NOISE_CEILING, steady=True)
    chosen = [c for c in columns if c and statistics.median(c) > ceiling] or columns
    span = max(statistics.median(chosen[0]), 0.0)
    best: list[Operation] = []
    lo = 0
    for hi in range(len(ordered)):
        while (
            lo < hi
            and answered_at(ordered[hi].attempts[0]) - answered_at(ordered[lo].attempts[0]) > span
        ):
            lo += 1
        if hi + 1 - lo > len(best):
            best = ordered[lo : hi + 1]
    return best


def check_no_retry_storm(
    exchanges: Sequence[Exchange],
    *,
    min_herd: int = HERD,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    noise: Noise | Sequence[float] = (),
    jumps: Sequence[tuple[float, float]] = (),
    blind: Blind = (),
    calls: Sequence[Call] = (),
    pacing: Pacing | None = None,
    origin: float | None = None,
) -> None:
    """Operations that failed together do not retry in lockstep.

    A storm is ``min_herd`` or more operations whose first failures came together (within
    their median first wait: each failed before the others retried) and whose waits, retry
    by retry, are alike beyond what jitter of at least ``x0.8-1.0`` would leave them (the
    "no jitter" test of :mod:`.timing`, false-alarm rate under 1 in 1,000).  The fleet is
    clear when the waits of the operations that retried lie further apart than the
    measured ``noise`` explains (with the way out of the driven ``calls``, as
    :func:`.backoff.check_backoff` reads it).  ``blind`` lists spans (start, end, why) in
    which attempts could leave no HTTP record (connections refused or swallowed): a fleet
    not caught outright is then insufficient evidence.
    """
    __tracebackhide__ = True
    validate.integer(min_herd, "min_herd", minimum=2)
    ops = operations(exchanges, group, FailureSet(failure_statuses))
    retried = [op for op in ops if len(op.attempts) > 1]
    start = origin_of(exchanges, origin)
    measured = measured_noise(noise, calls, ops, jumps)
    in_flight = in_flight_of(ops, measured)
    pacing = on_real_time(pacing, measured)
    herd = _herd(retried, measured) if retried else []
    herd_columns = wait_columns(herd, None)
    herd_asked = asked_sleeps(herd, None, pacing)
    judgement = (
        judge_no_jitter(
            herd_columns, measured, bounds=noise_bounds(herd, None, measured, in_flight, herd_asked)
        )
        if len(herd) >= min_herd
        else None
    )
    # Jitter shown among every operation that retried clears the fleet, herd or not.
    retried_columns = wait_columns(retried, None)
    converged = convergence(retried, None, retried_columns, measured)
    fleet = veto_clear(
        judge_no_jitter(
            retried_columns,
            measured,
            bounds=noise_bounds(
                retried, None, measured, in_flight, asked_sleeps(retried, None, pacing)
            ),
        ),
        converged,
    )
    if judgement is not None and judgement.outcome == "claim":
        firsts = [answered_at(op.attempts[0]) for op in herd]
        retries = max(len(op.attempts) for op in herd) - 1
        flagged = {(ops.index(op), j) for op in herd for j in range(1, len(op.attempts))}
        raise fail(
            f"retry storm: {len(herd)} operations failed together (within "
            f"{(max(firsts) - min(firsts)) * 1000:.1f} ms) and retried in lockstep over "
            f"{retries} retries: {spread_of(herd_columns, measured)}, where jitter of at least "
            f"x{1 - MIN_JITTER:g}-1.0 would leave them this close with p = "
            f"{judgement.claim_p:.2g} (false-alarm rate {ALPHA:g}); without jitter, clients "
            "that failed together retry together.",
            operation_rows(ops, flagged=flagged),
            start,
        )
    if fleet.outcome == "clear" and not blind:
        return
    reasons = []
    if blind:
        reasons.append(
            f"attempts could leave no record ({blind_spans(blind, start)}): a client "
            f"reconnecting in lockstep then is invisible to HTTP records; {ANSWERING_FAULTS}"
        )
    if fleet.outcome != "clear":  # when it is, only the blind spans stand in the way
        reasons.append(
            f"a storm needs at least {min_herd} operations that failed together and retried; "
            f"the largest such herd here has {len(herd)} ({len(retried)} operations retried)"
            if judgement is None
            else undecided_jitter(
                judgement,
                herd_columns,
                measured,
                herd_asked,
                converged,
                places_note(herd, pacing),
            )
        )
    raise insufficient("; ".join(reasons) + ".", operation_rows(ops), start)
