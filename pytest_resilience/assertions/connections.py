"""Verdicts on a TCP service's connections."""

from __future__ import annotations

from collections.abc import Sequence

from ..observe.records import Connection, FaultEvent, fault_spans
from .report import Row, fail, insufficient


def check_connections(
    service: str,
    connections: Sequence[Connection],
    faults: Sequence[FaultEvent],
    max: int | None,
    min: int | None,
    *,
    origin: float,
) -> None:
    """The code under test opened between ``min`` and ``max`` connections to ``service``.

    A connection refused while a fault disabled the proxy (``down``, a partition with
    ``mode="refuse"``) was never opened and leaves no record, so a client reconnecting in
    a loop then looks like one that waited: with such a fault in ``faults``, ``max`` is
    shown only broken (more connections on record), otherwise insufficient evidence.
    Fewer than ``min`` opened is a fact either way."""
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
    if too_many or too_few:
        bound = " and ".join(
            s
            for s in (
                f"at least {min}" if min is not None else "",
                f"at most {max}" if max is not None else "",
            )
            if s
        )
        raise fail(f"service {service!r} saw {count} connections, expected {bound}.", rows, origin)
    refusing = [s for s in fault_spans(faults) if s.refuses]
    if max is not None and refusing:
        spans = ", ".join(
            f"{s.kind} from t+{(s.applied_at - origin) * 1000:.0f} ms"
            + ("" if s.healed_at is None else f" to t+{(s.healed_at - origin) * 1000:.0f} ms")
            for s in refusing
        )
        raise insufficient(
            f"service {service!r} saw {count} connections, at most {max} as expected, but "
            f"new connections were refused ({spans}) and a refused connection leaves no "
            "record, so a client reconnecting in a loop would look the same; bound "
            "connections under a fault that accepts them (partition mode='blackhole' or "
            "'reset', reset_peer, timeout), or count the client's own attempts.",
            rows,
            origin,
        )
