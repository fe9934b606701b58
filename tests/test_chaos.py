"""Chaos on the plugin itself: a run interrupted or killed, on every backend, leaves nothing.

Each case starts pytest as a terminal does (a process group of its own) on a test
that holds a proxy open, then interrupts it one way: Ctrl-C to the whole group,
SIGTERM or SIGKILL to pytest, SIGKILL to the xdist controller.  Afterwards no
process of the run is left, the proxy's port is closed, on a shared Toxiproxy its
proxies are gone (deleted by the run's teardown, or reclaimed by the next run on
this host), and no temporary file of the run is left (:func:`leftovers`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from processes import alive, wait_for

from pytest_resilience.toxiproxy.backends import Backend

HOLDING_TEST = """
import os, pathlib, threading, pytest

@pytest.mark.parametrize("n", [0, 1])
def test_holds_a_proxy(resilience, toxiproxy, n):
    svc = resilience.tcp_service("x", upstream="127.0.0.1:9")
    server = toxiproxy.describe().rpartition("pid ")[2].rstrip(")")
    note = pathlib.Path(f"writing-{os.getpid()}-{n}")
    note.write_text(f"{server if server.isdigit() else ''}|{svc.proxy}|{svc.port}")
    note.rename(f"ready-{os.getpid()}-{n}")  # whole when it appears
    threading.Event().wait(60)  # until the run is interrupted
"""

SPAWN = pytest.mark.skipif(
    not shutil.which("toxiproxy-server"), reason="needs toxiproxy-server on PATH"
)


def leftovers(tmp: Path) -> list[Path]:
    """What a run whose temporary directory (``TMPDIR`` and pytest's temporary root) was
    ``tmp`` left there, beside what pytest keeps by design: its base temporary directory
    ``pytest-of-<user>/pytest-<n>`` (the last three are kept for inspection; xdist makes
    one for its workers), with its ``.lock``, which a later run reclaims after a kill -9.
    The spawned server's log is an unlinked temporary file: it never has a name."""
    kept = [p for p in tmp.rglob("*") if p.relative_to(tmp).parts[0].startswith("pytest-of-")]
    return [p for p in tmp.rglob("*") if p not in kept] + [
        p for p in kept if p.is_file() and not p.is_symlink() and p.name != ".lock"
    ]


def refused(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("backend", ["embedded", pytest.param("spawn", marks=SPAWN), "remote"])
@pytest.mark.parametrize("action", ["ctrl-c", "sigterm", "sigkill", "sigkill-xdist-controller"])
def test_an_interrupted_run_leaves_nothing_behind(
    pytester: pytest.Pytester, toxiproxy: Backend, backend: str, action: str
) -> None:
    choice = toxiproxy.client.url if backend == "remote" else backend
    workers = ["-n", "2"] if action == "sigkill-xdist-controller" else ["-x"]
    pytester.makepyfile(HOLDING_TEST)
    tmp = pytester.mkdir("tmp")  # the run's TMPDIR, to see what it leaves there
    out = pytester.path / "out.txt"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                f"--toxiproxy={choice}",
                *workers,
            ],
            cwd=pytester.path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TMPDIR": str(tmp), "PYTEST_DEBUG_TEMPROOT": str(tmp)},
            # A terminal's Ctrl-C reaches a run whose SIGINT is live; a run started from a
            # background job inherits it ignored, and would sit out the signal.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    expected = 2 if workers[0] == "-n" else 1
    try:
        ready = wait_for(
            lambda: len(files := sorted(pytester.path.glob("ready-*"))) >= expected and files,
            what="the run to hold its proxies",
        )
        if action == "ctrl-c":
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, signal.SIGTERM if action == "sigterm" else signal.SIGKILL)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    log = out.read_text()
    if action == "ctrl-c":
        assert code == pytest.ExitCode.INTERRUPTED, log
        assert "Traceback" not in log, log

    held = [f.read_text().split("|") for f in ready]  # server pid (or ''), proxy, port
    pids = {int(f.name.split("-")[1]) for f in ready} | {process.pid}
    pids |= {int(server) for server, _, _ in held if server}
    for pid in pids:
        wait_for(lambda pid=pid: not alive(pid), timeout=5, what=f"process {pid} to end")
    assert not leftovers(tmp), (leftovers(tmp), log)
    if backend != "remote":
        for _, _, port in held:
            wait_for(lambda port=port: refused(int(port)), timeout=5, what=f"port {port} to close")
        return
    names = {name for _, name, _ in held}
    if action != "ctrl-c":
        # Killed before its teardown: the next run on this host reclaims its proxies.
        for f in ready:
            f.unlink()
        pytester.makepyfile("def test_next(resilience):\n    pass\n")
        pytester.runpytest("-p", "no:cacheprovider", f"--toxiproxy={choice}").assert_outcomes(
            passed=1
        )
    assert not names & set(toxiproxy.client.proxies()), log
