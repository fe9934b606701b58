"""The one clock of the plugin: every record's timestamp, and every schedule a test
sets (fault windows, ``load``'s calls, token buckets, Retry-After dates), read it.

Records are stamped with :meth:`Clock.now` (seconds, monotonic) by whatever thread
observed them: the tap and the HTTP layer on the loop, the marker timer, the test.
Waits that only pace the plugin's own machinery (draining a socket, the noise probe,
a server starting) read :func:`real_monotonic`: they are how long things take, not when
they happened.  Deadlines worked out on this clock (marker windows, settling) are
still waited for in real time, so for now it must run at real speed; virtual time
will make those waits its own.

Both read the system's monotonic clock past what a test may patch: freezegun replaces
``time.monotonic`` (and every module global bound to it) with a frozen clock.  A test
that froze time for its own code would otherwise freeze the plugin's records (every wait
read as 0 ms) and the timers of its event loops.  ``time.clock_gettime`` is touched by
neither freezegun nor time-machine for these clocks: ``CLOCK_MONOTONIC`` on Linux,
``CLOCK_UPTIME_RAW`` on macOS (what ``time.monotonic`` reads there, so that the two can
be compared).  Schedules wait on a :class:`threading.Event`, not ``time.sleep``, which
tests replace to skip their waits.  Wall time (:meth:`Clock.wall`) is the test's own
``time.time()`` on purpose: an HTTP-date the service sends is read by the code under
test against its clock, frozen or moved with it.  The embedded engine, which stands for
a server of its own, reads the system's (:func:`real_wall`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


def _reader(clock_id: int | None, fallback: Callable[[], float]) -> Callable[[], float]:
    if clock_id is None or not hasattr(time, "clock_gettime"):
        return lambda: fallback()  # bound here, out of reach of a patch of the module
    return lambda: time.clock_gettime(clock_id)


_MONOTONIC = _reader(
    getattr(time, "CLOCK_UPTIME_RAW" if sys.platform == "darwin" else "CLOCK_MONOTONIC", None),
    time.monotonic,
)
_WALL = _reader(getattr(time, "CLOCK_REALTIME", None), time.time)
_PAUSE = threading.Event()
"""Never set: :func:`real_sleep` waits on it."""


def real_monotonic() -> float:
    """Monotonic seconds (``time.monotonic``'s clock), whatever a test did to that."""
    return _MONOTONIC()


def real_wall() -> float:
    """Seconds since the epoch by the system's clock, whatever a test did to ``time.time``."""
    return _WALL()


def real_sleep(seconds: float) -> None:
    """Wait ``seconds``, whatever a test did to ``time.sleep``."""
    _PAUSE.wait(seconds)


class Clock:
    """Monotonic seconds for records and schedules, wall seconds for HTTP-dates."""

    def now(self) -> float:
        return real_monotonic()

    def wall(self) -> float:
        """Seconds since the epoch (for HTTP-dates such as Retry-After's), as the code under
        test reads them."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (a schedule's wait, never a wait for a result)."""
        real_sleep(seconds)


CLOCK = Clock()
"""The clock every test reads."""
