"""The terminal's ``resilience`` section: per test that injected faults, what was injected,
what the code did, the verdicts, and how to replay it; failing tests first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .record import (
        ClockRecord,
        ExploreRecord,
        FaultRecord,
        RunRecord,
        ServiceRecord,
        TestRecord,
        VerdictRecord,
    )


@dataclass
class ReportEntry:
    """What the summary knows of one test: its outcome and its record."""

    nodeid: str
    outcome: str
    record: TestRecord
    sections: list[tuple[str, str]] = field(default_factory=list)
    """Extra (title, text) sections other plugins added."""

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")

    @property
    def notable(self) -> bool:
        """Worth a line: it injected faults or judged something."""
        return bool(self.record.faults or self.record.verdicts or self.record.explored)


def summary_lines(
    entries: Iterable[ReportEntry],
    verbose: bool = False,
    timelines: Mapping[str, object] | None = None,
) -> list[str]:
    """The section's lines: every failing test in full, passing ones in full with ``-v``,
    else counted; ``timelines`` names each failing test's SVG picture."""
    timelines = timelines or {}
    notable = [e for e in entries if e.notable or e.failed]
    # A passing test whose verdict broke caught it (pytest.raises): it is told as passing.
    failing = [e for e in notable if e.failed]
    others = [e for e in notable if not e.failed]
    lines: list[str] = []
    for entry in failing:
        lines += _entry(entry, timelines.get(entry.nodeid))
    if verbose:
        for entry in others:
            lines += _entry(entry)
    elif others:
        counts: dict[str, int] = {}
        for entry in others:
            counts[entry.outcome] = counts.get(entry.outcome, 0) + 1
        told = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        lines.append(f"{len(others)} more test(s) injected faults: {told} (-v lists them).")
    return lines


def _entry(entry: ReportEntry, timeline: object = None) -> list[str]:
    record = entry.record
    lines = [f"{entry.outcome.upper()} {entry.nodeid}"]
    if record.faults:
        lines.append("  faults:   " + "; ".join(_fault(f) for f in record.faults))
    for service in record.services:
        lines.append(f"  {service.name + ':':<9} {_service(service)}")
    for run in record.runs:
        lines.append("  run:      " + _run(run))
    if record.explored is not None:
        lines += _explored(record.explored)
    if record.clock is not None:
        lines.append("  clock:    " + _clock(record.clock))
    verdicts = sorted(record.verdicts, key=lambda v: v.passed)
    for n, verdict in enumerate(verdicts):
        head = "  verdicts: " if n == 0 else "            "
        lines.append(head + _verdict(verdict))
    for title, text in entry.sections:
        lines.append(f"  {title}:")
        lines += [f"    {line}" for line in text.splitlines()]
    if entry.failed:
        lines.append(f"  replay:   --resilience-seed={record.seed}")
    if timeline is not None:
        lines.append(f"  timeline: {timeline}")
    return lines


def _explored(explored: ExploreRecord) -> list[str]:
    undecided = f", {explored.undecided} undecided" if explored.undecided else ""
    lines = [
        f"  explore:  {_plural(explored.examples, 'schedule')} run in {explored.seconds:.1f} s"
        f"{undecided}, faults in the first {explored.span_ms:.0f} ms of the body; the figures "
        "above are the last one's"
    ]
    if explored.failing:
        lines.append("  failing:  " + explored.failing[0])
        lines += [f"            {d}" for d in explored.failing[1:]]
    return lines


def _clock(clock: ClockRecord) -> str:
    line = f"{clock.virtual_s:.1f} s virtual in {clock.real_s:.2f} s real"
    # Named when most of the virtual time passed in real time, in waits that could not jump
    # (real work overlapping other clients' waits adds a little held time in every herd).
    if clock.held_by is not None and clock.held_s >= clock.virtual_s / 2:
        line += (
            f"; waits ended in real time for {clock.held_s:.2f} s while thread "
            f"{clock.held_by!r} ran where virtual time cannot see it wait (a socket, a lock, "
            "an object made before the block), holding the clock back"
        )
    return line


def _window(start: float, end: float | None) -> str:
    return f"{start:.0f}-{end:.0f} ms" if end is not None else f"from {start:.0f} ms"


