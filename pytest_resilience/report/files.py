"""The ``--resilience-report`` file, and an SVG timeline beside it per failing test."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path

from .summary import ReportEntry, json_report


def timelines_dir(report: Path) -> Path:
    """Where the SVG timelines go: ``<report stem>-timelines/`` next to the report."""
    return report.with_name(f"{report.stem}-timelines")


def svg_name(nodeid: str) -> str:
    """A file name for a test id: what is not a letter, digit, '.', '-' becomes '_', and a
    short hash of the id keeps ids that read alike (``t[a/b]``, ``t[a_b]``) apart."""
    digest = hashlib.sha1(nodeid.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9.-]+", "_", nodeid).strip("_")[:140] + f"-{digest}.svg"


def _unrenderable(nodeid: str, exc: Exception) -> str:
    text = html.escape(f"{nodeid}: the timeline could not be drawn ({exc!r})")
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="900" height="40">'
        f'<text x="10" y="24" font-family="sans-serif" font-size="12">{text}</text></svg>\n'
    )


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
            try:
                picture = render_timeline(entry.nodeid, entry.record)
            except Exception as exc:  # one bad picture must not cost the report
                picture = _unrenderable(entry.nodeid, exc)
            path.write_text(picture, encoding="utf-8")
            pictures[entry.nodeid] = path
    document = json_report(entries, seed, backend)
    for test in document["tests"]:
        drawn = pictures.get(test["nodeid"])
        test["timeline_svg"] = str(drawn) if drawn else None
    report.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return pictures
