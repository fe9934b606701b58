"""One asyncio event loop on a daemon thread, serving sync and async tests alike."""

from __future__ import annotations

import asyncio
import contextlib
import select
import selectors
import sys
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..clock import machinery_thread, real_monotonic

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
    the plugin's would ever fire; moved by virtual time, its timers would fire early)."""

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(selector)
        _LOOPS.add(self)

    def time(self) -> float:
        return real_monotonic()

    def settle(self, within: float) -> bool:
        """Return once the loop has run every callback it had ready, those the I/O that is
        ready by now adds included (or ``within`` seconds have passed); whether it had any
        beyond the wake-up of this call."""
        done = threading.Event()
        looks = 0

        def check() -> None:
            nonlocal looks
            looks += 1
            # ``_ready`` is asyncio's queue of callbacks to run; this loop class is ours.
            if self._ready:  # type: ignore[attr-defined]
                self.call_soon(check)
            else:
                done.set()

        # Queued from another thread, ``check`` runs after the loop's next select(), behind
        # the callbacks of the I/O it found; each of those may queue more, run first.
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self.call_soon_threadsafe(check)
            done.wait(within)
        return looks > 2  # one look, and one more for the wake-up's own callback


_LOOPS: weakref.WeakSet[_RealTimeLoop] = weakref.WeakSet()
_SETTLE_WITHIN = 1.0
"""At most this long per loop: a loop held by a long callback is not waited for."""
_SETTLE_ROUNDS = 4
"""Rounds over the loops at most: what one loop hands another (the engine's loop to the
HTTP layer's) is seen in the next round."""


def settle_loops() -> None:
    """Return once each running loop of the plugin has handled what reached it by now: the
    exchanges and connections the code under test finished before the call are stamped.
    Virtual time calls it before each jump, so that no stamp lands after one.  Bytes held
    by another process (a spawned Toxiproxy) are out of its sight."""
    for _ in range(_SETTLE_ROUNDS):
        busy = [loop.settle(_SETTLE_WITHIN) for loop in list(_LOOPS) if loop.is_running()]
        if not any(busy):
            return


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop on real time whose timers are accurate to a fraction of a millisecond."""
    return _RealTimeLoop(_FineSelector() if sys.platform.startswith("linux") else None)


class BackgroundLoop:
    """Runs coroutines for the test thread; ``stop()`` cancels what is left and joins."""

    def __init__(self, name: str = "pytest-resilience-loop") -> None:
        self.loop = new_event_loop()
        self._thread = machinery_thread(self._run, name)
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