def _fault(fault: FaultRecord) -> str:
    detail = f" {fault.detail}" if fault.detail else ""
    return f"{fault.kind} on {fault.service}{detail} ({_window(fault.applied_ms, fault.healed_ms)})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _service(service: ServiceRecord) -> str:
    tcp = f"{_plural(service.connections, 'connection')}"
    if service.resets:
        tcp += f" ({service.resets} reset)"
    if service.type != "http":
        return tcp
    parts = [
        _plural(service.requests or 0, "request"),
        f"{_plural(service.operations or 0, 'operation')} (at most "
        f"{_plural(service.max_attempts or 0, 'attempt')} each, {service.retried} retried)",
    ]
    if service.lost_answers:
        parts.append(_plural(service.lost_answers, "lost answer"))
    effects = _plural(service.effects or 0, "effect")
    if service.duplicated_effects:
        effects += f" ({service.duplicated_effects} duplicated)"
    parts.append(effects)
    parts.append(tcp)
    return ", ".join(parts)


def _run(run: RunRecord) -> str:
    text = (
        f"{_plural(run.calls, 'call')}, {run.availability:.0%} answered, "
        f"slowest {run.slowest_ms:.0f} ms"
    )
    for name, ratio in sorted(run.amplification.items()):
        text += f", {ratio:g} requests per call to {name}"
    return text


def _verdict(verdict: VerdictRecord) -> str:
    target = f" on {verdict.service}" if verdict.service else ""
    if verdict.passed:
        return f"{verdict.name}{target} held"
    if verdict.undecided:
        return f"{verdict.name}{target} UNDECIDED: {verdict.message}"
    return f"{verdict.name}{target} BROKE: {verdict.message}"


def json_report(entries: Sequence[ReportEntry], seed: int, backend: str | None) -> dict[str, Any]:
    """The ``--resilience-report`` document (schema: README, "Reports")."""
    from .record import SCHEMA

    if backend is None:  # the xdist controller: the workers' records name theirs
        backend = next((e.record.backend for e in entries if e.record.backend), None)
    return {
        "schema": SCHEMA,
        "seed": seed,
        "replay": f"--resilience-seed={seed}",
        "backend": backend,
        "tests": [
            {
                "nodeid": e.nodeid,
                "outcome": e.outcome,
                **e.record.to_json(),
                "sections": [list(s) for s in e.sections],
            }
            for e in entries
        ],
    }


class Collector:
    """Gathers, from pytest's reports (the workers' too, under xdist), each test's outcome
    and the record its teardown report carries."""

    def __init__(self) -> None:
        self._outcomes: dict[str, str] = {}
        self._records: dict[str, tuple[TestRecord, list[tuple[str, str]]]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        from .record import TestRecord

        before = self._outcomes.setdefault(report.nodeid, "passed")
        if report.when == "call" or report.outcome != "passed":
            self._outcomes[report.nodeid] = _outcome(report, before)
        data = getattr(report, "resilience", None)  # the record as JSON data
        if data:
            sections = [(str(t), str(x)) for t, x in getattr(report, "resilience_sections", [])]
            self._records[report.nodeid] = (TestRecord.from_json(data), sections)

    @property
    def entries(self) -> list[ReportEntry]:
        """Tests that used the plugin, in the order they ran."""
        return [
            ReportEntry(nodeid, outcome, *self._records[nodeid])
            for nodeid, outcome in self._outcomes.items()
            if nodeid in self._records
        ]


def _outcome(report: Any, before: str) -> str:
    """The test's outcome so far, given one more of its reports: passed, failed, error
    (in setup or teardown), skipped, xfailed or xpassed."""
    if before in ("failed", "error"):
        return before
    if hasattr(report, "wasxfail"):
        if report.when == "call" or report.skipped:
            return "xpassed" if report.passed else "xfailed"
        return before
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped and report.when != "teardown":
        return "skipped"
    return report.outcome if report.when == "call" else before


def sections_of(hook: Any, item: Any, record: TestRecord) -> list[list[str]]:
    """The (title, text) sections plugins add to a test's entry; a broken implementation
    shows as a section saying so, rather than ending the run."""
    try:
        answers = hook.pytest_resilience_report_sections(item=item, record=record)
        return [[str(title), str(text)] for found in answers for title, text in found]
    except Exception as exc:
        return [
            [
                "report sections",
                f"a pytest_resilience_report_sections implementation failed ({exc!r}); it must "
                "return a list of (title, text) pairs.",
            ]
        ]
