"""Verdicts on a TCP service's connections."""

from __future__ import annotations

from collections.abc import Sequence

from ..observe.records import Connection, FaultEvent
from .report import Blind, Row, blind_spans, fail, insufficient, plural


def check_connections(
    service: str,
    connections: Sequence[Connection],
    faults: Sequence[FaultEvent],
    refusing: Blind,
    max: int | None,
    min: int | None,
    *,
    origin: float,
) -> None:
    """The code under test made between ``min`` and ``max`` connections to ``service``:
    those its tap accepted.  A connection made while a fault disabled the proxy (``down``,
    a partition with ``mode="refuse"``) was refused and leaves no record, so with such a
    fault's span in ``refusing`` (:meth:`~..evidence.Evidence.refusing`) the count on
    record is a floor: more than ``max`` on record fails, and otherwise neither bound is
    shown (a client reconnecting in a loop, or one that tried ``min`` times, would look the
    same): insufficient evidence.  ``faults``: the fault events, shown in the table."""
    __tracebackhide__ = True
    count = len(connections)
    too_many = max is not None and count > max
    too_few = min is not None and count < min
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
    rows.sort(key=lambda r: r.at)
    bound = " and ".join(
        s
        for s in (
            f"at least {min}" if min is not None else "",
            f"at most {max}" if max is not None else "",
        )
        if s
    )
    saw = f"service {service!r} saw {plural(count, 'connection')}"
    if too_many or (too_few and not refusing):
        raise fail(f"{saw}, expected {bound}.", rows, origin)
    if refusing and (max is not None or too_few):
        raise insufficient(
            f"{saw} on record, expected {bound}, but connections were refused "
            f"({blind_spans(refusing, origin)}) and "
            "a refused connection leaves no record, so the client may have made more; bound "
            "connections under a fault that accepts them (partition mode='blackhole' or "
            "'reset', reset_peer, timeout), or count the client's own attempts.",
            rows,
            origin,
        )
