"""Virtual time for the code under test: its waits end at once and move one clock forward.

The clock is real time plus an offset (:data:`~pytest_resilience.clock.CLOCK`'s), so real
work (I/O, CPU) takes its real time in the record.  The offset jumps only when every
**participant** waits: the test's thread, the threads it (or another participant) starts
during the block, and any other thread at its first ``time.sleep``.  The plugin's own
threads (:func:`~pytest_resilience.clock.machinery_thread`) are never participants.

- ``time.sleep`` on a participant is a virtual wait with a deadline; ``Thread.join`` of
  a participant is a virtual wait that ends when that thread's ``run`` returns.
- When the last running participant starts to wait, the scheduler lets the plugin's
  loops see and stamp what the code did before it (:func:`~.loop.settle_loops`), jumps
  to the earliest deadline among the waits and the plugin's timers (marker windows),
  fires those timers, then wakes the waiters due.  Timers fire first, so a fault window
  has closed before the client that waits for its end wakes.
- A participant blocked where the scheduler cannot see (a socket read, a lock, a queue)
  counts as running: no jump happens meanwhile and the others' waits end in real time.
  Slower, never wrong.  :class:`VirtualClock` sums that real time per running thread so
  that the summary can name the thread that held the jumps back.
- Reads (``time.monotonic``, ``perf_counter``, ``time`` and their ``_ns`` forms) return
  real time plus the offset on every thread.  The plugin's loops read the real clock
  (:class:`~.loop._RealTimeLoop`), its machinery :func:`~pytest_resilience.clock.real_monotonic`.

What is patched is the ``time`` module's attributes and ``threading.Thread.start`` and
``join``, for the block only: references bound before it (``from time import sleep``)
and waits in C (lock and socket timeouts) keep real time.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..clock import CLOCK, is_machinery, real_monotonic, real_wall, timer_sources
from ..errors import ConfigurationError
from .loop import settle_loops

_READS = ("monotonic", "perf_counter")
"""The clocks a block reads as real time plus the offset; the wall clock is moved by
time-machine, which reaches ``datetime.now`` and ``time.time`` in C."""


@dataclass
class VirtualClock:
    """What one block on virtual time did with the clock (read it after the block or
    during it): the virtual seconds it spanned, the real seconds they took, and the real
    seconds that waits ended in because a participant kept running."""

    started_virtual: float
    started_real: float
    ended_virtual: float | None = None
    ended_real: float | None = None
    jumps: int = 0
    held: dict[str, float] = field(default_factory=dict)
    """Per thread name: real seconds that waits ended in while that thread ran."""

    @property
    def virtual(self) -> float:
        """Seconds on the virtual clock from the block's start (to its end, once ended)."""
        end = CLOCK.now() if self.ended_virtual is None else self.ended_virtual
        return end - self.started_virtual

    @property
    def real(self) -> float:
        """Real seconds from the block's start (to its end, once ended)."""
        end = real_monotonic() if self.ended_real is None else self.ended_real
        return end - self.started_real

    @property
    def skipped(self) -> float:
        """Virtual seconds that took no real time: the waits the clock jumped over."""
        return self.virtual - self.real


class _Waiter:
    __slots__ = ("deadline", "ended", "since", "woken")

    def __init__(self, deadline: float | None, ended: Callable[[], bool] | None) -> None:
        self.deadline = deadline
        self.ended = ended
        self.since = real_monotonic()
        self.woken = False


