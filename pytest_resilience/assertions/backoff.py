"""Timing verdicts on retries: the cap, growth and jitter of the waits between attempts
(:func:`check_backoff`), and whether operations that failed together retry in lockstep
(:func:`check_no_retry_storm`).

The statistics are :mod:`.timing`'s; this module reads the waits from the operations and
says which noise each can carry: the probe's model, on virtual time the real time it
took (and time it may have queued), on real time what its sending client asked to sleep
(:mod:`~..observe.pacing`).  Times are monotonic seconds.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import validate
from ..http.records import Exchange
from .operations import FailureSet, Grouping, InFlight, Operation, answered_at, operations, outbound
from .report import fail, insufficient, operation_rows, origin_of, retry_cells
from .retries import Failures
from .timing import (
    ALPHA,
    HOPS,
    MIN_JITTER,
    NOISE_CEILING,
    SHOWN_JITTER,
    Judgement,
    Noise,
    RealTime,
    beyond_noise,
    evident,
    evident_at,
    judge_growth,
    judge_no_jitter,
)

if TYPE_CHECKING:
    from ..observe.pacing import Pacing
    from ..observe.records import Call


def _columns(
    ops: Sequence[Operation],
    cap: float | None,
    of: Callable[[Exchange, Exchange], float] | None = None,
) -> list[list[float]]:
    """The waits before each retry, by retry index (one per operation).  A retry at which
    some wait reached ``cap`` is left empty: the cap flattens its draws, whether it applies
    before or after the jitter, so neither growth nor jitter can be read there.  With
    ``of``, in each wait's place what ``of`` says of the attempts before and after it
    instead (:func:`_bounds`)."""
    columns: list[list[float]] = []
    capped: set[int] = set()
    for op in ops:
        pairs = itertools.pairwise(op.attempts)
        for k, ((previous, following), wait) in enumerate(zip(pairs, op.waits, strict=True)):
            while len(columns) <= k:
                columns.append([])
            columns[k].append(wait if of is None else of(previous, following))
            if cap is not None and wait >= cap:
                capped.add(k)
    return [[] if k in capped else c for k, c in enumerate(columns)]


def _in_flight(ops: Sequence[Operation], noise: Noise) -> InFlight | None:
    """On virtual time, the attempts of ``ops`` in flight, to tell a retry that may have
    queued behind others (hand-overs told by the jumps: :func:`_handed`); None on real
    time, where nothing tells a hand-over from other traffic ending as close."""
    return None if noise.real is None else InFlight(ops, _handed(noise.real))


def _bounds(
    ops: Sequence[Operation],
    cap: float | None,
    noise: Noise,
    in_flight: InFlight | None,
    asked: Sequence[Sequence[float] | None] | None = None,
) -> list[list[float] | None] | None:
    """In the places of :func:`_columns`' waits, the most noise each can carry, where it
    is known; None where it is not (the probe's model reads those waits).

    - On virtual time: the real time it took (:attr:`.timing.Noise.real`) and the virtual
      time it may have spent queued behind other attempts
      (:meth:`.operations.InFlight.queued`: its retry began right after they were done,
      with no jump between, so it may have waited for them, jumps and all).
    - On real time, at a retry index whose waits all have their sending client known
      (``asked``, from :func:`_asked`): the wait less what that client asked to sleep in
      it (none noted: the whole wait).  The sleep lies within the wait, so for a client that chose no
      longer than it asked to sleep the rest is noise: waking late, its own work, or time
      queued behind others, none of it jitter.
    """
    real = noise.real
    if real is not None and in_flight is not None:

        def bound(previous: Exchange, following: Exchange) -> float:
            took = max(real(answered_at(previous), following.started_at), 0.0)
            return took + in_flight.queued(previous, following)

        return list(_columns(ops, cap, bound))
    if asked is None:
        return None
    return [
        None if a is None else [w - s for w, s in zip(c, a, strict=True)]
        for c, a in zip(_columns(ops, cap), asked, strict=True)
    ]


def _asked(
    ops: Sequence[Operation], cap: float | None, pacing: Pacing | None
) -> list[list[float] | None] | None:
    """On real time, in the places of :func:`_columns`' waits: the seconds the client (thread or task) that
    sent each retry asked to sleep after the answer before it (:meth:`.Pacing.asked`),
    at the retry indices where every wait has its sender known; None at the others, and
    None in all when none has.  A sender known to have asked no sleep (0) waited on
    something the plugin does not note (``Event.wait``, a sleep in C, another loop's
    timers, a queue): what spread those waits is not shown to be jitter either."""
    if pacing is None:
        return None

    def asked(previous: Exchange, following: Exchange) -> float:
        seconds = _asked_in(pacing, previous, following)
        return math.nan if seconds is None else seconds

    columns: list[list[float] | None] = [
        c if c and not any(map(math.isnan, c)) else None for c in _columns(ops, cap, asked)
    ]
    return columns if any(c is not None for c in columns) else None


_NOTHING_ASKED = "asked no sleep the plugin notes (time.sleep, asyncio.sleep) in their waits"
"""What the messages say of retries whose senders are known and asked nothing noted."""


def _on_real_time(pacing: Pacing | None, noise: Noise) -> Pacing | None:
    """``pacing``, unless the waits are on virtual time (a block of it in a real-time test:
    its sleeps were virtual, so none was noted, and each wait's real time bounds it)."""
    return None if noise.real is not None else pacing


def _asked_in(pacing: Pacing, previous: Exchange, following: Exchange) -> float | None:
    """What the client that sent ``following`` asked to sleep after ``previous``'s answer
    (:meth:`.Pacing.asked`)."""
    return pacing.asked(
        following.connection,
        following.started_at,
        answered_at(previous),
        (previous.connection, previous.started_at),
    )


def _handed(real: Callable[[float, float], float]) -> Callable[[float, float], bool]:
    """On virtual time, whether only a hand-over can lie between two instants: no jump
    does (a client released by another's answer runs at once, and while a participant
    runs the clock does not jump; a wait between the two would have been jumped over)."""

    def handed(start: float, end: float) -> bool:
        return real(start, end) >= (end - start) * (1 - 1e-9)

    return handed


def _measured(
    noise: Noise | Sequence[float],
    calls: Sequence[Call],
    ops: Sequence[Operation],
    jumps: Sequence[tuple[float, float]],
) -> Noise:
    """``noise`` as a :class:`Noise`: the probe's delays, with the bound virtual time's
    ``jumps`` give (:func:`_real_bound`) and the way out of the driven
    ``calls`` that pair with ``ops`` (:func:`.operations.outbound`)."""
    if isinstance(noise, Noise):
        return noise
    if not jumps:
        return Noise(noise, outbound=outbound(calls, ops))
    real = RealTime(jumps)
    return Noise(noise, outbound=outbound(calls, ops), bound=_real_bound(ops, real), real=real)


def _real_bound(ops: Sequence[Operation], real: Callable[[float, float], float]) -> float | None:
    """On virtual time, the most real time a wait of ``ops`` took (``real``: the real
    seconds between two instants of the test's clock): a wait's noise (waking, the
    client's work, transit) is real time, while the jumps within it cover only what the
    client asked to wait."""
    spans = [span for op in ops for span in op.wait_spans]
    return max((real(start, end) for start, end in spans), default=None)


def _spread(columns: Sequence[Sequence[float]], noise: Noise) -> str:
    shown = evident(columns, noise)
    widest = max(((max(c) - min(c)) / max(c) for c in shown), default=0.0)
    return (
        f"at {len(shown)} retries the waits of {max((len(c) for c in shown), default=0)} "
        f"operations lie within {widest * 100:.1f}% of each other"
    )


HERD = 3
"""The fewest retries arriving together that make a herd (the storm verdict's default
``min_herd``)."""


def _converged(
    ops: Sequence[Operation], cap: float | None, columns: Sequence[Sequence[float]], noise: Noise
) -> str | None:
    """Why the waits' spread shows no jitter, when at every retry shown (of :data:`HERD`
    operations or more) the retries arrived closer together than the answers before them
    came, and within the x0.95-1.0 not taken as jitter and the noise: clients retrying on
    one tick of a clock (each sleeping to the next whole second) or released together,
    whose waits differ by just what brings them together.  None otherwise.  A veto only:
    a jittered fleet that failed together arrives no closer than its answers came, and
    one whose arrivals met at every retry by chance is left undecided, never accused."""
    shown = [k for k in evident_at(columns, noise) if len(columns[k]) >= HERD]
    if not shown:
        return None
    starts = _columns(ops, cap, lambda previous, following: following.started_at)
    answers = _columns(ops, cap, lambda previous, following: answered_at(previous))
    slack = SHOWN_JITTER / (1 - SHOWN_JITTER)
    met = []
    for k in shown:
        came = max(starts[k]) - min(starts[k])
        answered = max(answers[k]) - min(answers[k])
        if came >= answered or came > slack * max(columns[k]) + noise.most():
            return None
        met.append((came, answered, k))
    came, answered, k = max(met)
    return (
        f"the waits lie apart, but at every retry the retries arrived closer together than "
        f"the answers before them (at retry {k + 1}: within {came * 1000:.1f} ms, the "
        f"answers {answered * 1000:.0f} ms apart): clients retrying on one tick of a clock, "
        "or released together, arrive as a herd whatever their waits, and no jitter spread "
        "them"
    )


def _vetoed(judgement: Judgement, converged: str | None) -> Judgement:
    """``judgement``, its clear side taken back if the retries converged (:func:`_converged`)."""
    if converged is None or judgement.outcome != "clear":
        return judgement
    return Judgement("undecided", judgement.claim_p, 1.0, judgement.level)


def _undecided_jitter(
    judgement: Judgement,
    columns: Sequence[Sequence[float]],
    noise: Noise,
    asked: Sequence[Sequence[float] | None] | None = None,
    converged: str | None = None,
) -> str:
    if not any(len(c) >= 2 for c in columns):
        return (
            "jitter needs waits at the same retry in at least 2 operations (concurrent, or one "
            "after another): one operation's waits cannot show randomness; run it several times"
        )
    if not evident(columns, noise):
        return (
            "no retry was made after a wait longer than timing noise (at once, or under the "
            f"cap), so no jitter can show ({noise.describe()}); use longer waits"
        )
    if converged is not None:
        return converged
    shown = evident_at(columns, noise)
    paced = [(k, a) for k in shown if asked is not None and (a := asked[k]) is not None]
    vetoed = not any(
        beyond_noise(columns[k], SHOWN_JITTER, [w - s for w, s in zip(columns[k], a, strict=True)])
        for k, a in paced
    )
    if paced and len(paced) == len(shown) and vetoed:
        least = min(min(a) for _, a in paced)
        most = max(max(a) for _, a in paced)
        if most == 0:
            return (
                f"{_spread(columns, noise)}, but the clients that sent those retries "
                f"{_NOTHING_ASKED}: they waited on something else (Event.wait, a sleep in C, "
                "a lock, a queue), or a caller other than the sender slept (a worker thread "
                "of anyio, trio or a multiprocessing ThreadPool), and on real time what "
                "spread them (that wait, their own work, time queued behind others) is not "
                f"shown to be jitter ({noise.describe()}); judge such clients on virtual time "
                "(@pytest.mark.virtual_time), where each wait is held to the real time it took"
            )
        return (
            f"{_spread(columns, noise)}, but the clients that sent those retries slept "
            f"from {least * 1000:.0f} to {most * 1000:.0f} ms in their waits, none of them "
            "longer than the shortest wait at its retry by more than jitter under "
            f"x{1 - SHOWN_JITTER:g}-1.0 allows: the rest of each wait was not a sleep they "
            "asked (queued behind one another for a lock, a connection or a pool slot, "
            "their own work, or a wait the plugin does not see), which shows no jitter "
            f"({noise.describe()}); jitter shows when the clients ask for sleeps further "
            "apart"
        )
    return (
        f"{_spread(columns, noise)}: too alike to rule out timing noise and jitter under "
        f"x{1 - SHOWN_JITTER:g}-1.0 (p = {judgement.clear_p:.2g}; "
        f"{noise.describe()}) and too apart to rule out jitter (p = {judgement.claim_p:.2g}); "
        "use longer waits or more operations"
    )


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
    """
    __tracebackhide__ = True
    validate.flag(jitter, "jitter")
    validate.number(min_factor, "min_factor")
    if max_delay is not None:
        validate.number(max_delay, "max_delay (seconds)", above=True)
    validate.seconds(tolerance, "tolerance")
    all_ops = operations(exchanges, group, FailureSet(failure_statuses))
    ops = [op for op in all_ops if len(op.attempts) > 1]
    start = origin_of(exchanges, origin)
    if not ops:
        raise insufficient(
            f"no operation retried ({len(exchanges)} attempts in {len(all_ops)} operations), so "
            "there is no wait to judge; inject a longer fault.",
            operation_rows(all_ops),
            start,
        )
    measured = _measured(noise, calls, all_ops, jumps)
    in_flight = _in_flight(all_ops, measured)
    pacing = _on_real_time(pacing, measured)
    missing: list[str] = []
    if max_delay is not None:
        missing += _over_the_cap(ops, max_delay, tolerance, measured, in_flight, pacing, start)
    cap = None if max_delay is None else max_delay - tolerance
    columns = _columns(ops, cap)
    # Jitter and growth at half the false-alarm rate each, so that together they keep it.
    asked = _asked(ops, cap, pacing)
    bounds = _bounds(ops, cap, measured, in_flight, asked)
    converged = _converged(ops, cap, columns, measured)
    lockstep = _vetoed(judge_no_jitter(columns, measured, ALPHA / 2, bounds), converged)
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
                f"retry waits carry no jitter: {_spread(columns, measured)}, where jitter of at least "
                f"x{1 - MIN_JITTER:g}-1.0 would leave them this close with p = "
                f"{lockstep.claim_p:.2g} (false-alarm rate {ALPHA:g}); clients that failed "
                "together retry together.",
                operation_rows(ops, flagged=retry_cells(ops)),
                start,
            )
        if lockstep.outcome == "undecided":
            missing.append(_undecided_jitter(lockstep, columns, measured, asked, converged))
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
) -> list[str]:
    """Fail the retries that waited longer than ``max_delay`` by more than timing noise
    can have added; what lies above it by no more than that is insufficient evidence.

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
    insufficient evidence, not a breach.  What a client asked never fails it by itself: a queue slept
    through (a lock polled with ``time.sleep``) reads as asked too.
    """
    waits = []
    for i, op in enumerate(ops):
        pairs = itertools.pairwise(op.attempts)
        for j, ((previous, following), w, span) in enumerate(
            zip(pairs, op.waits, op.wait_spans, strict=True)
        ):
            behind = 0.0 if in_flight is None else in_flight.queued(previous, following)
            asked = None if pacing is None else _asked_in(pacing, previous, following)
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
            f"slept no longer than {slept * 1000:.0f} ms in their waits"
            if slept > 0
            else _NOTHING_ASKED
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
    how = (
        f"{HOPS} wake-ups of up to {most / HOPS * 1000:.1f} ms, the latest measured"
        if noise.real is None
        else f"no more than the real time the wait took, nor {HOPS} wake-ups as late as the "
        "latest measured"
    )
    allowance = (
        f"the {most * 1000:.0f} ms that timing noise can add ({how}) plus the "
        f"{tolerance * 1000:.0f} ms tolerance"
    )
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


def _herd(ops: Sequence[Operation], noise: Noise) -> list[Operation]:
    """The most operations that failed together: their first failures within their median
    first wait of each other (the first wait the client chose: typically above the noise,
    not urllib3's immediate first retry), so that each failed before the others waited."""
    ordered = sorted(ops, key=lambda op: answered_at(op.attempts[0]))
    columns = _columns(ops, None)
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
    min_herd: int = 3,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    noise: Noise | Sequence[float] = (),
    jumps: Sequence[tuple[float, float]] = (),
    blind: Sequence[tuple[float, float, str]] = (),
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
    :func:`check_backoff` reads it).  ``blind`` lists spans (start, end, why) in which attempts
    could leave no HTTP record (connections refused or swallowed): a fleet not caught
    outright is then insufficient evidence.
    """
    __tracebackhide__ = True
    validate.integer(min_herd, "min_herd", minimum=2)
    ops = operations(exchanges, group, FailureSet(failure_statuses))
    retried = [op for op in ops if len(op.attempts) > 1]
    start = origin_of(exchanges, origin)
    measured = _measured(noise, calls, ops, jumps)
    in_flight = _in_flight(ops, measured)
    pacing = _on_real_time(pacing, measured)
    herd = _herd(retried, measured) if retried else []
    herd_columns = _columns(herd, None)
    herd_asked = _asked(herd, None, pacing)
    judgement = (
        judge_no_jitter(
            herd_columns, measured, bounds=_bounds(herd, None, measured, in_flight, herd_asked)
        )
        if len(herd) >= min_herd
        else None
    )
    # Jitter shown among every operation that retried clears the fleet, herd or not.
    retried_columns = _columns(retried, None)
    converged = _converged(retried, None, retried_columns, measured)
    fleet = _vetoed(
        judge_no_jitter(
            retried_columns,
            measured,
            bounds=_bounds(retried, None, measured, in_flight, _asked(retried, None, pacing)),
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
            f"{retries} retries: {_spread(herd_columns, measured)}, where jitter of at least "
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
        spans = ", ".join(
            f"{why} from t+{(a - start) * 1000:.0f} to t+{(b - start) * 1000:.0f} ms"
            for a, b, why in blind
        )
        reasons.append(
            f"attempts could leave no record ({spans}): a client reconnecting in lockstep then "
            "is invisible to HTTP records; judge the fleet on a fault that answers (fail, "
            "rate_limit, cut) or count connections"
        )
    if fleet.outcome != "clear":  # when it is, only the blind spans stand in the way
        reasons.append(
            f"a storm needs at least {min_herd} operations that failed together and retried; "
            f"the largest such herd here has {len(herd)} ({len(retried)} operations retried)"
            if judgement is None
            else _undecided_jitter(judgement, herd_columns, measured, herd_asked, converged)
        )
    raise insufficient("; ".join(reasons) + ".", operation_rows(ops), start)
