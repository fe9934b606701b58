"""Operations: one logical request and all its retries, told apart by what is on the wire.

An attempt *failed* when it got no answer, lost its answer (cut, reset, partition), or
got an answer in the failure set: by default :data:`DEFAULT_FAILURES` (408, 409, 425,
429 and every 5xx, 529 included: what widely used SDKs retry), or statuses and
predicates over the exchange given per service or per verdict.

Attempts belong to one operation when they share
- the service's idempotency header (``Idempotency-Key`` unless set otherwise), or
- an SDK invocation id (``amz-sdk-invocation-id``, which AWS SDKs keep across retries).

A client that kept its id over several attempts made one operation of them.  A request
with no id, or an id used once (a client that mints a key per attempt), is a retry of the
operation of the same business identity
(method, path, canonical body) whose last attempt failed before it began, however long
ago: a client that honours a 600 s Retry-After still retries one operation.  What the
client says of the attempt decides when it says it: an attempt counter at 0
(``x-stainless-retry-count: 0``, ``amz-sdk-request: attempt=1``) starts a new
operation; one above it is a retry.  (gRPC's ``grpc-previous-rpc-attempts`` needs
HTTP/2, which the HTTP layer does not speak.)  Among several failed operations it could
retry, a request takes the one whose last attempt came on its own connection, else the
one that failed first: concurrent keyless clients stay separate operations.  A success
ends an operation.  ``group=`` (exchange -> hashable) groups otherwise.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import validate
from ..errors import ConfigurationError
from ..http.records import Exchange

if TYPE_CHECKING:
    from ..observe.records import Call

DEFAULT_FAILURES: frozenset[int] = frozenset({408, 409, 425, 429, *range(500, 600)})
"""Statuses that count as failed attempts by default: the SDKs of Stripe, OpenAI and
Anthropic retry 409 and every status >= 500 (stripe/_http_client.py
HTTPClient._should_retry; openai and anthropic _base_client.py BaseClient._should_retry),
408 and 429 (the latter two), and 425 is RFC 8470's "retry later"."""
Grouping = Callable[[Exchange], Hashable]

INVOCATION_HEADERS = ("amz-sdk-invocation-id",)
"""Headers whose value names one operation across its retries."""
_AMZ_ATTEMPT = re.compile(r"(?:^|;)\s*attempt=(\d+)")


class FailureSet:
    """Which answers are failed attempts: statuses, and predicates over the exchange."""

    __slots__ = ("predicates", "statuses")
    statuses: frozenset[int]
    predicates: tuple[Callable[[Exchange], Any], ...]

    def __init__(self, rules: Iterable[Any] | None = None, what: str = "failure_statuses") -> None:
        if rules is None:
            self.statuses, self.predicates = DEFAULT_FAILURES, ()
        elif isinstance(rules, FailureSet):
            self.statuses, self.predicates = rules.statuses, rules.predicates
        else:
            self.statuses, self.predicates = validate.failures(rules, what)

    def __call__(self, exchange: Exchange) -> bool:
        if exchange.status is None or exchange.delivered is False:
            return True
        if exchange.status in self.statuses:
            return True
        for predicate in self.predicates:
            try:
                verdict = predicate(exchange)
            except Exception as exc:
                raise ConfigurationError(
                    f"the failure predicate {predicate!r} raised {exc!r} on the {exchange.status} "
                    f"answer to {exchange.method} {exchange.path}; make it return True or False."
                ) from exc
            if verdict:
                return True
        return False


DEFAULT = FailureSet()


def failed(exchange: Exchange, failure_statuses: FailureSet = DEFAULT) -> bool:
    """True when the attempt failed: no answer, a lost one, or one in ``failure_statuses``."""
    return failure_statuses(exchange)


def attempt_number(exchange: Exchange) -> int | None:
    """Which attempt the client says this is (0 for the first), if it says so."""
    value = exchange.header("x-stainless-retry-count")
    if value is not None and value.strip().isdigit():
        return int(value)
    value = exchange.header("amz-sdk-request")
    if value is not None and (match := _AMZ_ATTEMPT.search(value)):
        return max(int(match.group(1)) - 1, 0)
    return None


