"""Operations: one logical request and all its retries.

Attempts that share an Idempotency-Key belong to one operation.  So does a
request with the business identity (method, path, canonical body) of an
operation whose last attempt failed (no answer, lost, 408, 409, 425, 429 or
any 5xx, 529 included: the statuses widely used SDKs retry)
less than ``window`` seconds before — a retry follows a failure, whatever key
it carries (a client that mints a key per attempt still retries one
operation); a success ends the operation.  ``group=`` takes a callable
(exchange -> hashable) to group otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from ..http.records import Exchange

RETRYABLE = frozenset({408, 409, 425, 429})
"""Failing statuses below 500; every 5xx fails too (the SDKs of Stripe, OpenAI and
Anthropic retry 409 and every status >= 500: stripe/_http_client.py
HTTPClient._should_retry, openai and anthropic _base_client.py _should_retry)."""
Grouping = Callable[[Exchange], Hashable]


def failed(exchange: Exchange) -> bool:
    """True when the client saw no usable answer: none, lost, or a retryable status."""
    status = exchange.status
    return status is None or exchange.delivered is False or status in RETRYABLE or status >= 500


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
    def waits(self) -> list[float]:
        """Seconds from each attempt's answer (its start, if none reached the client) to
        the next attempt: the client's own wait plus transit, without the service's time."""
        out = []
        for a, b in itertools.pairwise(self.attempts):
            answered = a.ended_at is not None and a.delivered is not False
            out.append(b.started_at - (a.ended_at if answered else a.started_at))  # type: ignore[operator]
        return out

    @property
    def keys(self) -> list[str | None]:
        return [a.idempotency_key for a in self.attempts]


def operations(
    exchanges: Iterable[Exchange], group: Grouping | None = None, window: float = 60.0
) -> list[Operation]:
    """Exchanges grouped into operations, in the order their first attempts arrived."""
    ordered = sorted(exchanges, key=lambda e: e.started_at)
    if group is not None:
        groups: dict[Hashable, list[Exchange]] = {}
        order: list[Hashable] = []
        for exchange in ordered:
            name = group(exchange)
            if name not in groups:
                groups[name] = []
                order.append(name)
            groups[name].append(exchange)
        return [Operation(str(name), tuple(groups[name])) for name in order]

    # Attempts sharing a key, or a keyless request alone, form a strand; a strand joins
    # the operation of the same business identity whose last attempt failed just before
    # its first one.  Clients that keep their own keys run in parallel strands that
    # never chain (each goes on after the others began), so they stay apart.
    strands: dict[Hashable, list[Exchange]] = {}
    for n, exchange in enumerate(ordered):
        key = exchange.idempotency_key
        strands.setdefault(("key", key) if key is not None else ("identity", n), []).append(
            exchange
        )
    chains: list[tuple[Hashable, list[Exchange]]] = []
    # Chains a later strand may still join: their last attempt failed, by its identity.
    # Strands come in the order they began, so a chain idle for over `window` is done.
    open_chains: dict[str, list[tuple[Hashable, list[Exchange]]]] = {}
    for label, strand in strands.items():
        first = strand[0]
        waiting = open_chains.get(first.fingerprint, [])
        waiting[:] = [c for c in waiting if first.started_at - c[1][-1].started_at <= window]
        candidates = [c for c in waiting if _follows(c[1][-1], first)]
        if candidates:
            chain = max(candidates, key=lambda c: c[1][-1].started_at)
            waiting.remove(chain)
            chain[1].extend(strand)
            chain[1].sort(key=lambda e: e.started_at)
        else:
            chain = (label, list(strand))
            chains.append(chain)
        last = chain[1][-1]
        if failed(last):
            open_chains.setdefault(last.fingerprint, []).append(chain)
    return [
        Operation(_label(label, attempts[0], n + 1), tuple(attempts))
        for n, (label, attempts) in enumerate(chains)
    ]


def _follows(failure: Exchange, exchange: Exchange) -> bool:
    """``exchange`` started once the client could know ``failure`` failed: after its answer
    was sent, or (no answer, lost) at least after it started."""
    if failure.ended_at is not None and failure.delivered is not False:
        return exchange.started_at >= failure.ended_at
    return exchange.started_at > failure.started_at


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
