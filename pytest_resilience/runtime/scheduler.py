"""The scheduler of virtual time: the participants of a block, their waits, and the jumps
of the clock between them (:mod:`.virtual` says what reaches it and why)."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clock import CLOCK, RealCondition, real_monotonic, real_sleep, timer_sources
from .ledger import holding
from .loop import settle_loops


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


_CLOSING = 1.0
"""Seconds :meth:`Scheduler.close` gives condition waits to take their locks back (one
the closing thread holds itself cannot)."""


class _Notice:
    """A participant's place in a condition's queue of virtual waiters."""

    __slots__ = ("notified", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.notified = False


class _Waiter:
    __slots__ = ("deadline", "ended", "ready", "since", "wake", "woken")

    def __init__(
        self,
        deadline: float | None,
        ended: Callable[[], bool] | None,
        ready: Callable[[], bool] | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.deadline = deadline
        self.ended = ended
        self.ready = ready
        """For a wait on I/O (:meth:`Scheduler.wait_io`): whether its I/O is ready now."""
        self.wake = wake
        """For a wait on I/O: interrupts it (its thread waits in the kernel, not here)."""
        self.since = real_monotonic()
        self.woken = False


class Scheduler:
    """The participants of one block and the jumps of the clock between them."""

    def __init__(self, first: threading.Thread, wall: Any = None) -> None:
        self._wall = wall
        """time-machine's traveller, shifted with the offset; None: the wall clock stays."""
        self._cond = RealCondition(threading.RLock())
        """Re-entrant: a garbage collection while it is held may run a finalizer that
        notifies a condition made in the block (urllib3's pool's), which takes it again."""
        self._running: set[threading.Thread] = {first}
        self._waiting: dict[threading.Thread, _Waiter] = {}
        self._adopted: set[threading.Thread] = set()
        self._conditions: dict[threading.Condition, deque[_Notice]] = {}
        self.made: weakref.WeakSet[threading.Condition] = weakref.WeakSet()
        """Conditions made during the block: only their waits are virtual (one made before
        may be notified by a thread outside the block, which the clock does not wait for)."""
        self._advancing = False
        self._last_jump = real_monotonic()
        self._held_until: dict[threading.Thread, float] = {}
        self._open_condition_waits = 0
        self._look_again = False
        self.suspended = 0
        """While above 0 (:func:`~.virtual.outside_the_block`), the patches act as if no
        block were open: waits are real, threads are not adopted, objects not noted."""
        self.closed = False
        """The block ended: waits still open go on in real time, as if it never began."""
        self.clock = VirtualClock(CLOCK.now(), real_monotonic())

    # -- participants ------------------------------------------------------------------

    def knows(self, thread: threading.Thread) -> bool:
        with self._cond:
            return self.knows_now(thread)

    def knows_now(self, thread: threading.Thread) -> bool:
        """:meth:`knows`, without the lock: for a clock read, where a stale answer costs a
        moment of the other clock, never a deadlock."""
        return thread in self._running or thread in self._waiting

    def participants(self) -> set[threading.Thread]:
        """The threads taking part now: running, waiting, or started in the block and not
        yet returned."""
        with self._cond:
            return self._running | set(self._waiting) | self._adopted

    def run_returned(self, thread: threading.Thread) -> bool:
        """Whether ``thread``'s ``run`` has returned; for a predicate of :meth:`wait`, which
        runs with the lock held."""
        return thread not in self._adopted

    def adopted(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` was started as a participant and its ``run`` has not returned."""
        with self._cond:
            return thread in self._adopted

    def adopt(self, thread: threading.Thread, start: Callable[[], None]) -> None:
        """``thread`` is a participant from before ``start()`` until its ``run`` returns
        (or until ``start()`` fails)."""
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
        try:
            start()
        except BaseException:
            thread.run = run  # type: ignore[method-assign]
            self.leave(thread)
            raise

    def leave(self, thread: threading.Thread) -> None:
        with self._cond:
            self._running.discard(thread)
            self._waiting.pop(thread, None)
            self._adopted.discard(thread)
            for other, waiter in self._waiting.items():
                if not waiter.woken and waiter.ended is not None and waiter.ended():
                    self._wake(other, waiter)
            self._cond.notify_all()
            self._advance()

    # -- waits -------------------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """``time.sleep(seconds)`` as the calling participant: a virtual wait, finished in
        real time if the block ends first."""
        deadline = CLOCK.now() + seconds
        if not self.wait(deadline):
            real_sleep(max(deadline - CLOCK.now(), 0.0))

    def _wake(self, thread: threading.Thread, waiter: _Waiter) -> None:
        """With the lock held: ``thread``'s wait is over, and it counts as running from
        here on, so that no jump comes before it runs."""
        waiter.woken = True
        self._running.add(thread)
        if waiter.wake is not None:
            waiter.wake()

    def wait_io(
        self,
        deadline: float | None,
        block: Callable[[float | None], Any],
        ready: Callable[[], bool],
        wake: Callable[[], None],
    ) -> tuple[bool, Any]:
        """Wait, as the calling participant, in ``block(timeout)`` (an event loop's
        selector): a wait until ``deadline`` on the clock that I/O may end first.  The
        thread waits in the kernel, for real time, until its I/O is ready, the deadline
        comes, or a jump to it calls ``wake`` (which must end ``block`` at once).  Before
        each jump, ``ready()`` is asked: I/O ready means the thread is about to run.
        ``(False, None)`` when the calling thread is not a participant or the block has
        ended: the caller waits for real; else ``(True, what block returned)``."""
        me = threading.current_thread()
        waiter = _Waiter(deadline, None, ready, wake)
        with self._cond:
            if self.closed or not self.knows_now(me):
                return False, None
            self._running.discard(me)
            self._waiting[me] = waiter
        try:
            with self._cond:
                self._advance()
            left = None if deadline is None else max(deadline - CLOCK.now(), 0.0)
            return True, block(left)
        finally:
            with self._cond:
                self._waiting.pop(me, None)
                self._running.add(me)
                if not waiter.woken and deadline is not None and CLOCK.now() >= deadline:
                    self._held_back(waiter)  # it came in real time

    def wait(self, deadline: float | None, ended: Callable[[], bool] | None = None) -> bool:
        """Wait, as the calling participant, until ``deadline`` on the clock or until
        ``ended()`` (checked when a participant leaves), whichever comes first.  False when
        the block ended first (or had): the caller finishes the wait in real time."""
        me = threading.current_thread()
        with self._cond:
            if self.closed:
                return False
            if ended is not None and ended():
                return True
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
                    if self._look_again and not waiter.woken:
                        self._look_again = False
                        self._advance()
            finally:
                self._waiting.pop(me, None)
                self._running.add(me)
            return not self.closed

    def condition_wait(self, condition: threading.Condition, deadline: float | None) -> bool | None:
        """``condition.wait`` as the calling participant, which holds its lock: release it,
        wait until :meth:`notify` or ``deadline``, take it back; whether it was notified.
        None if the block has ended: the caller waits for real.  A wait the block's end
        cuts short goes on as a real one, from under the lock, so that no notice is lost
        between the two (:meth:`close` waits for that)."""
        notice = _Notice(threading.current_thread())
        with self._cond:
            if self.closed:
                return None
            self._conditions.setdefault(condition, deque()).append(notice)
            self._open_condition_waits += 1
        saved = condition._release_save()  # type: ignore[attr-defined]
        try:
            virtual = self.wait(deadline, lambda: notice.notified)
        finally:
            condition._acquire_restore(saved)  # type: ignore[attr-defined]
            with self._cond:
                notices = self._conditions.get(condition)
                if notices is not None and notice in notices:
                    notices.remove(notice)
                if not notices:
                    self._conditions.pop(condition, None)
                self._open_condition_waits -= 1
                self._cond.notify_all()
        if notice.notified or virtual:
            return notice.notified
        left = None if deadline is None else max(deadline - CLOCK.now(), 0.0)
        return RealCondition.wait(condition, left)

    def notify(self, condition: threading.Condition, n: int) -> int:
        """Wake up to ``n`` participants waiting on ``condition`` (whose lock the caller
        holds), first come first; how many."""
        woken = 0
        with self._cond:
            notices = self._conditions.get(condition)
            while notices and woken < n:
                notice = notices.popleft()
                notice.notified = True
                woken += 1
                waiter = self._waiting.get(notice.thread)
                if waiter is not None and not waiter.woken:
                    self._wake(notice.thread, waiter)
            if woken:
                self._cond.notify_all()
        return woken

    def _held_back(self, waiter: _Waiter) -> None:
        """A wait ended in real time: each running thread held the clock back from the
        wait's start (or the last jump) until now, less what was already counted for it."""
        now = real_monotonic()
        since = max(waiter.since, self._last_jump)
        for thread in self._running:
            held = now - max(since, self._held_until.get(thread, since))
            if held > 0:
                self.clock.held[thread.name] = self.clock.held.get(thread.name, 0.0) + held
                self._held_until[thread] = now

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
            while not self.closed and not self._io_ready() and not self._still_running():
                target = self._next_deadline()
                if target is None:
                    return  # every participant waits for another: nothing to jump to
                if target > CLOCK.now():
                    if _machinery_busy():
                        return  # the machinery answers in real time; poke() looks again
                    self._unlocked(settle_loops)
                    if _machinery_busy():
                        return  # settling read a request: its answer comes in real time
                    if self._io_ready() or self._still_running() or self._next_deadline() != target:
                        continue
                    now = CLOCK.now()
                    if target > now:
                        CLOCK.jump(target - now)
                        if self._wall is not None:
                            self._wall.shift(target - now)
                        self.clock.jumps += 1
                        self._last_jump = real_monotonic()
                self._unlocked(_fire_timers)
                now = CLOCK.now()
                for thread, waiter in self._waiting.items():
                    if not waiter.woken and waiter.deadline is not None and waiter.deadline <= now:
                        self._wake(thread, waiter)
                self._cond.notify_all()
        finally:
            self._advancing = False

    def _io_ready(self) -> bool:
        """Whether a participant waiting on I/O has it ready: it runs again (woken here,
        so that no jump comes first).  Level-triggered, so asking does not take it away."""
        found = False
        for thread, waiter in self._waiting.items():
            if not waiter.woken and waiter.ready is not None and waiter.ready():
                self._wake(thread, waiter)
                found = True
        return found

    def _still_running(self) -> bool:
        """Whether a participant runs.  One whose thread ended without leaving (it joined
        at its first wait, with no ``run`` of ours around it) is dropped; an adopted one
        leaves by itself, and may not be alive yet (starting)."""
        self._running = {t for t in self._running if t in self._adopted or t.is_alive()}
        return bool(self._running)

    def _unlocked(self, action: Callable[[], object]) -> None:
        self._cond.release()
        try:
            action()
        finally:
            self._cond.acquire()

    def poke(self) -> None:
        """The machinery's work is done (:meth:`~pytest_resilience.clock.Clock.release`):
        a waiting participant looks for a jump again.  Called from the machinery's
        threads, which must not do the jump themselves (it settles their loops)."""
        with self._cond:
            self._look_again = True
            self._cond.notify_all()

    def close(self) -> None:
        """The block ends: whoever still waits goes on in real time.  Returns once each
        condition wait has its lock back (a second at most), before the patches go, so
        that a notice sent meanwhile still reaches it."""
        with self._cond:
            self.closed = True
            for waiter in self._waiting.values():
                waiter.woken = True
            self._cond.notify_all()
            until = real_monotonic() + _CLOSING
            while self._open_condition_waits and real_monotonic() < until:
                self._cond.wait(until - real_monotonic())


def _machinery_busy() -> bool:
    """Whether the plugin's machinery makes an answer in real time (:meth:`~..clock.Clock.hold`),
    or a timer holds one a client outside the block waits for (:func:`~.ledger.holding`)."""
    return CLOCK.held or holding()


def _fire_timers() -> None:
    for source in timer_sources():
        source.fire_due()
