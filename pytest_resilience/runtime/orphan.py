"""An xdist worker whose controller died ends at once, taking its servers with it.

Workers learn of a killed controller only when their channel breaks, which took
seconds; meanwhile they and their Toxiproxy servers lived on.  A thread watches
the parent pid: once the worker is reparented, it terminates itself (a spawned
server follows by its parent-death signal; a shared server's proxies are
reclaimed by the next run).
"""

from __future__ import annotations

import os
import signal
import threading

from ..clock import machinery_thread

POLL = 0.1
"""Seconds between looks at the parent pid."""


class OrphanWatch:
    def __init__(self) -> None:
        self._parent = os.getppid()
        self._stop = threading.Event()
        self._thread = machinery_thread(self._run, "pytest-resilience-orphan-watch")

    def start(self) -> OrphanWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            if os.getppid() != self._parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
