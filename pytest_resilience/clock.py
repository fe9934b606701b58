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
read as 0 ms) and the timers of its event loops.  ``time.clock_gettime(CLOCK_MONOTONIC)``
is touched by neither freezegun nor time-machine.  Wall time (:meth:`Clock.wall`) is the
test's own ``time.time()`` on purpose: an HTTP-date the service sends is read by the code
under test against its clock, frozen or moved with it.
"""

from __future__ import annotations

import time

_MONOTONIC = time.CLOCK_MONOTONIC


def real_monotonic() -> float:
    """Monotonic seconds, whatever a test has done to ``time.monotonic``."""
    return time.clock_gettime(_MONOTONIC)


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
        time.sleep(seconds)


CLOCK = Clock()
"""The clock every test reads."""
