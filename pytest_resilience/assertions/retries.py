"""Verdicts on retries: how many, how spaced, how keyed, and whether they storm.

Each function takes the records and raises :class:`ResilienceAssertionError`
with the evidence when the rule is broken; it needs no sockets and no pytest.
Times are monotonic seconds; ``origin`` is the t=0 of the tables (the start of
the test, or the first attempt).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

from .. import validate
from ..errors import ConfigurationError
from ..http.records import Exchange
from .operations import Grouping, Operation, operations, status_text
from .report import Row, fail

NOISE = 0.005
"""Seconds of timing noise tolerated between gaps that should be equal (or not)."""
HERD_SHARE = 0.1
"""Share of the wait since the first attempt that operations of a herd may differ by and
still be waiting alike (timing noise adds up from retry to retry)."""
JITTER_FLOOR = 0.02
"""Seconds: pairs of gaps both shorter than this say nothing about jitter."""
JITTER_NOISE = 0.003
"""Seconds of noise on each of two gaps that jitter must exceed to set them apart."""


def _origin(exchanges: Sequence[Exchange], origin: float | None) -> float:
    if origin is not None:
        return origin
    return min((e.started_at for e in exchanges), default=0.0)


def _rows(
    ops: Sequence[Operation],
    allowed: dict[tuple[int, int], str] | None = None,
    flagged: set[tuple[int, int]] | None = None,
) -> list[Row]:
    rows = []
    for i, op in enumerate(ops):
        previous = None
        for j, attempt in enumerate(op.attempts):
            gap: float | None = (
                None if previous is None else attempt.started_at - previous.started_at
            )
            rows.append(
                Row(
                    attempt.started_at,
                    op.label,
                    j + 1,
                    status_text(attempt),
                    gap,
                    (allowed or {}).get((i, j), ""),
                    (i, j) in (flagged or set()),
                )
            )
            previous = attempt
    return sorted(rows, key=lambda r: r.at)


def check_attempts(
    exchanges: Sequence[Exchange],
    max: int | None = None,
    min: int | None = None,
    *,
    group: Grouping | None = None,
    origin: float | None = None,
) -> None:
    """Every operation made at most ``max`` and at least ``min`` attempts."""
    __tracebackhide__ = True
    validate.bound(max, "max")
    validate.bound(min, "min")
    if max is None and min is None:
        raise ConfigurationError("assert_attempts needs max= or min= (or both).")
    ops = operations(exchanges, group)
    if min is not None and not ops:
        raise fail(
            f"expected operations with at least {min} attempts, but no request arrived.", [], 0.0
        )
    broken = [
        i
        for i, op in enumerate(ops)
        if (max is not None and len(op.attempts) > max)
        or (min is not None and len(op.attempts) < min)
    ]
    if broken:
        bound = " and ".join(
            part
            for part in (
                f"at most {max}" if max is not None else "",
                f"at least {min}" if min is not None else "",
            )
            if part
        )
        worst = ops[broken[0]]
        flagged = {(i, j) for i in broken for j in range(len(ops[i].attempts))}
        raise fail(
            f"operation {worst.label} made {len(worst.attempts)} attempts; each operation may make "
            f"{bound} ({len(broken)} of {len(ops)} operations broke it).",
            _rows(ops, flagged=flagged),
            _origin(exchanges, origin),
        )


def check_retry_after_honoured(
    exchanges: Sequence[Exchange],
    tolerance: float = 0.05,
    *,
    group: Grouping | None = None,
    origin: float | None = None,
) -> None:
    """No attempt came before the moment the previous answer's Retry-After allowed."""
    __tracebackhide__ = True
    validate.seconds(tolerance, "tolerance")
    ops = operations(exchanges, group)
    allowed: dict[tuple[int, int], str] = {}
    flagged: set[tuple[int, int]] = set()
    first_breach: tuple[Operation, float, Exchange] | None = None
    for i, op in enumerate(ops):
        for j in range(1, len(op.attempts)):
            before, attempt = op.attempts[j - 1], op.attempts[j]
            if before.retry_after_delay is None or before.delivered is False:
                continue  # no Retry-After reached the client
            answered = before.ended_at if before.ended_at is not None else before.started_at
            earliest = answered + before.retry_after_delay
            allowed[(i, j)] = f">= {(earliest - answered) * 1000:.0f} ms after the {before.status}"
            if attempt.started_at < earliest - tolerance:
                flagged.add((i, j))
                if first_breach is None:
                    first_breach = (op, attempt.started_at - answered, before)
    if first_breach is not None:
        op, waited, asking = first_breach
        raise fail(
            f"operation {op.label} retried {waited * 1000:.0f} ms after an answer whose "
            f"{asking.wait_header} asked for {asking.retry_after_delay:g} s ({len(flagged)} early "
            f"attempts; tolerance {tolerance * 1000:.0f} ms).",
            _rows(ops, allowed, flagged),
            _origin(exchanges, origin),
        )


