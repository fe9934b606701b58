"""The scheduler of virtual time: the participants of a block, their waits, and the jumps
of the clock between them (:mod:`.virtual` says what reaches it and why)."""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clock import CLOCK, real_monotonic, timer_sources
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


class _OwnCondition(threading.Condition):
    """The scheduler's own condition, with ``threading.Condition``'s methods as they were
    before any block patched them: its waits and notices are the machinery of the patched
    ones."""

    wait = threading.Condition.wait
    notify = threading.Condition.notify
    notify_all = threading.Condition.notify_all


class _Notice:
    """A participant's place in a condition's queue of virtual waiters."""

    __slots__ = ("notified", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.thread = thread
        self.notified = False


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
        self._cond = _OwnCondition(threading.Lock())
        self._running: set[threading.Thread] = {first}
        self._waiting: dict[threading.Thread, _Waiter] = {}
        self._adopted: set[threading.Thread] = set()
        self._conditions: dict[threading.Condition, deque[_Notice]] = {}
        self.made: weakref.WeakSet[threading.Condition] = weakref.WeakSet()
        """Conditions made during the block: only their waits are virtual (one made before
        may be notified by a thread outside the block, which the clock does not wait for)."""
        self._advancing = False
        self._last_jump = real_monotonic()
        self.clock = VirtualClock(CLOCK.now(), real_monotonic())

    # -- participants ------------------------------------------------------------------

    def knows(self, thread: threading.Thread) -> bool:
        with self._cond:
            return self._known(thread)

    def _known(self, thread: threading.Thread) -> bool:
        return thread in self._running or thread in self._waiting

    def run_returned(self, thread: threading.Thread) -> bool:
        """Whether ``thread``'s ``run`` has returned; for a predicate of :meth:`wait`, which
        runs with the lock held."""
        return thread not in self._adopted

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

    def condition_wait(self, condition: threading.Condition, deadline: float | None) -> bool:
        """``condition.wait`` as the calling participant, which holds its lock: release it,
        wait until :meth:`notify` or ``deadline``, take it back; whether it was notified."""
        notice = _Notice(threading.current_thread())
        with self._cond:
            self._conditions.setdefault(condition, deque()).append(notice)
        saved = condition._release_save()  # type: ignore[attr-defined]
        try:
            self.wait(deadline, lambda: notice.notified)
        finally:
            condition._acquire_restore(saved)  # type: ignore[attr-defined]
            with self._cond:
                notices = self._conditions.get(condition)
                if notices is not None and notice in notices:
                    notices.remove(notice)
                if not notices:
                    self._conditions.pop(condition, None)
        return notice.notified

    def notify(self, condition: threading.Condition, n: int) -> int:
        """Wake up to ``n`` participants waiting on ``condition`` (whose lock the caller
        holds), first come first; how many.  They count as running from here on, so that
        no jump comes before they run."""
        woken = 0
        with self._cond:
            notices = self._conditions.get(condition)
            while notices and woken < n:
                notice = notices.popleft()
                notice.notified = True
                woken += 1
                waiter = self._waiting.get(notice.thread)
                if waiter is not None and not waiter.woken:
                    waiter.woken = True
                    self._running.add(notice.thread)
            if woken:
                self._cond.notify_all()
        return woken

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

    def wake_all(self) -> None:
        """The block ended: whoever still waits goes on in real time."""
        with self._cond:
            for waiter in self._waiting.values():
                waiter.woken = True
            self._cond.notify_all()


def _fire_timers() -> None:
    for source in timer_sources():
        source.fire_due()
