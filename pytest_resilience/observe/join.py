"""Joining the two sides of Toxiproxy: what the service processed, what reached the client.

The HTTP layer behind Toxiproxy counts the bytes of each answer on its
connection; the tap in front counts the bytes that reached the client on its
own.  Toxiproxy opens one upstream connection per client connection and changes
no byte, so both sides see the same first request head: its hash pairs a tap
connection with an HTTP-layer connection (in order, when heads repeat), and an
answer reached the client when the tap delivered every byte up to its end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

HEAD_LIMIT = 16 * 1024
"""Bytes looked at for the first request head; a longer head is not traced."""


def head_digest(data: bytes) -> str | None:
    """Hash of ``data`` up to the end of its first request head, once it is all there."""
    end = data.find(b"\r\n\r\n", 0, HEAD_LIMIT)
    if end < 0:
        return None
    return hashlib.sha1(data[: end + 4]).hexdigest()


@dataclass(frozen=True, slots=True)
class Trace:
    """What the tap knows of one client connection."""

    id: int
    digest: str | None
    delivered: int
    """Bytes from the service that reached the client's socket."""
    ended: bool


def pair(
    service_side: Iterable[tuple[int, str | None]], client_side: Iterable[Trace]
) -> dict[int, Trace]:
    """Match service-side connections ``(id, digest)`` with tap traces, first come first served."""
    waiting: dict[str, list[Trace]] = {}
    for trace in client_side:
        if trace.digest is not None:
            waiting.setdefault(trace.digest, []).append(trace)
    matched: dict[int, Trace] = {}
    for conn_id, digest in service_side:
        candidates = waiting.get(digest or "")
        if candidates:
            matched[conn_id] = candidates.pop(0)
    return matched


def reached_client(trace: Trace | None, end: int | None) -> bool | None:
    """True if the client got every byte up to ``end``; False if it never will; None: unknown."""
    if trace is None or end is None:
        return None
    if trace.delivered >= end:
        return True
    return False if trace.ended else None