class Scheduler:
    """The participants of one block and the jumps of the clock between them."""

    def __init__(self, first: threading.Thread, wall: Any = None) -> None:
        self._wall = wall
        """time-machine's traveller, shifted with the offset; None: the wall clock stays."""
        self._cond = threading.Condition(threading.Lock())
        self._running: set[threading.Thread] = {first}
        self._waiting: dict[threading.Thread, _Waiter] = {}
        self._adopted: set[threading.Thread] = set()
        self._advancing = False
        self._last_jump = real_monotonic()
        self.clock = VirtualClock(CLOCK.now(), real_monotonic())

    # -- participants ------------------------------------------------------------------

    def knows(self, thread: threading.Thread) -> bool:
        with self._cond:
            return self._known(thread)

    def _known(self, thread: threading.Thread) -> bool:
        return thread in self._running or thread in self._waiting

    def adopted(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` was started as a participant and its ``run`` has not returned."""
        with self._cond:
            return thread in self._adopted

    def adopt(self, thread: threading.Thread) -> None:
        """``thread``, about to start, is a participant until its ``run`` returns."""
        run = thread.run

        def participating() -> None:
            try:
                run()
            finally:
                self.leave(thread)

        thread.run = participating  # type: ignore[method-assign]
        with self._cond:
            self._running.add(thread)
            self._adopted.add(thread)

    def leave(self, thread: threading.Thread) -> None:
        with self._cond:
            self._running.discard(thread)
            self._waiting.pop(thread, None)
            self._adopted.discard(thread)
            for other, waiter in self._waiting.items():
                if not waiter.woken and waiter.ended is not None and waiter.ended():
                    waiter.woken = True
                    self._running.add(other)
            self._cond.notify_all()
            self._advance()

    # -- waits -------------------------------------------------------------------------

    def wait(self, deadline: float | None, ended: Callable[[], bool] | None = None) -> None:
        """Wait, as the calling participant, until ``deadline`` on the clock or until
        ``ended()`` (checked when a participant leaves), whichever comes first."""
        me = threading.current_thread()
        with self._cond:
            if ended is not None and ended():
                return
            waiter = _Waiter(deadline, ended)
            self._running.discard(me)
            self._waiting[me] = waiter
            try:
                self._advance()
                while not waiter.woken:
                    left = None if deadline is None else deadline - CLOCK.now()
                    if left is not None and left <= 0:  # it came in real time
                        self._held_back(waiter)
                        break
                    self._cond.wait(left)
            finally:
                self._waiting.pop(me, None)
                self._running.add(me)

    def _held_back(self, waiter: _Waiter) -> None:
        held = real_monotonic() - max(waiter.since, self._last_jump)
        for thread in self._running:
            self.clock.held[thread.name] = self.clock.held.get(thread.name, 0.0) + held

    # -- jumps -------------------------------------------------------------------------

    def _next_deadline(self) -> float | None:
        deadlines = [w.deadline for w in self._waiting.values() if w.deadline is not None]
        deadlines += [d for d in (s.next_deadline() for s in timer_sources()) if d is not None]
        return min(deadlines, default=None)

    def _advance(self) -> None:
        """With the lock held: while every participant waits, jump to the next deadline,
        fire the timers due, wake the waiters due."""
        if self._advancing:
            return  # the thread already advancing looks again before it stops
        self._advancing = True
        try:
            while not self._still_running():
                target = self._next_deadline()
                if target is None:
                    return  # every participant waits for another: nothing to jump to
                if target > CLOCK.now():
                    self._unlocked(settle_loops)
                    if self._still_running() or self._next_deadline() != target:
                        continue
                    now = CLOCK.now()
                    if target > now:
                        CLOCK.offset += target - now
                        if self._wall is not None:
                            self._wall.shift(target - now)
                        self.clock.jumps += 1
                        self._last_jump = real_monotonic()
                self._unlocked(_fire_timers)
                now = CLOCK.now()
                for thread, waiter in self._waiting.items():
                    if not waiter.woken and waiter.deadline is not None and waiter.deadline <= now:
                        waiter.woken = True
                        self._running.add(thread)
                self._cond.notify_all()
        finally:
            self._advancing = False

    def _still_running(self) -> bool:
        """Whether a participant runs; one whose thread ended without leaving (it joined
        at its first wait, with no ``run`` of ours around it) is dropped."""
        self._running = {t for t in self._running if t.is_alive()}
        return bool(self._running)

    def _unlocked(self, action: Callable[[], object]) -> None:
        self._cond.release()
        try:
            action()
        finally:
            self._cond.acquire()

    def wake_all(self) -> None:
        """The block ended: whoever still waits goes on in real time."""
        with self._cond:
            for waiter in self._waiting.values():
                waiter.woken = True
            self._cond.notify_all()


def _fire_timers() -> None:
    for source in timer_sources():
        source.fire_due()


# -- the patches, for one block at a time ----------------------------------------------

_ACTIVE: Scheduler | None = None
_GUARD = threading.Lock()


def _virtual_sleep(real: Callable[[float], None]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        scheduler = _ACTIVE
        finite = isinstance(seconds, int | float) and math.isfinite(seconds)
        if scheduler is None or is_machinery() or not finite or seconds <= 0:
            return real(seconds)  # a yield, a machinery wait, or the error time.sleep gives
        scheduler.wait(CLOCK.now() + seconds)
        return None

    return sleep


def _virtual_start(real: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    def start(thread: threading.Thread) -> None:
        scheduler = _ACTIVE
        if (
            scheduler is not None
            and not is_machinery(thread)
            and scheduler.knows(threading.current_thread())
        ):
            scheduler.adopt(thread)
        real(thread)

    return start


def _virtual_join(
    real: Callable[[threading.Thread, float | None], None],
) -> Callable[[threading.Thread, float | None], None]:
    def join(thread: threading.Thread, timeout: float | None = None) -> None:
        scheduler = _ACTIVE
        me = threading.current_thread()
        if (
            scheduler is None
            or is_machinery(me)
            or not scheduler.adopted(thread)
            or not scheduler.knows(me)  # not a participant: this wait holds nothing back
        ):
            return real(thread, timeout)
        deadline = None if timeout is None else CLOCK.now() + max(float(timeout), 0.0)
        scheduler.wait(deadline, lambda: thread not in scheduler._adopted)
        if not scheduler.adopted(thread):
            real(thread, None)  # its run returned: what is left of the thread is short
        return None

    return join


_BOUND_SKIPPED = frozenset(sys.stdlib_module_names) | {
    "pytest_resilience",
    "_pytest",
    "pytest",
    "pluggy",
    "xdist",
    "execnet",
    "hypothesis",
    "time_machine",
    "freezegun",
}
"""Packages whose bound clocks stay real: the standard library's (``threading``, ``queue``
and ``subprocess`` time real waits with them), the plugin's, pytest's (test durations),
Hypothesis's (its deadlines) and the time libraries'."""


class _Patches:
    """What a block changes, and undoes: the ``time`` module's clocks and ``sleep``, the
    module globals bound to them (``from time import monotonic``), ``Thread.start`` and
    ``join``, and the wall clock (``time.time``, ``datetime.now``: time-machine's travel,
    shifted at each jump)."""

    def __init__(self) -> None:
        self.replace: dict[str, tuple[object, object]] = {}
        for name in _READS:
            for attr, make in ((name, _offset), (f"{name}_ns", _offset_ns)):
                real = getattr(time, attr)
                self.replace[attr] = (real, make(real))
        self.replace["sleep"] = (time.sleep, _virtual_sleep(time.sleep))
        self._thread = (threading.Thread.start, threading.Thread.join)
        self._bound: list[tuple[ModuleType, str, object]] = []
        self._modules: set[str] = set()
        self._travel: Any = None
        self.wall: Any = None
        """time-machine's traveller: :meth:`Scheduler._advance` shifts it at each jump."""

    def apply(self) -> None:
        import time_machine

        travel = time_machine.travel(real_wall(), tick=True)
        try:
            self.wall = travel.start()
        except RuntimeError as exc:  # freezegun's freeze_time is on
            raise ConfigurationError(
                f"virtual time cannot start inside freezegun's freeze_time ({exc}); end the "
                "frozen block first, or use time-machine to move the wall clock."
            ) from None
        self._travel = travel
        time.time()  # the first read fixes where the travel ticks from; no two threads race it
        for attr, (_, replacement) in self.replace.items():
            setattr(time, attr, replacement)
        start, join = self._thread
        setattr(threading.Thread, "start", _virtual_start(start))  # noqa: B010
        setattr(threading.Thread, "join", _virtual_join(join))  # noqa: B010
        swap = {id(real): replacement for real, replacement in self.replace.values()}
        self._modules = set(sys.modules)
        self._bound = [
            (module, attr, real) for module, attr, real in _bound(list(sys.modules), swap)
        ]
        for module, attr, _ in self._bound:
            setattr(module, attr, swap[id(getattr(module, attr))])

    def undo(self) -> None:
        for module, attr, real in self._bound:
            setattr(module, attr, real)
        # Modules imported during the block bound the replacements: give them the real ones.
        back = {id(replacement): real for real, replacement in self.replace.values()}
        for module, attr, _ in _bound([n for n in sys.modules if n not in self._modules], back):
            setattr(module, attr, back[id(getattr(module, attr))])
        for attr, (real, _) in self.replace.items():
            setattr(time, attr, real)
        threading.Thread.start, threading.Thread.join = self._thread  # type: ignore[method-assign]
        if self._travel is not None:
            self._travel.stop()


def _bound(names: list[str], swap: dict[int, object]) -> list[tuple[ModuleType, str, object]]:
    """(module, attribute, value) for each global of the modules ``names`` (outside
    :data:`_BOUND_SKIPPED`) bound to an object whose id ``swap`` holds."""
    found: list[tuple[ModuleType, str, object]] = []
    for name in names:
        module = sys.modules.get(name)
        namespace = getattr(module, "__dict__", None)
        if module is None or namespace is None or name.partition(".")[0] in _BOUND_SKIPPED:
            continue
        try:
            if swap.keys().isdisjoint(map(id, namespace.values())):
                continue  # the common case, cheap: nothing bound here
            values = list(namespace.items())
        except RuntimeError:  # another thread changed the module meanwhile
            values = list(namespace.copy().items())
        found += [(module, attr, value) for attr, value in values if id(value) in swap]
    return found


@contextlib.contextmanager
def virtual_time() -> Iterator[VirtualClock]:
    """The calling thread's block on virtual time (re-entered: the block already open)."""
    global _ACTIVE
    if _ACTIVE is not None:
        yield _ACTIVE.clock
        return
    with _GUARD:
        patches = _Patches()
        patches.apply()
        scheduler = Scheduler(threading.current_thread(), patches.wall)
        _ACTIVE = CLOCK.virtual = scheduler
    try:
        yield scheduler.clock
    finally:
        with _GUARD:
            _ACTIVE = CLOCK.virtual = None
            patches.undo()
            scheduler.clock.ended_virtual = CLOCK.now()
            scheduler.clock.ended_real = real_monotonic()
        scheduler.wake_all()


def _offset(real: Callable[[], float]) -> Callable[[], float]:
    return lambda: real() + CLOCK.offset


def _offset_ns(real: Callable[[], int]) -> Callable[[], int]:
    return lambda: real() + round(CLOCK.offset * 1e9)
