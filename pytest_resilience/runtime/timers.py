"""Actions at instants of the plugin's clock: a test's fault windows, the HTTP layer's
delayed answers.  On real time one thread runs them when they are due; on virtual time
the thread that jumps the clock to an instant runs the actions due there, before any
participant waiting past it wakes (a :class:`~pytest_resilience.clock.TimerSource`)."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable

from ..clock import CLOCK, RealCondition, machinery_thread, timer_source

_LONGEST_WAIT = 3600.0


class Timer:
    """Runs callables at deadlines on the plugin's clock, on one thread, or on the thread
    that jumps virtual time to them (a :class:`~pytest_resilience.clock.TimerSource`)."""

    def __init__(self, on_error: Callable[[BaseException], None], name: str) -> None:
        self._queue: list[tuple[float, int, Callable[[], None], Callable[[], bool] | None]] = []
        self._seq = itertools.count()
        self._cond = RealCondition()
        self._stopped = False
        self._on_error = on_error
        self._name = name
        self._thread: threading.Thread | None = None
        self._firing = threading.Lock()
        timer_source(self)

    def at(
        self,
        deadline: float,
        action: Callable[[], None],
        aimed: Callable[[], bool] | None = None,
    ) -> None:
        """Run ``action`` at ``deadline``.  While ``aimed()`` is False (nobody waits for
        what it does any more), virtual time does not jump to it; it still runs when its
        instant comes or a jump passes it."""
        with self._cond:
            heapq.heappush(self._queue, (deadline, next(self._seq), action, aimed))
            if self._thread is None:
                self._thread = machinery_thread(self._run, self._name)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._queue or self._queue[0][0] > CLOCK.now()):
                    wait = self._queue[0][0] - CLOCK.now() if self._queue else None
                    # Capped: a far deadline must not overflow the wait and end the thread.
                    self._cond.wait(None if wait is None else min(wait, _LONGEST_WAIT))
                if self._stopped:
                    return
            self.fire_due()

    def next_deadline(self) -> float | None:
        # Without the lock: virtual time asks holding its own, and this timer's is held
        # while its thread starts.  heapq's C functions change the list whole under the GIL.
        if self._stopped or not self._queue:
            return None
        first = self._queue[0]
        if first[3] is None or first[3]():
            return first[0]  # the common case, at once: a test may set thousands
        aimed = (d for d, _, _, wanted in list(self._queue) if wanted is None or wanted())
        return min(aimed, default=None)

    def fire_due(self) -> None:
        """Run the actions due by now, here; one thread at a time, so that a jump of
        virtual time returns only once an action the timer thread began has finished.
        Then the timer thread works out its wait again: the clock may have jumped."""
        with self._firing:
            while True:
                with self._cond:
                    if self._stopped or not self._queue or self._queue[0][0] > CLOCK.now():
                        self._cond.notify()
                        return
                    action = heapq.heappop(self._queue)[2]
                try:
                    action()
                except BaseException as exc:
                    self._on_error(exc)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._queue.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
