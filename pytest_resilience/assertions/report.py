"""Failure messages: the rule broken in one sentence, then the evidence as a timeline table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ResilienceError


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


def insufficient(reason: str, rows: Iterable[Row], origin: float) -> InsufficientEvidence:
    """The error to raise when the records cannot decide: ``reason``, then the table."""
    return InsufficientEvidence(
        "\n".join([f"insufficient evidence: {reason}", table(list(rows), origin)])
    )
