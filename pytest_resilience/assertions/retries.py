"""Verdicts on retries: how many, how keyed, and how many requests a call makes (their
timing: :mod:`.backoff` and :mod:`.storm`).

Each function takes the records and raises :class:`ResilienceAssertionError`
with the evidence when the rule is broken; it needs no sockets and no pytest.
Times are monotonic seconds; ``origin`` is the t=0 of the tables (the start of
the test, or the first attempt).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .. import validate
from ..errors import ConfigurationError
from ..http.records import Exchange
from .operations import (
    FailureSet,
    Grouping,
    Operation,
    answered_at,
    operations,
)
from .report import (
    ANSWERING_FAULTS,
    Blind,
    blind_spans,
    fail,
    insufficient,
    operation_rows,
    origin_of,
    overlaps,
    plural,
    retry_cells,
)

if TYPE_CHECKING:
    from ..observe.records import Call

Failures = Iterable[Any] | None
"""Statuses and predicates (exchange -> bool) that count as failed attempts; None: the default."""


def check_attempts(
    exchanges: Sequence[Exchange],
    max: int | None = None,
    min: int | None = None,
    *,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    blind: Blind = (),
    origin: float | None = None,
) -> None:
    """Every operation made at most ``max`` and at least ``min`` attempts.

    ``blind`` lists spans in which attempts could leave no record (connections refused,
    reset or held on the way in).  A call may then lie wholly in one, so no record shows
    either bound kept: only a breach on record decides (more than ``max`` attempts, or
    fewer than ``min`` by an operation done before any span began: its last attempt
    succeeded and started first, :func:`may_hide_attempts`), and otherwise the verdict is
    insufficient evidence."""
    __tracebackhide__ = True
    validate.bound(max, "max")
    validate.bound(min, "min")
    if max is None and min is None:
        raise ConfigurationError("assert_attempts needs max= or min= (or both).")
    failed = FailureSet(failure_statuses)
    ops = operations(exchanges, group, failed)
    start = origin_of(exchanges, origin)
    if not ops and not min and max:  # no request shows max=0 and min=0 kept, nothing more
        raise insufficient(
            "no request arrived, so no operation shows how many attempts it makes; "
            "assert_attempts(max=0) says that no request is expected.",
            [],
            start,
        )
    if min and not ops:
        if blind:
            raise insufficient(
                f"no request arrived, but attempts could leave no record "
                f"({blind_spans(blind, start)}); {ANSWERING_FAULTS}.",
                [],
                start,
            )
        raise fail(
            f"expected operations with at least {min} attempts, but no request arrived.", [], 0.0
        )
    over = [i for i, op in enumerate(ops) if max is not None and len(op.attempts) > max]
    # Fewer than min on record is certain only for an operation no blind span began
    # before it was done with (its last attempt answered): another may have made attempts
    # no record shows.
    under = [
        i
        for i, op in enumerate(ops)
        if min is not None and len(op.attempts) < min and not may_hide_attempts(op, blind, failed)
    ]
    broken = sorted(set(over) | set(under))
    if not broken and blind:
        # A whole call may lie in a span, its attempts all unrecorded: neither bound is
        # shown kept by any record.
        raise insufficient(
            f"attempts could leave no record ({blind_spans(blind, start)}), so an operation "
            "may have made attempts the records do not show (a call wholly inside such a "
            "span leaves none), and whether each kept "
            + " and ".join(
                part
                for part in (
                    f"at most {max}" if max is not None else "",
                    f"at least {min}" if min is not None else "",
                )
                if part
            )
            + f" is not shown; {ANSWERING_FAULTS}.",
            operation_rows(ops),
            start,
        )
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
            operation_rows(ops, flagged=flagged),
            start,
        )


def may_hide_attempts(op: Operation, blind: Blind, failed: FailureSet) -> bool:
    """Whether attempts of ``op`` may lie in a ``blind`` span: one began before its last
    recorded attempt (earlier attempts, or attempts between those recorded, may be
    missing), or at any time after it if that attempt failed (more may have followed)."""
    last = op.attempts[-1]
    return overlaps(blind, -math.inf, math.inf if failed(last) else last.started_at)


def check_retry_after_honoured(
    exchanges: Sequence[Exchange],
    tolerance: float = 0.05,
    *,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    blind: Blind = (),
    origin: float | None = None,
) -> None:
    """No attempt came before the moment the previous answer's Retry-After allowed; with
    no retry after an answer that asked to wait, nothing shows it (insufficient evidence).

    ``blind`` lists spans in which attempts could leave no record: an early attempt may
    lie unrecorded in one that overlaps the wait an answer asked for, so there no record
    shows the wait kept (insufficient evidence, unless a recorded attempt broke one)."""
    __tracebackhide__ = True
    validate.seconds(tolerance, "tolerance")
    failed = FailureSet(failure_statuses)
    ops = operations(exchanges, group, failed)
    allowed: dict[tuple[int, int], str] = {}
    flagged: set[tuple[int, int]] = set()
    first_breach: tuple[Operation, float, Exchange] | None = None
    unseen = 0
    asked = 0  # answers that reached the client with a wait
    judged = 0  # retries after a wait longer than the tolerance: each could have come early
    for i, op in enumerate(ops):
        for j in range(1, len(op.attempts) + 1):
            before = op.attempts[j - 1]
            if before.retry_after_delay is None or before.delivered is False:
                continue  # no Retry-After reached the client
            asked += 1
            answered = before.ended_at if before.ended_at is not None else before.started_at
            earliest = answered + before.retry_after_delay
            last = j == len(op.attempts)  # no retry on record: one follows only a failure
            early = earliest - tolerance  # a retry before it would be early
            if (
                (not last or failed(before))
                and answered < early
                and overlaps(blind, answered, early)
            ):
                unseen += 1  # an early retry may lie there unrecorded
            if last:
                continue
            attempt = op.attempts[j]
            allowed[(i, j)] = f">= {(earliest - answered) * 1000:.0f} ms after the {before.status}"
            if early > answered:  # else a wait within the tolerance, which no retry breaks
                judged += 1
            if attempt.started_at < early:
                flagged.add((i, j))
                if first_breach is None:
                    first_breach = (op, attempt.started_at - answered, before)
    if first_breach is None and unseen:
        start = origin_of(exchanges, origin)
        raise insufficient(
            f"attempts could leave no record ({blind_spans(blind, start)}) during the waits "
            f"{unseen} answers asked for, so an early retry may lie there unrecorded; "
            f"{ANSWERING_FAULTS}.",
            operation_rows(ops, allowed),
            start,
        )
    if first_breach is None and not judged:  # no retry after a wait beyond the tolerance
        raise insufficient(
            (
                f"{plural(asked, 'answer')} that reached the client carried a wait, and no "
                f"retry followed one asking for more than the tolerance ({tolerance:g} s)"
                if asked
                else "no answer that reached the client asked it to wait"
            )
            + ", so nothing shows whether it waits as asked; a retry after such an answer "
            "decides (e.g. fail(429, retry_after=1, count=1) before a call that retries).",
            operation_rows(ops),
            origin_of(exchanges, origin),
        )
    if first_breach is not None:
        op, waited, asking = first_breach
        raise fail(
            f"operation {op.label} retried {waited * 1000:.0f} ms after an answer whose "
            f"{asking.wait_header} asked for {asking.retry_after_delay:g} s ({len(flagged)} early "
            f"attempts; tolerance {tolerance * 1000:.0f} ms).",
            operation_rows(ops, allowed, flagged),
            origin_of(exchanges, origin),
        )


def check_stable_idempotency_key(
    exchanges: Sequence[Exchange],
    *,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    calls: Sequence[Call] = (),
    origin: float | None = None,
) -> None:
    """Retries of one logical operation (same business identity, after a failure) reuse its
    key; without a retry on record, insufficient evidence.

    An operation that kept its key over several attempts and failed may be followed by the
    same request under another key or none: its retry with a changed key, or a new call.
    ``calls`` (the client's, of ``resilience.drive`` or ``load``) tell which: one call
    holding both is a retry (it fails), none holding both a new call; with no call, or
    concurrent ones, to tell, insufficient evidence (unless ``group`` says what an
    operation is)."""
    __tracebackhide__ = True
    failed = FailureSet(failure_statuses)
    ops = operations(exchanges, group, failed)
    retried = [op for op in ops if len(op.attempts) > 1]
    if not retried:
        raise insufficient(
            "no operation retried, so no record shows a retry keeping its key; a fault that "
            "fails a first attempt (fail(503, count=1)) before a call that retries decides.",
            operation_rows(ops),
            origin_of(exchanges, origin),
        )
    keyless = [op for op in retried if set(op.keys) == {None}]
    if keyless:
        op = keyless[0]
        raise fail(
            f"the {len(op.attempts)} attempts of {op.label} carried no idempotency key "
            f"({len(keyless)} of the {plural(len(retried), 'operation')} that retried); a "
            "retry must carry "
            "its operation's key (in the service's idempotency_header), or a lost answer turns "
            "into a second side effect.",
            operation_rows(
                ops,
                flagged={(ops.index(o), j) for o in keyless for j in range(len(o.attempts))},
            ),
            origin_of(exchanges, origin),
        )
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
            operation_rows(broken, allowed, flagged),
            origin_of(exchanges, origin),
        )
    if group is None:
        _kept_keys_kept(ops, failed, calls, origin_of(exchanges, origin))


def _kept_keys_kept(
    ops: list[Operation], failed: FailureSet, calls: Sequence[Call], origin: float
) -> None:
    """Fail where an operation that kept its key over its attempts and failed was followed,
    in the same call, by the same request under another key or none (its retry); where
    the calls cannot tell a retry from a new call, insufficient evidence."""
    __tracebackhide__ = True
    unknown: tuple[int, int] | None = None
    for n, op in enumerate(ops):
        last = op.attempts[-1]
        key = last.idempotency_key
        if key is None or len(op.attempts) < 2 or set(op.keys) != {key} or not failed(last):
            continue
        known = answered_at(last)
        later = [
            m
            for m, other in enumerate(ops)
            if other.attempts[0].fingerprint == last.fingerprint
            and other.attempts[0].started_at >= known
            and other.attempts[0].idempotency_key != key
        ]
        if not later:
            continue
        after = min(later, key=lambda m: ops[m].attempts[0].started_at)
        same = _one_call(calls, last.started_at, ops[after].attempts[0].started_at)
        if same:
            raise fail(
                f"the retries of {op.label} changed its key: after {len(op.attempts)} "
                f"attempts under {key!r}, the same request came again in the same call "
                f"{_keyed(ops[after])}; a retry must reuse its operation's key, or a lost "
                "answer turns into a second side effect.",
                operation_rows(ops, flagged={(after, 0)}),
                origin,
            )
        if same is None and unknown is None:
            unknown = (n, after)
    if unknown is not None:
        kept, next_ = ops[unknown[0]], ops[unknown[1]]
        raise insufficient(
            f"{kept.label} failed after {len(kept.attempts)} attempts under "
            f"{kept.attempts[0].idempotency_key!r}, and the same request came again "
            f"{_keyed(next_)}: its retry with a changed key, or a new call; which is not on "
            "record; call the client through resilience.drive or load, so that each call's "
            "attempts are known.",
            operation_rows(ops, flagged={(unknown[1], 0)}),
            origin,
        )


def _keyed(op: Operation) -> str:
    key = op.attempts[0].idempotency_key
    return "with no key" if key is None else f"under {key!r}"


def _one_call(calls: Sequence[Call], first: float, then: float) -> bool | None:
    """Whether the instants ``first`` and ``then`` fell in one call of ``calls``: True,
    False (no call held both), or None (no call held one of them, or another call held
    one too, so the two may belong to different calls)."""
    holding = [[c for c in calls if c.started_at <= t <= c.ended_at] for t in (first, then)]
    if not holding[0] or not holding[1]:
        return None
    if not any(c in holding[1] for c in holding[0]):
        return False
    return True if len(holding[0]) == len(holding[1]) == 1 else None


def check_amplification(
    exchanges: Sequence[Exchange],
    calls: int,
    max: float,
    *,
    group: Grouping | None = None,
    failure_statuses: Failures = None,
    origin: float | None = None,
) -> None:
    """Requests that reached the service per call of the client stay at most ``max``."""
    __tracebackhide__ = True
    validate.number(max, "max (requests per call)", above=True)
    validate.callable_or_none(group, "group", "exchange -> hashable")
    if calls <= 0:
        raise ConfigurationError("amplification needs a run with at least one call.")
    ratio = len(exchanges) / calls
    if ratio > max:
        ops = operations(exchanges, group, FailureSet(failure_statuses))
        per_call = statistics.mean(len(op.attempts) for op in ops) if ops else 0
        raise fail(
            f"retry amplification {ratio:.2f}: the service received {len(exchanges)} requests for "
            f"{calls} client calls (at most {max:g} per call allowed; {per_call:.1f} attempts per "
            "operation on average).",
            operation_rows(ops, flagged=retry_cells(ops)),
            origin_of(exchanges, origin),
        )
