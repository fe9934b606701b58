"""Joining the two sides of Toxiproxy: what the service processed, what reached the client.

The HTTP layer behind Toxiproxy counts the bytes of each answer on its
connection; the tap in front counts the bytes that reached the client on its
own.  Toxiproxy opens one upstream connection per client connection and changes
no byte, so both sides see the same first request head: its hash pairs a tap
connection with an HTTP-layer connection (in order, when heads repeat), and an
answer reached the client when the tap delivered every byte up to its end.  Both sides
hash the head with :func:`~pytest_resilience.runtime.wire.head_digest`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Trace:
    """What the tap knows of one client connection."""

    id: int
    digest: str | None
    delivered: int
    """Bytes from the service that reached the client's socket."""
    ended: bool
    opened_at: float = 0.0
    ended_at: float | None = None
    port: int | None = None
    """The client socket's local port (the peer of the tap's connection)."""


def pair(
    service_side: Iterable[tuple[int, str | None, float | None]], client_side: Iterable[Trace]
) -> dict[int, Trace]:
    """Match service-side connections ``(id, digest, accepted_at)`` with tap traces, in order.

    A client connection that ended before the service-side one was accepted cannot be
    its partner (an attempt lost upstream, then an identical retry), so it is passed
    over when another candidate is open at that time.
    """
    waiting: dict[str, list[Trace]] = {}
    for trace in client_side:
        if trace.digest is not None:
            waiting.setdefault(trace.digest, []).append(trace)
    matched: dict[int, Trace] = {}
    for conn_id, digest, accepted_at in service_side:
        candidates = waiting.get(digest or "")
        if not candidates:
            continue
        alive = [
            t
            for t in candidates
            if accepted_at is None or t.ended_at is None or t.ended_at >= accepted_at
        ]
        chosen = (alive or candidates)[0]
        candidates.remove(chosen)
        matched[conn_id] = chosen
    return matched


def reached_client(trace: Trace | None, end: int | None) -> bool | None:
    """True if the client got every byte up to ``end``; False if it never will; None: unknown."""
    if trace is None or end is None:
        return None
    if trace.delivered >= end:
        return True
    return False if trace.ended else None
