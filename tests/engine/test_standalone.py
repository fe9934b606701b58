"""The standalone engine (``python -m pytest_resilience.engine``): serving, signals, seeds, bad arguments."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from processes import cpu_seconds, wait_for

from .support import (
    API_TIMEOUT,
    IO_TIMEOUT,
    EchoUpstream,
    create_proxy,
    echo_round_trip,
    refuses,
)


def start_standalone(
    *args: str, preexec_fn: Callable[[], object] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_resilience.engine", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=preexec_fn,
    )


def read_line_with(proc: subprocess.Popen[bytes], text: bytes, timeout: float) -> bytes:
    """The first stdout line containing ``text``; fails at EOF or after ``timeout``."""
    __tracebackhide__ = True
    assert proc.stdout is not None
    buffered = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            for line in buffered.splitlines(keepends=True):
                if line.endswith(b"\n") and text in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                pytest.fail(f"no line with {text!r} within {timeout} s; got {buffered!r}")
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                _, stderr = proc.communicate(timeout=IO_TIMEOUT)
                pytest.fail(
                    f"stdout ended (exit {proc.returncode}) before {text!r}; got {buffered!r}, "
                    f"and on stderr {stderr!r}"
                )
            buffered += chunk


def banner_port(line: bytes) -> int:
    """The API's port in the engine's banner ("listening on http://127.0.0.1:PORT, ...")."""
    match = re.search(rb"listening on http://127\.0\.0\.1:(\d+),", line)
    assert match, line
    return int(match[1])


@contextlib.contextmanager
def standalone(
    *args: str, preexec_fn: Callable[[], object] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_standalone(*args, preexec_fn=preexec_fn)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=IO_TIMEOUT)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_standalone_engine_serves_until_signalled_then_exits_0(
    upstream: EchoUpstream, signum: signal.Signals
) -> None:
    # Port 0: the OS chooses (a port found free and released may be taken by another
    # worker's client before the engine binds it, and the engine then exits 1).
    with standalone("--listen", "127.0.0.1:0", "--seed", "5") as proc:
        line = read_line_with(proc, b"listening on", timeout=20)
        port = banner_port(line)
        url = f"http://127.0.0.1:{port}"
        assert line.rstrip().endswith(b", seed 5")

        version = requests.get(f"{url}/version", timeout=API_TIMEOUT)
        assert version.status_code == 200
        assert version.json()["version"].startswith("2.")
        proxy_port = create_proxy(url, "standalone", upstream.address)
        assert echo_round_trip(proxy_port, b"through the standalone engine") == (
            b"through the standalone engine"
        )

        proc.send_signal(signum)
        assert proc.wait(timeout=5) == 0
    assert refuses(port)
    assert refuses(proxy_port)


def test_standalone_engine_without_a_seed_draws_a_new_one_each_run_and_prints_it() -> None:
    """Toxiproxy's toxicity and jitter differ from run to run; the engine's default seed was
    0, so every standalone run drew the same.  Now each run draws one and says which."""
    seeds = []
    for _ in range(2):
        with standalone("--listen", "127.0.0.1:0") as proc:
            line = read_line_with(proc, b"listening on", timeout=20)
            seeds.append(line.rstrip().rpartition(b", seed ")[2])
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0
    assert all(seed.isdigit() for seed in seeds), seeds
    assert seeds[0] != seeds[1]


def test_standalone_engine_with_a_nonsense_listen_exits_with_the_fix() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_resilience.engine", "--listen", "nonsense"],
        capture_output=True,
        timeout=20,
    )

    assert proc.returncode != 0
    stderr = proc.stderr.decode()
    assert "--listen='nonsense' is not host:port" in stderr
    assert "--listen 127.0.0.1:8474" in stderr
    assert b"listening on" not in proc.stdout


def test_standalone_engine_on_a_busy_port_exits_1_naming_the_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_resilience.engine", "--listen", address],
            capture_output=True,
            timeout=20,
        )

    assert proc.returncode == 1
    assert f"cannot listen on {address}" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_standalone_engine_out_of_fds_rests_then_serves_again() -> None:
    """Out of file descriptors, accept fails (EMFILE) while connections stay queued: the
    listener would be reported readable on every loop turn, a spin.  The API rests for
    ``ACCEPT_RETRY`` s instead, as asyncio's servers do, and serves once fds are free.
    The engine runs with a limit of 64 fds; 80 clients connect, send a byte and hold on."""
    window = 1.0
    """Seconds over which the engine's CPU is read while it is out of fds."""

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with (
        standalone("--listen", "127.0.0.1:0", preexec_fn=limit_fds) as proc,
        contextlib.ExitStack() as held,
    ):
        port = banner_port(read_line_with(proc, b"listening on", timeout=20))
        for _ in range(80):
            client = held.enter_context(
                socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            )
            # A first byte, so that the API's listener reports it at once (DEFER_ACCEPT).
            client.sendall(b"G")
        fds = f"/proc/{proc.pid}/fd"
        wait_for(
            lambda: len(os.listdir(fds)) >= 60, timeout=IO_TIMEOUT, what="the engine out of fds"
        )
        before = cpu_seconds(f"/proc/{proc.pid}/stat")
        time.sleep(window)  # a window to measure, not a wait for a condition
        busy = (cpu_seconds(f"/proc/{proc.pid}/stat") - before) / window

        assert busy < 0.05, f"the engine used {busy:.0%} of a CPU while out of fds"
        held.close()  # the clients go, and their fds in the engine with them
        version = requests.get(f"http://127.0.0.1:{port}/version", timeout=IO_TIMEOUT)
        assert version.status_code == 200