def check_stable_idempotency_key(
    exchanges: Sequence[Exchange], window: float = 60.0, *, origin: float | None = None
) -> None:
    """Retries of one logical operation (same business identity, after a failure) reuse its key."""
    __tracebackhide__ = True
    validate.number(window, "window (seconds)", above=True)
    ops = operations(exchanges, window=window)
    broken = [op for op in ops if len(set(op.keys)) > 1]
    if broken:
        op = broken[0]
        keys = ", ".join(repr(k) for k in dict.fromkeys(op.keys))
        allowed = {
            (i, j): f"key {op_.attempts[0].idempotency_key}"
            for i, op_ in enumerate(broken)
            for j in range(len(op_.attempts))
        }
        flagged = {
            (i, j)
            for i, op_ in enumerate(broken)
            for j, attempt in enumerate(op_.attempts)
            if attempt.idempotency_key != op_.attempts[0].idempotency_key
        }
        raise fail(
            f"the {len(op.attempts)} attempts of {op.label} carried {len(set(op.keys))} different "
            f"Idempotency-Keys ({keys}); a retry must reuse its operation's key, or a lost answer "
            "turns into a second side effect.",
            _rows(broken, allowed, flagged),
            _origin(exchanges, origin),
        )


def check_backoff(
    exchanges: Sequence[Exchange],
    jitter: bool = True,
    min_factor: float = 1.5,
    max_delay: float | None = None,
    *,
    tolerance: float = 0.02,
    group: Grouping | None = None,
    origin: float | None = None,
) -> None:
    """Gaps between retries grow, carry jitter, and stay under the cap.

    - cap: no retry more than ``max_delay`` (+ ``tolerance``) after the answer before it
      (after its start when no answer reached the client);
    - growth: the longest gap after the first retry (below the cap) is at least
      ``min_factor`` times the longest first gap; a fixed interval fails this;
    - jitter: the gaps are not one exact series: of the pairs of operations'
      gaps at the same retry index (one of them 20 ms or longer), more than 40%
      differ by over 6 ms and 5%
      (a scheduling hiccup sets one gap apart, jitter most), or, with one
      operation only, the ratios of its gaps of 50 ms or more vary by over 25%.
      Gaps at the cap are left out (a capped series is flat without jitter).

    It needs evidence: two retries in one operation, or retries in several.
    """
    __tracebackhide__ = True
    validate.flag(jitter, "jitter")
    validate.number(min_factor, "min_factor")
    if max_delay is not None:
        validate.number(max_delay, "max_delay (seconds)", above=True)
    validate.seconds(tolerance, "tolerance")
    ops = [op for op in operations(exchanges, group) if len(op.attempts) > 1]
    start = _origin(exchanges, origin)
    if not ops or (len(ops) == 1 and len(ops[0].attempts) < 3):
        raise fail(
            "cannot judge backoff: it needs an operation with at least 3 attempts, or several "
            f"operations that retried; saw {sum(len(o.attempts) for o in ops) or len(exchanges)} "
            "attempts. Inject a longer fault.",
            _rows(operations(exchanges, group)),
            start,
        )
    if max_delay is not None:
        # The client's wait begins at the answer it got, so the cap is judged on the time
        # from that answer: how long the service (slowed by a busy machine) took is not
        # the client's wait.
        over = {
            (i, j + 1)
            for i, op in enumerate(ops)
            for j, wait in enumerate(op.waits)
            if wait > max_delay + tolerance
        }
        if over:
            longest = max(wait for op in ops for wait in op.waits)
            allowed = {key: f"<= {max_delay * 1000:.0f} ms" for key in over}
            raise fail(
                f"a retry waited {longest * 1000:.0f} ms after the answer before it, above the "
                f"cap of {max_delay * 1000:.0f} ms.",
                _rows(ops, allowed, over),
                start,
            )

    by_index: dict[int, list[float]] = {}
    for op in ops:
        for k, gap in enumerate(op.gaps):
            if max_delay is None or gap < max_delay - tolerance:
                by_index.setdefault(k, []).append(gap)
    indices = sorted(by_index)
    capped = max_delay is not None and any(
        gap >= max_delay - tolerance for op in ops for gap in op.gaps[1:]
    )
    if len(indices) < 2 and min_factor > 1 and not capped:
        raise fail(
            "cannot judge growth: no operation retried twice below the cap, so there is no "
            "second gap to compare with the first. Inject a longer fault.",
            _rows(ops),
            start,
        )
    if len(indices) >= 2:
        # The longest of every later gap against the longest first gap: a randomised
        # backoff draws short gaps at any retry, but its range, and so its longest draw,
        # grows; a fixed interval's does not.
        first = max(by_index[indices[0]])
        later = max(gap for k in indices[1:] for gap in by_index[k])
        if later < first * min_factor:
            allowed = {
                (i, j + 1): f">= {min_factor:g} x first gap"
                for i, op in enumerate(ops)
                for j in range(1, len(op.gaps))
            }
            raise fail(
                f"retry gaps do not grow: the longest gap after the first retry is "
                f"{later * 1000:.0f} ms, less than {min_factor:g} x the longest first gap "
                f"({first * 1000:.0f} ms); a fixed interval keeps hammering a struggling service.",
                _rows(
                    ops,
                    allowed,
                    {(i, j + 1) for i, op in enumerate(ops) for j in range(len(op.gaps))},
                ),
                start,
            )
    cap = None if max_delay is None else max_delay - tolerance
    if jitter and _has_jitter(ops, cap) is None:
        raise fail(
            "cannot judge jitter: it needs two operations that retried, or one operation with "
            "3 retries (3 gaps) of 50 ms or more below the cap. Inject a longer fault.",
            _rows(ops),
            start,
        )
    if jitter and not _has_jitter(ops, cap):
        raise fail(
            "retry gaps carry no jitter: every operation waits the same, exact series of delays, "
            "so clients that failed together retry together.",
            _rows(ops, flagged=_retries(ops)),
            start,
        )


