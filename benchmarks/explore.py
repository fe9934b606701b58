"""explore's speed, side by side on the embedded engine and the real Toxiproxy, in one run:
schedules per second (each seeded bug's correct twin, which explores clean), and, for
each seeded bug (``tests/explore/cases.py``), the time to the first failing schedule and
to the shrunk one.  Each figure is the median over ``--seeds`` runs of a fresh pytest
process; the table ends with the ratio engine / Toxiproxy.

    python -m benchmarks.explore              # 3 seeds, about 5 minutes
    python -m benchmarks.explore --seeds 1    # quicker

Needs ``.bin/toxiproxy-server`` (``bash .ci/install-toxiproxy``) for the Toxiproxy column.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"engine": "--toxiproxy=embedded", "toxiproxy 2.12": "--toxiproxy=spawn"}


def _cases() -> Any:
    spec = importlib.util.spec_from_file_location("cases", ROOT / "tests/explore/cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def explored(files: dict[str, str], backend: str, seed: int) -> dict[str, Any]:
    """Run the project ``files`` in a fresh pytest process; its test's ``explored`` record."""
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            (Path(folder) / name).write_text(text)
        env = {k: v for k, v in os.environ.items() if k != "CI"}  # Hypothesis's ci profile off
        env["PATH"] = f"{ROOT / '.bin'}{os.pathsep}{env.get('PATH', '')}"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", backend,
             f"--resilience-seed={seed}", "--resilience-report=r.json"],
            cwd=folder, env=env, capture_output=True, check=False, timeout=900,
        )  # fmt: skip
        (test,) = json.loads((Path(folder) / "r.json").read_text())["tests"]
        return dict(test["explored"])


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(seeds: int) -> list[dict[str, Any]]:
    cases = _cases()
    rows = []
    for name, case in sorted(cases.CASES.items()):
        marker = f"@pytest.mark.explore({case.marker})\n"
        for column, backend in BACKENDS.items():
            rates, first, shrunk, schedules = [], [], [], []
            for seed in range(1, seeds + 1):
                print(f"{name} on {column}, seed {seed}", file=sys.stderr)
                clean = explored(cases.files(case, True, marker), backend, seed)
                rates.append(clean["examples"] / clean["seconds"])
                found = explored(cases.files(case, False, marker), backend, seed)
                if found["first_failure_s"] is not None:
                    first.append(found["first_failure_s"])
                    shrunk.append(found["seconds"])
                    schedules.append(" ".join(found["failing"] or ["(no fault)"]))
            rows.append(
                {
                    "bug": name,
                    "backend": column,
                    "schedules_per_s": median(rates),
                    "found": f"{len(first)}/{seeds}",
                    "first_failure_s": median(first),
                    "shrunk_s": median(shrunk),
                    "schedules": sorted(set(schedules)),
                }
            )
    return rows


def _cell(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| bug | backend | schedules/s (correct twin) | found | to first failure (s) "
        "| to shrunk schedule (s) | shrunk to |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['bug']} | {row['backend']} | {_cell(row['schedules_per_s'])} "
            f"| {row['found']} | {_cell(row['first_failure_s'])} | {_cell(row['shrunk_s'])} "
            f"| {'; '.join(f'`{s}`' for s in row['schedules'])} |"
        )
    lines += ["", "| bug | schedules/s, engine / Toxiproxy | to shrunk, engine / Toxiproxy |"]
    lines.append("|---|---|---|")
    by = {(r["bug"], r["backend"]): r for r in rows}
    for bug in sorted({r["bug"] for r in rows}):
        engine, real = by[(bug, "engine")], by[(bug, "toxiproxy 2.12")]
        rate = _ratio(engine["schedules_per_s"], real["schedules_per_s"])
        lines.append(f"| {bug} | {rate} | {_ratio(engine['shrunk_s'], real['shrunk_s'])} |")
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="runs per figure (default 3)")
    print(report(measure(parser.parse_args().seeds)))


if __name__ == "__main__":
    main()