def _operation_id(exchange: Exchange) -> str | None:
    if exchange.idempotency_key is not None:
        return exchange.idempotency_key
    for name in INVOCATION_HEADERS:
        if (value := exchange.header(name)) is not None:
            return value
    return None


@dataclass(frozen=True)
class Operation:
    label: str
    attempts: tuple[Exchange, ...]

    @property
    def gaps(self) -> list[float]:
        """Seconds between the starts of consecutive attempts."""
        starts = [a.started_at for a in self.attempts]
        return [b - a for a, b in itertools.pairwise(starts)]

    @property
    def wait_spans(self) -> list[tuple[float, float]]:
        """(from, to) of each wait: from an attempt's answer (its start, if none reached
        the client) to the next attempt's start."""
        return [(answered_at(a), b.started_at) for a, b in itertools.pairwise(self.attempts)]

    @property
    def waits(self) -> list[float]:
        """Seconds of each of :attr:`wait_spans`: the client's own wait plus transit,
        without the service's time."""
        return [end - start for start, end in self.wait_spans]

    @property
    def keys(self) -> list[str | None]:
        return [a.idempotency_key for a in self.attempts]


class InFlight:
    """When the attempts of a service were in flight, to tell a retry that may have queued
    behind others (a connection, a lock or a slot they shared): while it waited for them,
    its wait was not its own choice.  An attempt is in flight from its start to its
    answer's end, or its cut; one with no answer (hung) until its operation's next attempt
    began (the client had given up on it), or for good if none did.  ``handed(end,
    start)``: whether nothing but a hand-over can lie between two instants."""

    def __init__(self, ops: Iterable[Operation], handed: Callable[[float, float], bool]) -> None:
        self._handed = handed
        self._queued: dict[tuple[int, int], float] = {}
        spans: list[tuple[float, float, Exchange]] = []
        for op in ops:
            for k, attempt in enumerate(op.attempts):
                end = attempt.ended_at if attempt.cut_at is None else attempt.cut_at
                if end is None:
                    later = op.attempts[k + 1 :]
                    end = later[0].started_at if later else math.inf
                spans.append((attempt.started_at, end, attempt))
        spans.sort(key=lambda span: span[0])
        self._spans = [span for span in spans if span[1] < math.inf]
        self._starts = [span[0] for span in self._spans]
        self._longest = max((stop - start for start, stop, _ in self._spans), default=0.0)
        self._endless = [span for span in spans if span[1] == math.inf]

    def queued(self, previous: Exchange, following: Exchange) -> float:
        """Seconds of the wait from ``previous`` to ``following`` that it may have spent
        queued: the run of other attempts in flight that ``following`` began right after,
        each begun right after the one before it ended (handed over); 0 if none.  Asked
        once a wait, however many verdicts read it."""
        key = (id(previous), id(following))
        if key not in self._queued:
            self._queued[key] = self._run_before(previous, following)
        return self._queued[key]

    def _run_before(self, previous: Exchange, following: Exchange) -> float:
        handed = self._handed
        begun, end = answered_at(previous), following.started_at
        # Only attempts that began before the retry and were in flight after the wait
        # began: those begun within the longest attempt of it, and those never ended.
        first = bisect.bisect_left(self._starts, begun - self._longest)
        last = bisect.bisect_left(self._starts, end)
        candidates = self._spans[first:last]  # sorted by start
        endless = [span for span in self._endless if span[0] < end]
        if endless:
            candidates = sorted(candidates + endless, key=lambda span: span[0])
        runs: list[list[float]] = []  # [start, latest end, latest end before the retry]
        for start, stop, attempt in candidates:
            if stop <= begun or attempt is previous or attempt is following:
                continue
            start, done = max(start, begun), stop if stop <= end else -math.inf
            if runs and (start <= runs[-1][1] or handed(runs[-1][1], start)):
                runs[-1][1], runs[-1][2] = max(runs[-1][1], stop), max(runs[-1][2], done)
            else:
                runs.append([start, stop, done])
        # A retry that queued began once an attempt it waited for was over: one still in
        # flight as it began did not hold it.
        return max(
            (done - start for start, _, done in runs if done > -math.inf and handed(done, end)),
            default=0.0,
        )


def answered_at(exchange: Exchange) -> float:
    """When the client could know how the attempt went: its answer, else its start."""
    if exchange.ended_at is not None and exchange.delivered is not False:
        return exchange.ended_at
    return exchange.started_at


