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

import concurrent.futures.thread
import contextlib
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from ..clock import CLOCK, is_machinery, real_monotonic, real_wall
from ..errors import ConfigurationError
from .scheduler import Scheduler, VirtualClock

_READS = ("monotonic", "perf_counter")
"""The clocks a block reads as real time plus the offset; the wall clock is moved by
time-machine, which reaches ``datetime.now`` and ``time.time`` in C."""

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
        scheduler.wait(deadline, lambda: scheduler.run_returned(thread))
        if not scheduler.adopted(thread):
            real(thread, None)  # its run returned: what is left of the thread is short
        return None

    return join


def _virtual_condition_wait(
    real: Callable[[threading.Condition, float | None], bool],
) -> Callable[[threading.Condition, float | None], bool]:
    def wait(condition: threading.Condition, timeout: float | None = None) -> bool:
        scheduler = _ACTIVE
        if (
            scheduler is None
            or condition not in scheduler.made
            or is_machinery()
            or not scheduler.knows(threading.current_thread())
            or _called_by_the_plugin()
        ):
            return real(condition, timeout)
        if not condition._is_owned():  # type: ignore[attr-defined]
            raise RuntimeError("cannot wait on un-acquired lock")
        deadline = None if timeout is None else CLOCK.now() + max(float(timeout), 0.0)
        return scheduler.condition_wait(condition, deadline)

    return wait


def _virtual_condition_init(
    real: Callable[[threading.Condition, Any], None],
) -> Callable[[threading.Condition, Any], None]:
    def init(condition: threading.Condition, lock: Any = None) -> None:
        real(condition, lock)
        scheduler = _ACTIVE
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
        woken = scheduler.notify(condition, n) if scheduler is not None else 0
        if n > woken:
            real(condition, n - woken)

    return notify


def _virtual_notify_all(
    real: Callable[[threading.Condition], None],
) -> Callable[[threading.Condition], None]:
    def notify_all(condition: threading.Condition) -> None:
        scheduler = _ACTIVE
        if scheduler is not None:
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


class _Queues:
    """What ``concurrent.futures.thread`` reads of the ``queue`` module, with a work queue
    whose waits virtual time sees (``SimpleQueue`` waits in C): an executor made in a block
    has idle workers that wait, instead of running for ever."""

    SimpleQueue = queue.Queue
    Empty = queue.Empty


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
    """What a block changes, and undoes:

    - the ``time`` module's clocks and ``sleep``, and the module globals bound to them
      (``from time import monotonic``), outside :data:`_BOUND_SKIPPED`;
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
        waits_clock = _offset_off_machinery(time.monotonic)
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
        ]
        self._saved: list[tuple[object, str, object]] = []
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
            self._set(time, attr, replacement)
        for owner, attr, make in self._attributes:
            self._set(owner, attr, make(getattr(owner, attr)))  # type: ignore[operator]
        swap = {id(real): replacement for real, replacement in self.replace.values()}
        self._modules = set(sys.modules)
        self._bound = _bound(list(sys.modules), swap)
        for module, attr, _ in self._bound:
            setattr(module, attr, swap[id(getattr(module, attr))])

    def _set(self, owner: object, attr: str, value: object) -> None:
        self._saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def undo(self) -> None:
        for module, attr, real in self._bound:
            setattr(module, attr, real)
        # Modules imported during the block bound the replacements: give them the real ones.
        back = {id(replacement): real for real, replacement in self.replace.values()}
        for module, attr, _ in _bound([n for n in sys.modules if n not in self._modules], back):
            setattr(module, attr, back[id(getattr(module, attr))])
        for owner, attr, real in reversed(self._saved):
            setattr(owner, attr, real)
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


def _offset_off_machinery(real: Callable[[], float]) -> Callable[[], float]:
    """The clock of waits' timeouts: virtual, but real on the plugin's threads, whose waits
    are real."""
    return lambda: real() if is_machinery() else real() + CLOCK.offset


def _offset_ns(real: Callable[[], int]) -> Callable[[], int]:
    return lambda: real() + round(CLOCK.offset * 1e9)
