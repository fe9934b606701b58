"""Real servers for the examples: Debian's redis-server and PostgreSQL, on private ports.

A fixture finds the binary, starts it on a loopback port the OS chose, waits until it
answers, and stops it (and reaps it) afterwards. A missing binary skips the example
with the command that installs it; CI sets ``RESILIENCE_REQUIRE_SERVERS`` so that a
missing server fails the run instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest


def find_binary(name: str, package: str, *, extra: Sequence[str] = ()) -> str:
    """The path of ``name`` (on PATH or in one of the ``extra`` globs), or skip/fail saying
    how to install it."""
    found = shutil.which(name)
    for pattern in extra:
        found = found or next(
            iter(sorted(glob.glob(os.path.join(pattern, name)), reverse=True)), None
        )
    if found:
        return found
    reason = f"{name} not found: install Debian's {package} (bash .ci/install does)"
    if os.environ.get("RESILIENCE_REQUIRE_SERVERS"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port the OS chose, for a server that cannot be told to pick its own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)  # poll interval
    return value


def accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
    except OSError:
        return False
    return True


@contextmanager
def running(
    command: Sequence[str], ready: Callable[[], Any], what: str, **popen: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` running until the block ends; its output (kept in a file, so a chatty
    server never blocks on a full pipe) is shown if it exits before it is ready."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            try:
                wait_until(lambda: process.poll() is not None or ready(), 20.0, f"{what} to start")
            except TimeoutError:
                process.kill()
                raise
            if process.poll() is not None:
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"{what} exited with {process.returncode}:\n{output}")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
