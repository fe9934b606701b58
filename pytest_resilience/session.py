"""Session-wide state: the backend, the background loop, and a registry of live proxies.

Nothing here imports pytest; a script can drive the plugin's core with::

    with ResilienceSession(choice="spawn") as session:
        res = session.new_test("demo")
        redis = res.tcp_service("redis", upstream="127.0.0.1:6379")
        with redis.latency(300):
            ...
        res.close()
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from .errors import BackendError

if TYPE_CHECKING:
    from .faults.kinds import FaultKind
    from .resilience import Resilience
    from .runtime.loop import BackgroundLoop
    from .toxiproxy.backends import Backend
    from .toxiproxy.client import ToxiproxyClient


class ResilienceSession:
    """Owns what outlives one test; ``close()`` reaps all of it, also after a crash."""

    def __init__(
        self,
        choice: str = "auto",
        *,
        binary: str | None = None,
        listen_host: str = "127.0.0.1",
        reach_host: str = "127.0.0.1",
        seed: int = 0,
        worker: str = "main",
        choose_backend: Callable[[], Backend | str | None] | None = None,
    ) -> None:
        self.choice = choice
        self.binary = binary
        self.listen_host = listen_host
        self.reach_host = reach_host
        """Where Toxiproxy reaches the plugin's own listeners (the HTTP layer binds there)."""
        self.seed = seed
        self.worker = worker
        self._backend: Backend | None = None
        self._failure: BaseException | None = None
        self._loop: BackgroundLoop | None = None
        self._lock = threading.Lock()
        self._runs: dict[str, int] = {}
        self.live_proxies: set[str] = set()
        """Proxies created and not yet deleted: the safety net's work list."""
        self.fault_kinds: dict[str, FaultKind] = {}
        """Fault kinds plugins added, by name; services, markers and ``fault()`` accept them."""
        self.choose_backend = choose_backend
        """Asked first when the backend starts: a Backend to use (the session then owns and
        closes it), a choice such as ``"embedded"`` or a URL to start instead of
        :attr:`choice`, or None to keep :attr:`choice`."""

    @property
    def started(self) -> bool:
        return self._backend is not None

    @property
    def backend(self) -> Backend:
        """The Toxiproxy in use, started on first use."""
        with self._lock:
            if self._failure is not None:
                # One failed start is enough; every test that needs it gets the same sentence.
                raise self._failure
            if self._backend is None:
                from .toxiproxy.backends import start_backend

                try:
                    chosen = self.choose_backend() if self.choose_backend is not None else None
                    if isinstance(chosen, str):
                        self.choice = chosen
                    self._backend = (
                        start_backend(
                            self.choice,
                            binary=self.binary,
                            listen_host=self.listen_host,
                            seed=self.seed,
                            loop=self._get_loop,
                        )
                        if chosen is None or isinstance(chosen, str)
                        else chosen
                    )
                    if self._backend.kind == "remote":
                        reclaim_leftovers(self._backend.client)
                except Exception as exc:
                    self._failure = exc
                    raise
            return self._backend

    @property
    def loop(self) -> BackgroundLoop:
        """The event loop taps (and the embedded engine) run on."""
        with self._lock:
            return self._get_loop()

    def _get_loop(self) -> BackgroundLoop:
        if self._loop is None:
            from .runtime.loop import BackgroundLoop

            self._loop = BackgroundLoop()
        return self._loop

    def proxy_prefix(self, test_id: str) -> str:
        """Unique per test, xdist worker and rerun; stable across runs for the same test.

        The embedded engine seeds each connection's randomness from its proxy's name,
        so a name that does not change between runs lets ``--resilience-seed`` replay
        jitter and toxicity.  A server other processes may share also gets the pid.
        """
        from .seed import derive

        runs = self._runs[test_id] = self._runs.get(test_id, 0) + 1
        digest = f"{derive(0, test_id):016x}"[:10]
        rerun = f"-r{runs}" if runs > 1 else ""
        if self._backend is not None and self._backend.kind == "remote":
            # Other workers and processes may share this server; the host and pid let a
            # later run on this host reclaim what a killed run left (reclaim_leftovers).
            return f"{_remote_prefix()}-{os.getpid()}-{self.worker}-{digest}{rerun}"
        # A server of this process's own: the same name on any xdist worker.
        return f"pr-{digest}{rerun}"

    def new_test(self, test_id: str) -> Resilience:
        from .resilience import Resilience

        return Resilience(self, test_id)

    def close(self) -> None:
        """Delete leftover proxies, stop the backend (a spawned Toxiproxy, or the embedded
        engine, which needs the loop it runs on to close its listeners), stop the loop."""
        backend, self._backend = self._backend, None
        loop, self._loop = self._loop, None
        try:
            if backend is not None:
                for name in list(self.live_proxies):
                    with contextlib.suppress(Exception):
                        backend.client.delete_proxy(name)
                    self.live_proxies.discard(name)
        finally:
            try:
                if backend is not None:
                    backend.close()
            finally:
                if loop is not None:
                    loop.stop()

    def __enter__(self) -> ResilienceSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _remote_prefix() -> str:
    """``pr-`` and a tag of this host and boot: pids are comparable only under one tag."""
    import hashlib
    import socket
    from pathlib import Path

    boot = Path("/proc/sys/kernel/random/boot_id")
    where = socket.gethostname() + (boot.read_text().strip() if boot.exists() else "")
    return "pr-" + hashlib.sha256(where.encode()).hexdigest()[:8]


def reclaim_leftovers(client: ToxiproxyClient) -> list[str]:
    """Delete the proxies runs on this host left on a shared Toxiproxy when killed: those
    under this host's tag whose pid no longer runs.  Others' proxies are left alone."""
    prefix = _remote_prefix() + "-"
    gone: list[str] = []
    for name in client.proxies():
        pid = name[len(prefix) :].split("-", 1)[0]
        if not name.startswith(prefix) or not pid.isdigit() or _running(int(pid)):
            continue
        with contextlib.suppress(BackendError):  # another run reclaimed it first
            client.delete_proxy(name)
            gone.append(name)
    return gone


def _running(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (ended, its parent has not waited yet) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"
    return True