def operations(
    exchanges: Iterable[Exchange],
    group: Grouping | None = None,
    failure_statuses: FailureSet = DEFAULT,
) -> list[Operation]:
    """Exchanges grouped into operations, in the order their first attempts arrived."""
    validate.callable_or_none(group, "group", "exchange -> hashable")
    ordered = sorted(exchanges, key=lambda e: e.started_at)
    if group is not None:
        groups: dict[Hashable, list[Exchange]] = {}
        for exchange in ordered:
            groups.setdefault(group(exchange), []).append(exchange)
        return [Operation(str(name), tuple(attempts)) for name, attempts in groups.items()]

    # Attempts sharing an id form a strand; a keyless request is a strand alone.  A strand
    # joins the failed operation of its business identity that it can retry.
    strands: dict[Hashable, list[Exchange]] = {}
    for n, exchange in enumerate(ordered):
        op_id = _operation_id(exchange)
        strands.setdefault(("key", op_id) if op_id is not None else ("one", n), []).append(exchange)
    chains: list[tuple[Hashable, list[Exchange]]] = []
    open_chains: dict[str, list[tuple[Hashable, list[Exchange]]]] = {}
    for label, strand in strands.items():
        first = strand[0]
        waiting = open_chains.get(first.fingerprint, [])
        # A client that kept its id over several attempts retries under it, so such a
        # strand is an operation of its own, and no other id continues it.
        kept = len(strand) > 1 and _operation_id(first) is not None
        chain = None if attempt_number(first) == 0 or kept else _retried(waiting, first)
        if chain is not None:
            waiting.remove(chain)
            chain[1].extend(strand)
            chain[1].sort(key=lambda e: e.started_at)
        else:
            chain = (label, list(strand))
            chains.append(chain)
        last = chain[1][-1]
        if failure_statuses(last) and not kept:
            open_chains.setdefault(last.fingerprint, []).append(chain)
    return [
        Operation(_label(label, attempts[0], n + 1), tuple(attempts))
        for n, (label, attempts) in enumerate(chains)
    ]


def _retried(
    waiting: list[tuple[Hashable, list[Exchange]]], exchange: Exchange
) -> tuple[Hashable, list[Exchange]] | None:
    """The failed operation ``exchange`` retries: one whose failure it could know of, on
    its own connection if there is one, else the one that failed first."""
    known = [c for c in waiting if answered_at(c[1][-1]) <= exchange.started_at]
    if not known:
        return None
    same = [c for c in known if c[1][-1].connection == exchange.connection]
    return min(same or known, key=lambda c: answered_at(c[1][-1]))


def _label(label: Hashable, first: Exchange, number: int) -> str:
    if isinstance(label, tuple) and label[0] == "key":
        return f"key={label[1]}"
    return f"#{number} {first.method} {first.path.split('?', 1)[0]}"


def status_text(exchange: Exchange) -> str:
    if exchange.status is None:
        return "no answer"
    if exchange.delivered is False:
        return f"{exchange.status} lost"
    return str(exchange.status)


def outbound(calls: Sequence[Call], ops: Sequence[Operation]) -> tuple[float, ...]:
    """How much longer than the quickest each of ``calls`` took from its start to its
    operation's first request (seconds): the client's own work on the way out and every
    hop after it, under the load of the moment, which the noise probe does not see
    (:class:`~.timing.Noise`).

    The calls are those the plugin drove (``resilience.load``, ``drive``); each is paired
    with an operation that began while the calls ran, both in order of their start.  They
    pair only one to one, each operation beginning after its call began: a call that
    sent nothing, two operations a call, or another client's operation in between make
    the pairing unknown, and then nothing is measured (empty).
    """
    if len(calls) < 2:
        return ()
    starts = sorted(c.started_at for c in calls)
    until = max(c.ended_at for c in calls)
    firsts = sorted(
        op.attempts[0].started_at for op in ops if starts[0] <= op.attempts[0].started_at <= until
    )
    if len(firsts) != len(starts):
        return ()
    ways = [first - start for start, first in zip(starts, firsts, strict=True)]
    if min(ways) < 0:
        return ()
    quickest = min(ways)
    return tuple(way - quickest for way in ways)
