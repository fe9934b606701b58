"""Hand a test's events to subscribers on a thread of their own, one at a time, in order.

Events are added on the test thread, the marker timer thread and the event loop
that runs the taps, the HTTP layer and the embedded engine.  Subscribers (the
``pytest_resilience_event`` hook) run on this dispatcher thread instead, so a slow
one cannot hold up traffic, and one that applies a fault cannot deadlock the loop.
What a subscriber raises is kept and re-raised by :meth:`EventDispatcher.flush`
on the caller's thread (the test's), never lost in a log.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from ..clock import machinery_thread
from ..errors import ResilienceError

Listener = Callable[[object], None]


class EventDispatcher:
    """Calls each listener with every event put, in the order put, on one thread."""

    def __init__(self, name: str = "pytest-resilience-events") -> None:
        self.listeners: list[Listener] = []
        self.errors: list[BaseException] = []
        self._queue: deque[object] = deque()
        self._cond = threading.Condition()
        self._put = 0
        self._done = 0
        self._stopped = False
        self._name = name
        self._thread: threading.Thread | None = None

    def put(self, event: object) -> None:
        """Queue ``event`` for every listener; never blocks, never raises what they raise."""
        with self._cond:
            if self._stopped or not self.listeners:
                return
            self._queue.append(event)
            self._put += 1
            if self._thread is None:
                self._thread = machinery_thread(self._run, self._name)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    # The test is over (close() already waited for what it could): events
                    # still queued would reach listeners during the next test, so drop them.
                    self._queue.clear()
                    return
                event = self._queue.popleft()
                listeners = list(self.listeners)
            for listener in listeners:
                try:
                    listener(event)
                except BaseException as exc:  # kept for the test thread; this thread goes on
                    with self._cond:
                        self.errors.append(exc)
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until listeners have seen every event put so far; re-raise the first error.

        Raises :class:`ResilienceError` if they are still busy after ``timeout`` seconds.
        """
        with self._cond:
            target = self._put
            if not self._cond.wait_for(lambda: self._done >= target, timeout):
                raise ResilienceError(
                    f"event listeners (pytest_resilience_event) were still busy after "
                    f"{timeout:g} s with {target - self._done} event(s) to go; a listener "
                    "must return quickly and must not wait for the test."
                )
            errors, self.errors = self.errors, []
        if errors:
            raise errors[0]

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, stop the thread, then re-raise the first error (see flush)."""
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(1.0)
