"""The JSON Schema of the ``--resilience-report`` document, written from the record types.

``schema.json`` beside this module is what :func:`document_schema` returns, so users can
validate a report without importing the plugin; ``python -m pytest_resilience.report.schema``
rewrites it after a record type changed (a test fails until it is rewritten).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .jsontypes import schema_of
from .record import SCHEMA, TestRecord

PATH = Path(__file__).with_name("schema.json")
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def document_schema() -> dict[str, Any]:
    """The schema of the report: the run's seed and backend, then each test's record with
    its node id, outcome, the sections plugins added and the path of its SVG timeline."""
    record = schema_of(TestRecord)
    maybe_text: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    test = {
        "type": "object",
        "description": "A test that used the plugin: its outcome, then its record.",
        "properties": {
            "nodeid": {"type": "string"},
            "outcome": {"enum": list(OUTCOMES)},
            **record["properties"],
            "sections": schema_of(tuple[tuple[str, str], ...]),
            "timeline_svg": maybe_text,
        },
        "required": ["nodeid", "outcome", *record["required"], "sections", "timeline_svg"],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pytest-resilience report (--resilience-report)",
        "type": "object",
        "properties": {
            "schema": {"const": SCHEMA},
            "seed": {"type": "integer"},
            "replay": {"type": "string"},
            "backend": maybe_text,
            "tests": {"type": "array", "items": test},
        },
        "required": ["schema", "seed", "replay", "backend", "tests"],
        "additionalProperties": False,
    }


def text() -> str:
    return json.dumps(document_schema(), indent=2) + "\n"


if __name__ == "__main__":
    PATH.write_text(text(), encoding="utf-8")
    print(f"wrote {PATH}")