def _retries(ops: Sequence[Operation]) -> set[tuple[int, int]]:
    return {(i, j) for i, op in enumerate(ops) for j in range(1, len(op.attempts))}


def _has_jitter(ops: Sequence[Operation], cap: float | None) -> bool | None:
    """Gaps differ between operations at one retry index, or (one operation only) their
    ratios vary; None when there is no evidence either way.

    Gaps at the cap are left out: a capped series is flat without any jitter.
    """
    by_index: dict[int, list[tuple[int, float]]] = {}
    varied: bool | None = None
    for n, op in enumerate(ops):
        gaps = [g for g in op.gaps if cap is None or g < cap]
        for k, gap in enumerate(gaps):
            by_index.setdefault(k, []).append((n, gap))
        # Ratios of short gaps are mostly timing noise: judge them on gaps of 50 ms or more,
        # and call them different only beyond 25%.
        ratios = [b / a for a, b in itertools.pairwise(gaps) if a >= 0.05]
        if len(ratios) >= 2:
            varied = bool(varied) or any(abs(r - ratios[0]) > 0.25 * ratios[0] for r in ratios)
    # Pairs of gaps under 20 ms are left out: jitter that short cannot be told from noise
    # (and would drag the share of pairs apart down for a fast backoff that does jitter).
    pairs = [
        (a, b)
        for gaps in by_index.values()
        for (n, a), (m, b) in itertools.combinations(gaps, 2)
        if n != m and max(a, b) >= JITTER_FLOOR
    ]
    if pairs:
        # Several operations at one retry index: whether they waited alike decides.  A
        # scheduling hiccup now and then sets one gap apart from its peers; jitter sets
        # most pairs apart.
        apart = sum(1 for a, b in pairs if abs(a - b) > max(2 * JITTER_NOISE, 0.05 * max(a, b)))
        return apart > 0.4 * len(pairs)
    return varied


