"""The terminal's ``resilience`` section: per test that injected faults, what was injected,
what the code did, the verdicts, and how to replay it; failing tests first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReportEntry:
    """What the summary knows of one test: its outcome and its record."""

    nodeid: str
    outcome: str
    record: dict[str, Any]
    sections: list[tuple[str, str]] = field(default_factory=list)
    """Extra (title, text) sections other plugins added."""

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error")

    @property
    def notable(self) -> bool:
        """Worth a line: it injected faults or judged something."""
        return bool(self.record.get("faults") or self.record.get("verdicts"))


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
    faults = record.get("faults", [])
    if faults:
        lines.append("  faults:   " + "; ".join(_fault(f) for f in faults))
    for service in record.get("services", []):
        lines.append(f"  {service['name'] + ':':<9} {_service(service)}")
    for run in record.get("runs", []):
        lines.append("  run:      " + _run(run))
    verdicts = sorted(record.get("verdicts", []), key=lambda v: v["passed"])
    for n, verdict in enumerate(verdicts):
        head = "  verdicts: " if n == 0 else "            "
        lines.append(head + _verdict(verdict))
    for title, text in entry.sections:
        lines.append(f"  {title}:")
        lines += [f"    {line}" for line in text.splitlines()]
    if entry.failed:
        lines.append(f"  replay:   --resilience-seed={record.get('seed')}")
    if timeline is not None:
        lines.append(f"  timeline: {timeline}")
    return lines


def _window(start: float, end: float | None) -> str:
    return f"{start:.0f}-{end:.0f} ms" if end is not None else f"from {start:.0f} ms"


def _fault(fault: dict[str, Any]) -> str:
    detail = f" {fault['detail']}" if fault.get("detail") else ""
    return (
        f"{fault['kind']} on {fault['service']}{detail} "
        f"({_window(fault['applied_ms'], fault['healed_ms'])})"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _service(service: dict[str, Any]) -> str:
    tcp = f"{_plural(service['connections'], 'connection')}"
    if service.get("resets"):
        tcp += f" ({service['resets']} reset)"
    if service["type"] != "http":
        return tcp
    parts = [
        _plural(service["requests"], "request"),
        f"{_plural(service['operations'], 'operation')} (at most "
        f"{_plural(service['max_attempts'], 'attempt')} each, {service['retried']} retried)",
    ]
    if service["lost_answers"]:
        parts.append(_plural(service["lost_answers"], "lost answer"))
    effects = _plural(service["effects"], "effect")
    if service["duplicated_effects"]:
        effects += f" ({service['duplicated_effects']} duplicated)"
    parts.append(effects)
    parts.append(tcp)
    return ", ".join(parts)


def _run(run: dict[str, Any]) -> str:
    text = (
        f"{_plural(run['calls'], 'call')}, {run['availability']:.0%} answered, "
        f"slowest {run['slowest_ms']:.0f} ms"
    )
    for name, ratio in sorted(run.get("amplification", {}).items()):
        text += f", {ratio:g} requests per call to {name}"
    return text


def _verdict(verdict: dict[str, Any]) -> str:
    target = f" on {verdict['service']}" if verdict["service"] else ""
    if verdict["passed"]:
        return f"{verdict['name']}{target} held"
    if verdict["message"].startswith("insufficient evidence:"):
        return f"{verdict['name']}{target} UNDECIDED: {verdict['message']}"
    return f"{verdict['name']}{target} BROKE: {verdict['message']}"


def json_report(entries: Sequence[ReportEntry], seed: int, backend: str | None) -> dict[str, Any]:
    """The ``--resilience-report`` document (schema: README, "Reports")."""
    from .record import SCHEMA

    if backend is None:  # the xdist controller: the workers' records name theirs
        backend = next((e.record["backend"] for e in entries if e.record.get("backend")), None)
    return {
        "schema": SCHEMA,
        "seed": seed,
        "replay": f"--resilience-seed={seed}",
        "backend": backend,
        "tests": [
            {
                "nodeid": e.nodeid,
                "outcome": e.outcome,
                **e.record,
                "sections": [list(s) for s in e.sections],
            }
            for e in entries
        ],
    }


class Collector:
    """Gathers, from pytest's reports (the workers' too, under xdist), each test's outcome
    and the record its teardown report carries."""

    def __init__(self) -> None:
        self._entries: dict[str, ReportEntry] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        entry = self._entries.setdefault(report.nodeid, ReportEntry(report.nodeid, "passed", {}))
        if report.when == "call" or report.outcome != "passed":
            entry.outcome = _outcome(report, entry.outcome)
        record = getattr(report, "resilience", None)
        if record:
            entry.record = record
            entry.sections = [tuple(s) for s in getattr(report, "resilience_sections", [])]

    @property
    def entries(self) -> list[ReportEntry]:
        """Tests that used the plugin, in the order they ran."""
        return [e for e in self._entries.values() if e.record]


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


def sections_of(hook: Any, item: Any, record: dict[str, Any]) -> list[list[str]]:
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
