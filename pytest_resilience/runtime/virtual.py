"""Virtual time for the code under test: its waits end at once and move one clock forward.

The clock is real time plus an offset (:data:`~pytest_resilience.clock.CLOCK`'s), so real
work (I/O, CPU) takes its real time in the record.  The offset jumps only when every
**participant** waits (:class:`~.scheduler.Scheduler`): the test's thread, the threads it
(or another participant) starts during the block, and any other thread at its first
``time.sleep``.  The plugin's own threads
(:func:`~pytest_resilience.clock.machinery_thread`) are never participants, nor are the
threads of a block the plugin ended because its test left it open (:data:`_STRAYS`), nor
those they start, unless they open a block themselves.

- ``time.sleep`` on a participant is a virtual wait with a deadline; ``Thread.join`` of
  a participant ends when that thread's ``run`` returns; a wait on a condition made in
  the block (so an ``Event``, ``Queue``, ``Semaphore`` or future made there) ends at its
  notice or its timeout.  Waits the plugin's code makes (on its own machinery) and waits
  on objects made before the block (a thread outside it may be the one to set them) are
  real, and their thread counts as running.
- When the last running participant starts to wait, the scheduler lets the plugin's
  loops see and stamp what the code did before it (:func:`~.loop.settle_loops`), jumps
  to the earliest deadline among the waits and the plugin's timers (marker windows),
  fires those timers, then wakes the waiters due.  Timers fire first, so a fault window
  has closed before the client that waits for its end wakes.
- A participant blocked where the scheduler cannot see (a socket read, a ``Lock`` in C,
  an object made before the block) counts as running: no jump happens meanwhile and the
  others' waits end in real time.  Slower, never wrong.  :class:`~.scheduler.VirtualClock`
  sums that real time per running thread, so the summary can name the one that held
  the jumps back.
- Reads: ``time.monotonic`` and ``perf_counter`` (and their ``_ns`` forms, and module
  globals bound to them before the block) return real time plus the offset on every
  thread; the wall clock (``time.time``, ``datetime.now``) is time-machine's travel,
  shifted at each jump.  The plugin's loops and machinery read the real clocks.

- asyncio: a participant's event loop waits in its selector as a virtual wait, unless
  an answer it asked for is on its way (:mod:`.virtual_loops`).
- Reads of a socket to an HTTP stub wait on the virtual clock while every byte on the
  way is at rest, so that an answer held by a ``delay`` (a timer of the plugin's clock)
  comes at a jump (:mod:`.virtual_sockets`, :mod:`.ledger`).

At the block's end, waits still open go on in real time, and the patches go
(:class:`_Patches` lists them).  The records' offset stays until the test ends, so
``time.monotonic()`` read after the block is behind them.
"""

from __future__ import annotations

import concurrent.futures.thread
import contextlib
import math
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import FunctionType, ModuleType
from typing import Any

from ..clock import CLOCK, is_machinery, real_monotonic, real_wall
from ..errors import ConfigurationError
from . import pacing, rebind, virtual_loops, virtual_sockets
from .scheduler import Scheduler, VirtualClock

_READS = ("monotonic", "perf_counter")
"""The clocks a block reads as real time plus the offset; the wall clock is moved by
time-machine, which reaches ``datetime.now`` and ``time.time`` in C."""

# -- the patches, for one block at a time ----------------------------------------------

_ACTIVE: Scheduler | None = None
_PATCHES: _Patches | None = None
_OPENER: threading.Thread | None = None
"""The thread that opened the block (for :func:`close_left_open`)."""
_GUARD = threading.Lock()


_STRAYS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
"""The threads of blocks the plugin ended because their test left them open
(:func:`close_left_open`): still running, they never take part in a later block, whose
jumps their work would hold back (their waits are real)."""


def _live() -> Scheduler | None:
    """The open block's scheduler; None when none is, it is suspended
    (:func:`outside_the_block`) or the calling thread strayed from an earlier block
    (:data:`_STRAYS`): the patches then act as the functions they replace."""
    scheduler = _ACTIVE
    if scheduler is None or scheduler.suspended > 0:
        return None
    return None if _STRAYS and threading.current_thread() in _STRAYS else scheduler