def check_no_retry_storm(
    exchanges: Sequence[Exchange],
    window: float = 0.01,
    max_in_window: int | None = None,
    *,
    group: Grouping | None = None,
    origin: float | None = None,
) -> None:
    """Concurrent operations do not retry in lockstep.

    A storm is ``max_in_window`` or more retries (attempts after the first) of
    different operations starting within ``window`` seconds of each other, or of
    operations that first failed together and have waited alike since (to within
    ``window`` or a tenth of the wait so far), at two retries (at the only one, if each retried once); by
    default, 80% of the operations that retried, and at least 3.
    """
    __tracebackhide__ = True
    validate.number(window, "window (seconds)", above=True)
    validate.count(max_in_window, "max_in_window")
    ops = operations(exchanges, group)
    retried = [i for i, op in enumerate(ops) if len(op.attempts) > 1]
    limit = max_in_window if max_in_window is not None else max(3, math.ceil(0.8 * len(retried)))
    depth = max((len(ops[i].attempts) - 1 for i in retried), default=0)
    # Lockstep, not chance: jittered clients meet in one window now and then, clients
    # without jitter meet at every retry; so the same retry (the j-th) of `limit` operations
    # within `window`, at two retries (at the only one, if each retried once).  On a busy
    # machine a herd's first attempts spread over tens of ms, and without jitter its
    # retries keep that shape: operations that failed together (within a backoff gap) and
    # waited alike (to within `window`) since are lockstep too.
    by_start = sorted(retried, key=lambda i: ops[i].attempts[0].started_at)
    bursts: list[list[tuple[float, int, int]]] = []
    for j in range(1, depth + 1):
        retries = sorted(
            (ops[i].attempts[j].started_at, i, j) for i in retried if len(ops[i].attempts) > j
        )
        worst: list[tuple[float, int, int]] = []
        lo = 0
        for hi in range(len(retries)):
            while retries[hi][0] - retries[lo][0] > window:
                lo += 1
            if hi + 1 - lo > len(worst):
                worst = retries[lo : hi + 1]
        if len(worst) < limit:
            worst = _herd_kept_together(ops, by_start, j, limit, window) or worst
        if len(worst) >= limit:
            bursts.append(worst)
    if depth and len(bursts) >= min(2, depth):
        first = bursts[0]
        flagged = {(i, j) for burst in bursts for _, i, j in burst}
        spread = (first[-1][0] - first[0][0]) * 1000
        starts = [ops[i].attempts[0].started_at for _, i, _ in first]
        kept = (
            f", as close as their first attempts ({(max(starts) - min(starts)) * 1000:.1f} ms), "
            "having waited alike"
            if spread > window * 1000
            else ""
        )
        raise fail(
            f"retry storm: {len(first)} operations made retry {first[0][2]} within "
            f"{spread:.1f} ms{kept} (limit: fewer than {limit} within {window * 1000:g} ms), "
            f"and {len(bursts)} of their {depth} retries came in such bursts; without jitter, "
            "clients that failed together retry together.",
            _rows(ops, flagged=flagged),
            _origin(exchanges, origin),
        )


def _herd_kept_together(
    ops: Sequence[Operation], by_start: Sequence[int], j: int, limit: int, window: float
) -> list[tuple[float, int, int]] | None:
    """The j-th retries of `limit` operations that first failed together (their first
    attempts within a gap before retry j of each other) and waited alike since, to within
    `window`: a herd that keeps its shape; None if there is none."""
    waited = sorted(
        (ops[i].attempts[j].started_at - ops[i].attempts[0].started_at, i)
        for i in by_start
        if len(ops[i].attempts) > j
    )
    best: list[int] = []
    # Noise adds up over the waits: alike to within `window` or a tenth of the wait so far.
    if waited:
        window = max(window, HERD_SHARE * statistics.median(w for w, _ in waited))
    lo = 0
    for hi in range(len(waited)):
        while waited[hi][0] - waited[lo][0] > window:
            lo += 1
        herd = [i for _, i in waited[lo : hi + 1]]
        if len(herd) < max(limit, len(best) + 1):
            continue
        firsts = [ops[i].attempts[0].started_at for i in herd]
        if max(firsts) - min(firsts) <= statistics.median(ops[i].gaps[j - 1] for i in herd):
            best = herd
    return sorted((ops[i].attempts[j].started_at, i, j) for i in best) if best else None


def check_amplification(
    exchanges: Sequence[Exchange], calls: int, max: float, *, origin: float | None = None
) -> None:
    """Requests that reached the service per call of the client stay at most ``max``."""
    __tracebackhide__ = True
    validate.number(max, "max (requests per call)", above=True)
    if calls <= 0:
        raise ConfigurationError("amplification needs a run with at least one call.")
    ratio = len(exchanges) / calls
    if ratio > max:
        ops = operations(exchanges)
        per_call = statistics.mean(len(op.attempts) for op in ops) if ops else 0
        raise fail(
            f"retry amplification {ratio:.2f}: the service received {len(exchanges)} requests for "
            f"{calls} client calls (at most {max:g} per call allowed; {per_call:.1f} attempts per "
            "operation on average).",
            _rows(ops, flagged=_retries(ops)),
            _origin(exchanges, origin),
        )
