"""One asyncio event loop on a daemon thread, serving sync and async tests alike."""

from __future__ import annotations

import asyncio
import select
import selectors
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..clock import real_monotonic

T = TypeVar("T")


class _FineSelector(selectors.DefaultSelector):
    """The default selector, but waking on time to well under a millisecond.

    epoll rounds every timeout up to a whole millisecond, so each timer (a latency
    toxic's delay, a marker window) fires up to 1 ms late.  Waiting on the epoll
    descriptor with ``select()``, which takes microseconds, then polling epoll
    without a timeout, keeps latency faults within a fraction of a millisecond.
    """

    def select(self, timeout: float | None = None) -> list[Any]:
        fileno = self.fileno() if hasattr(self, "fileno") else -1
        if timeout is not None and timeout > 0 and 0 <= fileno < 1024:
            select.select([fileno], [], [], timeout)
            timeout = 0
        return super().select(timeout)


class _RealTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose timers keep to real time, whatever a test has done to
    ``time.monotonic`` (asyncio reads it at each call: frozen by freezegun, no timer of
    the plugin's would ever fire)."""

    def time(self) -> float:
        return real_monotonic()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop on real time whose timers are accurate to a fraction of a millisecond."""
    return _RealTimeLoop(_FineSelector() if sys.platform.startswith("linux") else None)


class BackgroundLoop:
    """Runs coroutines for the test thread; ``stop()`` cancels what is left and joins."""

    def __init__(self, name: str = "pytest-resilience-loop") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 10.0) -> T:
        """Run ``coro`` on the loop and wait for its result in the calling thread."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("BackgroundLoop.run() called from the loop thread itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Cancel every task, stop the loop, join the thread and close the loop."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        try:
            self.run(cancel_all(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()
