"""Start a ``toxiproxy-server`` binary on a loopback port and always reap it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
from typing import IO, Any

from ..clock import real_monotonic, real_sleep
from ..errors import BackendError
from .client import ToxiproxyClient

START_DEADLINE = 15.0
STOP_DEADLINE = 5.0
"""Seconds a terminated server has to exit before it is killed."""
_ADDRESS_IN_USE = "address already in use"


def _free_loopback_port() -> int:
    # toxiproxy-server cannot report an API port it chose itself, so ask the OS for one
    # and hand it over; a lost race shows as "address already in use" and is retried.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # PR_SET_PDEATHSIG: the server gets SIGTERM if pytest itself is killed.
    _prctl(1, signal.SIGTERM)


_prctl: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


class SpawnedToxiproxy:
    """One ``toxiproxy-server`` process owned by this pytest process."""

    def __init__(self, binary: str, *, args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.args = args
        """Extra server flags, e.g. ``("-proxy-metrics",)``."""
        self.process: subprocess.Popen[bytes] | None = None
        self.client: ToxiproxyClient | None = None
        self._log: IO[bytes] | None = None
        self._death_told = False

    def start(self) -> ToxiproxyClient:
        for _ in range(3):
            port = _free_loopback_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
            try:
                self.process = subprocess.Popen(
                    [self.binary, "-host", "127.0.0.1", "-port", str(port), *self.args],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if _prctl is not None else None,
                    # Not in the terminal's process group: Ctrl-C interrupts pytest, which
                    # then tears down against a live server and stops it itself.
                    start_new_session=True,
                )
            except OSError as exc:
                self.stop()  # closes the log file
                raise BackendError(
                    f"cannot run toxiproxy-server at {self.binary!r} ({exc.strerror}); "
                    "point --toxiproxy-bin at the binary or use --toxiproxy=embedded."
                ) from exc
            self.client = ToxiproxyClient(f"http://127.0.0.1:{port}", timeout=1.0)
            if self._wait_until_ready():
                self.client.timeout = 5.0
                return self.client
            log = self._read_log()
            exited = self.process.poll() if self.process is not None else None
            self.stop()
            if _ADDRESS_IN_USE not in log:
                printed = log.strip()[-500:] or "(nothing)"
                if exited is not None:
                    raise BackendError(
                        f"toxiproxy-server {self.binary!r} exited with status {exited} before "
                        f"its API answered (is it toxiproxy-server?); it printed: {printed}"
                    )
                raise BackendError(
                    f"toxiproxy-server {self.binary!r} did not answer within "
                    f"{START_DEADLINE:.0f} s; it printed: {printed}"
                )
        raise BackendError("toxiproxy-server could not bind a free loopback port after 3 tries.")

    def _wait_until_ready(self) -> bool:
        assert self.process is not None and self.client is not None
        deadline = real_monotonic() + START_DEADLINE
        while real_monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(BackendError):
                self.client.version()
                return True
            # The server starts in real time, whatever the test did to time.sleep.
            real_sleep(0.02)
        return False

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Terminate and reap the server; safe to call twice."""
        process, self.process = self.process, None
        if self.client is not None:
            self.client.close()
        if process is not None and process.poll() is None:
            process.terminate()
            # Not process.wait(timeout=5): subprocess times it with time.monotonic, which a
            # test that froze time (freezegun) has stopped, and this may run inside it.
            deadline = real_monotonic() + STOP_DEADLINE
            while process.poll() is None and real_monotonic() < deadline:
                real_sleep(0.01)
            if process.poll() is None:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def death(self) -> str | None:
        """Why the server is gone, if it died on its own; None while it runs.  What it
        printed is said once, to the first test that meets its death; the later ones are
        sent to that one."""
        process = self.process
        if process is None or process.poll() is None:
            return None
        code = process.returncode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        if self._death_told:
            return (
                f"toxiproxy-server (pid {process.pid}) {how} earlier in this run (the first "
                "test it failed says what it printed); the tests after that cannot use it"
            )
        self._death_told = True
        printed = " ".join(self._read_log().split())[-300:] or "(nothing)"
        return f"toxiproxy-server (pid {process.pid}) {how}; it printed: {printed}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def find_binary(explicit: str | None) -> str | None:
    """The toxiproxy-server to spawn: the explicit path, else one on PATH."""
    import shutil

    if explicit:
        return explicit
    found = shutil.which("toxiproxy-server")
    return found if found and os.access(found, os.X_OK) else None
