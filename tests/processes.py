"""Waiting on conditions and processes, for the tests that interrupt or kill runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 20.0,
    what: str = "condition",
    interval: float = 0.02,
) -> Any:
    """Poll ``condition`` every ``interval`` seconds until it is truthy; fail after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return value


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended and awaiting its parent's wait, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def cpu_seconds(stat: str) -> float:
    """User and system CPU time, in seconds, that a ``/proc/.../stat`` file reports (of a
    process, ``/proc/PID/stat``, or of one thread, ``/proc/self/task/TID/stat``)."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