@contextlib.contextmanager
def outside_the_block() -> Iterator[None]:
    """Run as if the open block (if any) were not: what a session- or module-scoped
    fixture sets up while a test on virtual time opens it (a server, a pool) outlives the
    test, so its threads are not participants, its waits are real and its objects are
    not the block's."""
    scheduler = _ACTIVE
    if scheduler is None:
        yield
        return
    scheduler.suspended += 1
    try:
        yield
    finally:
        scheduler.suspended -= 1


def _virtual_sleep(real: Callable[[float], None]) -> Callable[[float], None]:
    def sleep(seconds: float) -> None:
        scheduler = _live()
        finite = isinstance(seconds, int | float) and math.isfinite(seconds)
        if scheduler is None or is_machinery() or not finite or seconds <= 0:
            return real(seconds)  # a yield, a machinery wait, or the error time.sleep gives
        scheduler.sleep(seconds)
        return None

    return sleep


def _virtual_start(real: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    def start(thread: threading.Thread) -> None:
        if _STRAYS and threading.current_thread() in _STRAYS:
            _STRAYS.add(thread)  # a stray's thread holds no later block back either
        scheduler = _live()
        if (
            scheduler is not None
            and not is_machinery(thread)
            and scheduler.knows(threading.current_thread())
        ):
            scheduler.adopt(thread, lambda: real(thread))
        else:
            real(thread)

    return start


def _virtual_join(
    real: Callable[[threading.Thread, float | None], None],
) -> Callable[[threading.Thread, float | None], None]:
    def join(thread: threading.Thread, timeout: float | None = None) -> None:
        scheduler = _live()
        me = threading.current_thread()
        if (
            scheduler is None
            or is_machinery(me)
            or not scheduler.adopted(thread)
            or not scheduler.knows(me)  # not a participant: this wait holds nothing back
        ):
            return real(thread, timeout)
        deadline = None if timeout is None else CLOCK.now() + max(float(timeout), 0.0)
        if not scheduler.wait(deadline, lambda: scheduler.run_returned(thread)):
            left = None if deadline is None else max(deadline - CLOCK.now(), 0.0)
            return real(thread, left)  # the block ended first: join in real time
        if not scheduler.adopted(thread):
            real(thread, None)  # its run returned: what is left of the thread is short
        return None

    return join


def _virtual_condition_wait(
    real: Callable[[threading.Condition, float | None], bool],
) -> Callable[[threading.Condition, float | None], bool]:
    def wait(condition: threading.Condition, timeout: float | None = None) -> bool:
        scheduler = _live()
        if (
            scheduler is None
            or condition not in scheduler.made
            or (timeout is not None and timeout <= 0)  # a poll: nothing to wait for
            or is_machinery()
            or not scheduler.knows(threading.current_thread())
            or _called_by_the_plugin()
        ):
            return real(condition, timeout)
        if not condition._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        deadline = None if timeout is None else CLOCK.now() + max(float(timeout), 0.0)
        notified = scheduler.condition_wait(condition, deadline)
        return real(condition, timeout) if notified is None else notified

    return wait


def _virtual_condition_init(
    real: Callable[[threading.Condition, Any], None],
) -> Callable[[threading.Condition, Any], None]:
    def init(condition: threading.Condition, lock: Any = None) -> None:
        real(condition, lock)
        scheduler = _live()
        if scheduler is not None:
            scheduler.made.add(condition)

    return init


def _virtual_notify(
    real: Callable[[threading.Condition, int], None],
) -> Callable[[threading.Condition, int], None]:
    def notify(condition: threading.Condition, n: int = 1) -> None:
        scheduler = _ACTIVE
        if not condition._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot notify on un-acquired lock")
        woken = 0
        if scheduler is not None and condition in scheduler.made:
            woken = scheduler.notify(condition, n)
        if n > woken:
            real(condition, n - woken)

    return notify


def _virtual_notify_all(
    real: Callable[[threading.Condition], None],
) -> Callable[[threading.Condition], None]:
    def notify_all(condition: threading.Condition) -> None:
        scheduler = _ACTIVE
        if scheduler is not None and condition in scheduler.made:
            scheduler.notify(condition, sys.maxsize)
        real(condition)

    return notify_all


def _called_by_the_plugin() -> bool:
    """Whether the wait was called by the plugin's own code (through the standard library:
    a future's result, an event): it waits for the plugin's machinery, which keeps real
    time, so it is a real wait and its thread counts as running.  The frames of virtual
    time's own wrappers (``Thread.start``, the ``run`` of a participant) are passed over."""
    frame = sys._getframe(2)  # the caller of the patched wait
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module in _OURS:
            frame = frame.f_back  # type: ignore[assignment]
            continue
        package = module.partition(".")[0]
        if package == _PLUGIN:
            return True
        if package not in sys.stdlib_module_names:
            return False
        frame = frame.f_back  # type: ignore[assignment]
    return False


_OURS = frozenset({__name__, Scheduler.__module__})
_PLUGIN = __name__.partition(".")[0]


def _virtual_submit(real: Callable[..., Any]) -> Callable[..., Any]:
    def submit(executor: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future = real(executor, fn, *args, **kwargs)
        scheduler = _ACTIVE
        if scheduler is not None and not isinstance(executor._work_queue, queue.Queue):
            # An executor made before the block: its workers, outside it, complete the
            # future, so waiting for it is a real wait.
            scheduler.made.discard(future._condition)
        return future

    return submit


class _Queues:
    """What ``concurrent.futures.thread`` reads of the ``queue`` module, with a work queue
    whose waits virtual time sees (``SimpleQueue`` waits in C): an executor made in a block
    has idle workers that wait, instead of running for ever."""

    SimpleQueue = queue.Queue
    Empty = queue.Empty


class _Patches:
    """What a block changes, and undoes:

    - the ``time`` module's clocks and ``sleep``, and the module globals and default
      arguments bound to them (``from time import monotonic``, ``clock=time.monotonic``),
      outside :data:`rebind.BOUND_SKIPPED`;
    - ``Thread.start`` and ``join``; ``Condition.wait`` and ``notify`` (``Event``,
      ``queue.Queue``, ``Semaphore`` and futures wait through them), virtual for the
      conditions made in the block (``Condition.__init__`` notes them);
    - the clocks ``threading`` and ``queue`` time those waits with, and the work queue of
      ``ThreadPoolExecutor`` (:class:`_Queues`);
    - the wall clock (``time.time``, ``datetime.now``): time-machine's travel, shifted at
      each jump.
    """

    def __init__(self) -> None:
        self.replace: dict[str, tuple[object, object]] = {}
        for name in _READS:
            for attr, make in ((name, _offset), (f"{name}_ns", _offset_ns)):
                real = getattr(time, attr)
                self.replace[attr] = (real, make(real))
        self.replace["sleep"] = (time.sleep, _virtual_sleep(time.sleep))
        waits_clock = _offset_for_participants(time.monotonic)
        self._attributes: list[tuple[object, str, object]] = [
            (threading.Thread, "start", _virtual_start),
            (threading.Thread, "join", _virtual_join),
            (threading.Condition, "__init__", _virtual_condition_init),
            (threading.Condition, "wait", _virtual_condition_wait),
            (threading.Condition, "notify", _virtual_notify),
            (threading.Condition, "notify_all", _virtual_notify_all),
            (threading, "_time", lambda _: waits_clock),
            (queue, "time", lambda _: waits_clock),
            (concurrent.futures.thread, "queue", lambda _: _Queues),
            (concurrent.futures.ThreadPoolExecutor, "submit", _virtual_submit),
            *virtual_loops.patches(_live),
            *virtual_sockets.patches(_live),
        ]
        self._saved: list[tuple[object, str, object]] = []
        self._bound: list[tuple[ModuleType, str, object]] = []
        self._defaults: list[tuple[FunctionType, str, Any]] = []
        self._modules: set[str] = set()
        self._travel: Any = None
        self.wall: Any = None
        """time-machine's traveller: :meth:`Scheduler._advance` shifts it at each jump."""

    def apply(self) -> None:
        import time_machine

        travel = time_machine.travel(real_wall() + CLOCK.offset, tick=True)
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
            self._set(time, attr, replacement)
        for owner, attr, make in self._attributes:
            self._set(owner, attr, make(getattr(owner, attr)))  # type: ignore[operator]
        # With a pacing wrapper in place (a real-time test's recording, or one a fixture put
        # back after it), the modules bound to what it wraps are swapped too, and those
        # bound to a wrapper left behind.
        swap = {id(real): replacement for real, replacement in self.replace.values()}
        unwrapped = {id(getattr(r, "__pacing__", r)): rep for r, rep in self.replace.values()}
        swap.update(unwrapped)
        left = pacing.left_behind(lambda real: unwrapped.get(id(real)))
        swap.update({key: value for key, value in left.items() if value is not None})
        self._modules = set(sys.modules)
        self._bound = rebind.bound(list(sys.modules), swap)
        for module, attr, value in self._bound:
            setattr(module, attr, swap[id(value)])
        self._defaults = rebind.defaulted(list(sys.modules), swap)
        for function, attr, value in self._defaults:
            setattr(function, attr, rebind.swapped(value, swap))

    def _set(self, owner: object, attr: str, value: object) -> None:
        self._saved.append((owner, attr, rebind.held(owner, attr)))
        setattr(owner, attr, value)

    def undo(self) -> None:
        """Undo what :meth:`apply` did (all of it, or as far as it went)."""
        for owner, attr, real in reversed(self._saved):
            rebind.give_back(owner, attr, real)
        for module, attr, real in self._bound:
            setattr(module, attr, real)
        for function, attr, value in self._defaults:
            setattr(function, attr, value)
        # Modules imported during the block bound the replacements (freezegun's too, which
        # would put the replacement back as time.monotonic later).
        rebind.give_back_late(self._modules, {id(new): real for real, new in self.replace.values()})
        if self._travel is not None:
            self._travel.stop()
            self._travel = None


@contextlib.contextmanager
def virtual_time() -> Iterator[VirtualClock]:
    """The calling thread's block on virtual time (re-entered: the block already open)."""
    global _ACTIVE, _PATCHES, _OPENER
    if _ACTIVE is not None:
        yield _ACTIVE.clock
        return
    with _GUARD:
        patches = _Patches()
        try:
            patches.apply()
        except BaseException:
            patches.undo()
            raise
        # Made before _ACTIVE is set, the scheduler's own objects are never virtual.
        scheduler = Scheduler(threading.current_thread(), patches.wall)
        _STRAYS.discard(threading.current_thread())  # its own block: it takes part
        _ACTIVE = CLOCK.virtual = scheduler
        _PATCHES, _OPENER = patches, threading.current_thread()
    try:
        yield scheduler.clock
    finally:
        _end(scheduler)


def _end(scheduler: Scheduler) -> None:
    """End ``scheduler``'s block, once: open waits go on in real time, the patches go."""
    global _ACTIVE, _PATCHES
    if scheduler.clock.ended_real is None:
        scheduler.clock.ended_virtual = CLOCK.now()
        scheduler.clock.ended_real = real_monotonic()
    try:
        scheduler.close()  # first: open waits turn real while notices still reach them
    finally:
        with _GUARD:
            if _ACTIVE is scheduler and _PATCHES is not None:
                _ACTIVE = CLOCK.virtual = None
                patches, _PATCHES = _PATCHES, None
                patches.undo()


def close_left_open() -> str | None:
    """End the block still open, if another thread than this one opened it (a thread of
    the test still inside its ``with``: it never ended), so that the next test runs on
    real time, and its threads but this one take part in no later block; the name of
    that thread, or None.  A block this thread opened is left:
    a wider-scoped fixture's, or an outer pytest's around an in-process pytester run."""
    scheduler, opener = _ACTIVE, _OPENER
    me = threading.current_thread()
    if scheduler is None or opener is None or opener is me:
        return None
    _end(scheduler)  # first: no thread joins it after the participants are read
    _STRAYS.update(t for t in scheduler.participants() if t is not me)
    return opener.name


def _offset(real: Callable[[], float]) -> Callable[[], float]:
    return lambda: real() + CLOCK.offset


def _offset_for_participants(real: Callable[[], float]) -> Callable[[], float]:
    """The clock of waits' timeouts (``threading``'s and ``queue``'s): virtual for the
    block's participants, whose waits are virtual; real for any other thread."""

    def now() -> float:
        scheduler = _ACTIVE
        if scheduler is not None and scheduler.knows_now(threading.current_thread()):
            return real() + CLOCK.offset
        return real()

    return now


def _offset_ns(real: Callable[[], int]) -> Callable[[], int]:
    return lambda: real() + round(CLOCK.offset * 1e9)
