"""The one clock of the plugin: every record's timestamp, and every schedule a test
sets (fault windows, ``load``'s calls, token buckets, Retry-After dates), read it.

Records are stamped with :meth:`Clock.now` (seconds, monotonic) by whatever thread
observed them: the tap and the HTTP layer on the loop, the marker timer, the test.
It is real time plus :attr:`Clock.offset`, which only virtual time moves
(:mod:`~pytest_resilience.runtime.virtual`): it jumps when every thread of the code
under test waits.  Waits that only pace the plugin's own machinery (draining a socket,
the noise probe, a server starting) read :func:`real_monotonic`: they are how long
things take, not when they happened.  The plugin's threads are made by
:func:`machinery_thread`, so that virtual time tells them from the code's; its timers
(marker windows) register with :func:`timer_source`, so that a jump fires them.

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
import weakref
from collections.abc import Callable
from typing import Protocol


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


class RealCondition(threading.Condition):
    """A condition of the plugin's machinery: ``threading.Condition``'s methods as they were
    before virtual time patched any (this module is imported first), so that its waits are
    real and its notices never reach virtual time's scheduler, whose lock they could meet."""

    wait = threading.Condition.wait
    notify = threading.Condition.notify
    notify_all = threading.Condition.notify_all


_MACHINERY: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def machinery_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """A daemon thread of the plugin's own (a loop, a timer, a probe), not yet started: on
    real time when the code under test is on virtual time, and never waited for by it."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    _MACHINERY.add(thread)
    return thread


def is_machinery(thread: threading.Thread | None = None) -> bool:
    """Whether ``thread`` (the calling one by default) is the plugin's own."""
    return (thread or threading.current_thread()) in _MACHINERY


class TimerSource(Protocol):
    """Actions the plugin runs at instants of the clock (a test's fault windows)."""

    def next_deadline(self) -> float | None:
        """The earliest instant an action waits for; None when none does."""

    def fire_due(self) -> None:
        """Run the actions due by now, in the calling thread, before returning."""


_TIMERS: weakref.WeakSet[TimerSource] = weakref.WeakSet()


def timer_source(source: TimerSource) -> None:
    """Register ``source``, so that a jump of virtual time fires its actions on time."""
    _TIMERS.add(source)


def timer_sources() -> list[TimerSource]:
    return list(_TIMERS)


class _Waits(Protocol):
    suspended: int

    def sleep(self, seconds: float) -> None: ...

    def poke(self) -> None: ...


class Clock:
    """Monotonic seconds for records and schedules, wall seconds for HTTP-dates."""

    offset = 0.0
    """Seconds virtual time has jumped over in this test; it only grows until the test
    ends (:meth:`rewind`)."""
    jumps: list[tuple[float, float]]
    """This test's jumps: (the instant it left, seconds), in order."""
    transit = 0
    """Faults applied now that hold bytes in transit (latency, bandwidth, slicer, chaos):
    an event loop on virtual time waits in real time meanwhile, since it cannot tell an
    answer delayed on its way from one that is complete."""
    virtual: _Waits | None = None
    """The scheduler of the block on virtual time, while one is open."""
    _holds = 0
    _holding = threading.Lock()

    def __init__(self) -> None:
        self.jumps = []

    def now(self) -> float:
        return real_monotonic() + self.offset

    def hold(self) -> None:
        """The machinery began work that the code under test may wait on in real time (an
        answer in the making): virtual time does not jump until :meth:`release`."""
        with self._holding:
            self._holds += 1

    def release(self) -> None:
        with self._holding:
            self._holds -= 1
            idle = self._holds == 0
        if idle:
            self.poke()

    def poke(self) -> None:
        """The machinery's state changed so that a jump held back may be due: the block
        on virtual time, if one is open, looks again.  Never jumps here (the caller may
        be a loop a jump settles)."""
        scheduler = self.virtual
        if scheduler is not None:
            scheduler.poke()

    @property
    def held(self) -> bool:
        """Whether the machinery has work in hand (:meth:`hold`)."""
        return self._holds > 0

    def in_transit(self, change: int) -> None:
        """A fault that holds bytes in transit was applied (+1) or healed (-1)."""
        with self._holding:
            self.transit += change

    def jump(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward (virtual time's scheduler, at a jump)."""
        self.jumps.append((self.now(), seconds))
        self.offset += seconds

    def rewind(self) -> None:
        """Drop the offset once a test is over (and no block is on virtual time): the next
        test's records are on ``time.monotonic()``'s time again."""
        if self.virtual is None:
            self.offset = 0.0
            self.jumps.clear()

    def wall(self) -> float:
        """Seconds since the epoch (for HTTP-dates such as Retry-After's), as the code under
        test reads them."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (a schedule's wait, never a wait for a result):
        a virtual wait on virtual time, unless the plugin's own thread waits, or the
        block is set aside (:func:`~.runtime.virtual.outside_the_block`)."""
        scheduler = self.virtual
        if scheduler is None or scheduler.suspended or is_machinery() or seconds <= 0:
            real_sleep(seconds)
        else:
            scheduler.sleep(seconds)


CLOCK = Clock()
"""The clock every test reads."""
