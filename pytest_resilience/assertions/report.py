"""Failure messages: the rule broken in one sentence, then the evidence as a timeline table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ResilienceError
from .operations import status_text

if TYPE_CHECKING:
    from ..http.records import Exchange
    from .operations import Operation


class ResilienceAssertionError(AssertionError, ResilienceError):
    """A resilience property does not hold; the message carries the evidence, and ends
    with the flag that replays the test once the verdict runner gave it the ``seed``
    (``str(error)`` has that line; ``error.args[0]`` is the message without it)."""

    seed: int | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.seed is None else f"{text}\nreplay: --resilience-seed={self.seed}"


@dataclass(frozen=True)
class Row:
    at: float
    operation: str
    attempt: int | str
    status: str
    gap: float | None = None
    allowed: str = ""
    flag: bool = False
    """Marks the rows that broke the rule."""


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}"


def table(rows: Sequence[Row], origin: float, limit: int = 30) -> str:
    """t+ms, operation, attempt, status, gap, what was allowed; offending rows marked ``>``."""
    header = f"  {'t+ms':>8}  {'operation':<24} {'try':>3}  {'status':<8} {'gap ms':>7}  allowed"
    lines = [header]
    shown = list(rows)
    if len(shown) > limit:
        flagged = [i for i, r in enumerate(shown) if r.flag]
        keep = set(range(5)) | {j for i in flagged[:8] for j in range(i - 2, i + 3)}
        shown = [r for i, r in enumerate(shown) if i in keep]
    for row in shown:
        mark = ">" if row.flag else " "
        operation = row.operation if len(row.operation) <= 24 else row.operation[:21] + "..."
        lines.append(
            f"{mark} {_ms(row.at - origin):>8}  {operation:<24} {row.attempt!s:>3}  "
            f"{row.status:<8} {_ms(row.gap):>7}  {row.allowed}".rstrip()
        )
    if len(shown) < len(rows):
        lines.append(f"  ({len(rows) - len(shown)} rows not shown)")
    return "\n".join(lines)


def fail(rule: str, rows: Iterable[Row], origin: float, *notes: str) -> ResilienceAssertionError:
    """The error to raise: ``rule``, then the table, then any notes."""
    text = [rule, table(list(rows), origin)]
    text.extend(note for note in notes if note)
    return ResilienceAssertionError("\n".join(text))


class InsufficientEvidence(ResilienceAssertionError):
    """The records cannot decide the verdict either way; the message says what would."""


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, in the plural unless it is 1 ("1 call", "0 calls")."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def insufficient(reason: str, rows: Iterable[Row], origin: float) -> InsufficientEvidence:
    """The error to raise when the records cannot decide: ``reason``, then the table."""
    return InsufficientEvidence(
        "\n".join([f"insufficient evidence: {reason}", table(list(rows), origin)])
    )


Blind = Sequence[tuple[float, float, str]]
"""Spans (start, end, the fault's kind) in which a fault kept requests from the service's
HTTP layer (:meth:`~..evidence.Evidence.blind`): attempts then could leave no record."""


def overlaps(blind: Blind, since: float, until: float) -> bool:
    """Whether a span of ``blind`` lies partly between ``since`` and ``until``."""
    return any(a < until and b > since for a, b, _ in blind)


def blind_spans(blind: Blind, origin: float) -> str:
    """The spans of ``blind`` as the messages name them: ``down from t+20 to t+395 ms``."""
    return ", ".join(
        f"{why} from t+{(a - origin) * 1000:.0f} to t+{(b - origin) * 1000:.0f} ms"
        for a, b, why in blind
    )


ANSWERING_FAULTS = (
    "judge it on a fault that answers (fail, rate_limit, cut, a partition of the answers "
    'alone: direction="downstream"), or count connections (assert_connections) under a '
    "fault that accepts them (not down, nor a partition with mode='refuse')"
)
"""What decides a verdict the blind spans leave open."""


def origin_of(exchanges: Sequence[Exchange], origin: float | None) -> float:
    """The t=0 of a table: ``origin`` if given, else the first attempt's start."""
    if origin is not None:
        return origin
    return min((e.started_at for e in exchanges), default=0.0)


def operation_rows(
    ops: Sequence[Operation],
    allowed: dict[tuple[int, int], str] | None = None,
    flagged: set[tuple[int, int]] | None = None,
) -> list[Row]:
    """One row per attempt of ``ops``, by time; ``allowed`` and ``flagged`` by
    (operation index, attempt index)."""
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


def retry_cells(ops: Sequence[Operation]) -> set[tuple[int, int]]:
    """(operation index, attempt index) of every retry of ``ops``: the rows to flag."""
    return {(i, j) for i, op in enumerate(ops) for j in range(1, len(op.attempts))}
