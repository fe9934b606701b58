"""The one clock of the plugin: every record's timestamp, and every schedule a test
sets (fault windows, ``load``'s calls, token buckets, Retry-After dates), read it.

Records are stamped with :meth:`Clock.now` (seconds, monotonic) by whatever thread
observed them: the tap and the HTTP layer on the loop, the marker timer, the test.
Waits that only pace the plugin's own machinery (draining a socket, the noise probe,
a server starting) keep to ``time`` itself: they are how long things take, not when
they happened.  Deadlines worked out on this clock (marker windows, settling) are
still waited for in real time, so for now it must run at real speed; virtual time
will make those waits its own.
"""

from __future__ import annotations

import time


class Clock:
    """Monotonic seconds for records and schedules, wall seconds for HTTP-dates."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        """Seconds since the epoch (for HTTP-dates such as Retry-After's)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (a schedule's wait, never a wait for a result)."""
        time.sleep(seconds)


CLOCK = Clock()
"""The clock every test reads."""
