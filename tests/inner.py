"""What inner pytest runs (``pytester``) leave for the outer test to read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The JSON an inner test wrote to ``path``; fails saying so if it wrote none."""
    assert path.exists(), f"the inner test did not write {path.name}"
    return json.loads(path.read_text())
