"""Verdicts on a TCP service's connections."""

from __future__ import annotations

from collections.abc import Sequence

from ..observe.records import Connection, FaultEvent
from .report import Row, fail


def check_connections(
    service: str,
    connections: Sequence[Connection],
    faults: Sequence[FaultEvent],
    max: int | None,
    min: int | None,
    *,
    origin: float,
) -> None:
    """The code under test opened between ``min`` and ``max`` connections to ``service``."""
    count = len(connections)
    too_many = max is not None and count > max
    if not too_many and (min is None or count >= min):
        return
    bound = " and ".join(
        s
        for s in (
            f"at least {min}" if min is not None else "",
            f"at most {max}" if max is not None else "",
        )
        if s
    )
    allowed = max if too_many else None  # the connections beyond it are flagged
    rows = [
        Row(
            c.opened_at,
            f"connection #{c.id}",
            "",
            c.outcome + (f" by {c.closed_by}" if c.closed_by else ""),
            allowed=f"at most {allowed}" if allowed is not None and i >= allowed else "",
            flag=allowed is not None and i >= allowed,
        )
        for i, c in enumerate(connections)
    ]
    rows += [Row(f.at, f"fault #{f.fault} {f.kind}", "", f.action) for f in faults]
    raise fail(
        f"service {service!r} saw {count} connections, expected {bound}.",
        sorted(rows, key=lambda r: r.at),
        origin,
    )
