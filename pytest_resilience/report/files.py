"""The ``--resilience-report`` file, and an SVG timeline beside it per failing test."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .summary import ReportEntry, json_report


def timelines_dir(report: Path) -> Path:
    """Where the SVG timelines go: ``<report stem>-timelines/`` next to the report."""
    return report.with_name(f"{report.stem}-timelines")


def svg_name(nodeid: str) -> str:
    """A file name for a test id: what is not a letter, digit, '.', '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", nodeid).strip("_")[:150] + ".svg"


def write_reports(
    report: Path, entries: list[ReportEntry], seed: int, backend: str | None
) -> dict[str, Path]:
    """Write the JSON report and a timeline per failing test; the timelines' paths by test."""
    from .svg import render_timeline

    report.parent.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, Path] = {}
    failing = [e for e in entries if e.failed]
    if failing:
        folder = timelines_dir(report)
        folder.mkdir(exist_ok=True)
        for entry in failing:
            path = folder / svg_name(entry.nodeid)
            path.write_text(render_timeline(entry.nodeid, entry.record), encoding="utf-8")
            pictures[entry.nodeid] = path
    document = json_report(entries, seed, backend)
    for test in document["tests"]:
        picture = pictures.get(test["nodeid"])
        test["timeline_svg"] = str(picture) if picture else None
    report.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return pictures
