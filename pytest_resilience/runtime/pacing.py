"""The patches that note, on real time, what each thread of the code under test asked
to sleep and when it sent on a socket to an HTTP service's tap (:mod:`~..observe.pacing`
says what is noted and how the timing verdicts read it).  The plugin records from a
test's setup to the end of its teardown (so that a fixture's own patch of
``time.sleep``, such as ``monkeypatch``'s, is given back inside that span).

``time.sleep`` and ``asyncio.sleep`` are replaced, and so are the module globals bound
to them before the test (:mod:`.rebind`: ``from time import sleep``, anyio's ``from
asyncio import sleep``).  So is ``threading.Event.wait``: an interruptible backoff
(OpenTelemetry's OTLP exporters wait ``self._shutdown_event.wait(backoff)``) is one wait
on an event that is never set, which runs out, and that wait is a sleep asked for its
timeout.  An event waited on again by the same caller before its next I/O, or set
while it waited, was being polled for something (a slot, a signal): queueing, so none
of that caller's waits on it are noted.  Waits on the plugin's own events, and those of
a block on virtual time, are not the client's.  A default argument bound to a sleep
before the test (``sleep=time.sleep``) is not reached, and such a sleep goes unnoted,
as do waits on a lock, a semaphore or a queue (polls, as often as not), ``asyncio.wait_for``'s
timeouts, sleeps in C and uvloop's timers: a retry after them has nothing asked, and is
read with the probe's model.  Sockets are patched on their class
(``socket.socket`` and ``ssl.SSLSocket``), so every Python socket counts as I/O.

The caller is the asyncio task when the thread runs one (a loop runs many clients,
each its own task, and a transport sends a request's bytes from the task that wrote
them), else the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..clock import CLOCK, is_machinery
from . import rebind

Sleep = tuple[float, float]
"""(when it began, seconds asked) of one ``time.sleep`` or ``asyncio.sleep``, or of one
``Event.wait(seconds)`` that ran out."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One send on a socket connected to an HTTP service's tap."""

    port: int
    """The socket's local port: the tap's connection from it has it as its peer."""
    tap: int
    """The tap's port: which service it went to (a local port may serve two at once)."""
    at: float
    """When it was called, before its bytes went (the plugin's clock)."""
    thread: int
    """The sending thread's ident (for a task, the thread its loop ran on)."""
    reads: int
    """The socket's reads before it: a request's sends share the number."""
    slept: tuple[Sleep, ...]
    """The sleeps its caller (task or thread) returned from since its last I/O."""


class PacingRecorder:
    """Notes sleeps and sends (module doc) while :meth:`recording`.  :attr:`tapped`
    gives the tap port of the test's HTTP service at a socket address a client connects
    to, or None (its ``resilience`` fixture sets it)."""

    def __init__(self) -> None:
        self.tapped: Callable[[object], int | None] = lambda address: None
        self.wrappers: frozenset[object] | None = None
        """The sleep wrappers of the recording open now: the only ones that note."""
        self._sends: list[Sent] = []

    def sends(self) -> list[Sent]:
        return list(self._sends)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Note the code's sleeps and sends until the block ends.  One block at a time in
        the process (the patches are the classes' and the modules'): a block opened while
        another records (a test run inside a test) notes nothing."""
        global _ACTIVE
        with _GUARD:
            if _ACTIVE is not None:
                yield
                return
            _ACTIVE = self
        patches = _Patches()
        self.wrappers = patches.wrappers
        try:
            patches.apply()
            yield
        finally:
            patches.undo()
            with _GUARD:
                _ACTIVE = None
            self.wrappers = None

    def note(self, mark: _Mark) -> None:
        """A send on the socket ``mark`` tells of (connected to a tap), by the caller."""
        slept = tuple(_slept())
        self._sends.append(
            Sent(mark.port, mark.tap, CLOCK.now(), threading.get_ident(), mark.reads, slept)
        )
        _forget()


@dataclass(slots=True)
class _Mark:
    port: int
    tap: int
    reads: int = 0


_ACTIVE: PacingRecorder | None = None
_GUARD = threading.Lock()


@dataclass(slots=True)
class _Held:
    """A caller's sleeps since its last I/O, in ``recorder``'s recording."""

    recorder: PacingRecorder
    sleeps: list[Sleep]
    events: dict[int, Sleep | None]
    """The events it waited on (by id), with the sleep noted for the one wait that ran
    out; None once it waited on one again or the event was set: polled, none noted."""


_LOCAL = threading.local()
"""Per thread, ``held``: its :class:`_Held`, outside a task."""
_TASKS: weakref.WeakKeyDictionary[asyncio.Task[Any], _Held] = weakref.WeakKeyDictionary()
"""Per asyncio task, the same."""
_TAPPED: weakref.WeakKeyDictionary[socket.socket, _Mark] = weakref.WeakKeyDictionary()

_SLEEPS = ((time, "sleep"), (asyncio, "sleep"), (asyncio.tasks, "sleep"))
"""Where the sleeps are patched (``asyncio.sleep`` is ``asyncio.tasks.sleep``)."""
_WAIT = (threading.Event, "wait")
"""Where waits on an event are patched (``threading.Timer`` waits on one too)."""
_PLUGIN = __name__.partition(".")[0] + "."
_SENDS = ("send", "sendall", "sendto", "sendmsg")
_READS = ("recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into")


def _task() -> asyncio.Task[Any] | None:
    """The asyncio task running in the calling thread, if any: the caller whose sleeps
    count, where the thread runs many (each a client of its own)."""
    return None if asyncio._get_running_loop() is None else asyncio.current_task()


def _held(recorder: PacingRecorder | None, make: bool = False) -> _Held | None:
    """The caller's sleeps since its last I/O in ``recorder``'s recording (those kept from
    an earlier test's are not this one's): None if it has none there, unless ``make``."""
    task = _task()
    held = _TASKS.get(task) if task is not None else getattr(_LOCAL, "held", None)
    if held is not None and held.recorder is recorder:
        return held
    if not make or recorder is None:
        return None
    held = _Held(recorder, [], {})
    if task is not None:
        _TASKS[task] = held
    else:
        _LOCAL.held = held
    return held


def _slept() -> list[Sleep]:
    """The caller's sleeps since its last I/O, in the open recording."""
    held = _held(_ACTIVE)
    return held.sleeps if held is not None else []


def _noting(by: object) -> PacingRecorder | None:
    """The open recording, if the wrapper ``by`` is its own (one an earlier recording left
    in place, put back by a fixture's undo, only waits) and the caller's waits are the
    code's: not on the plugin's threads, nor in a block on virtual time."""
    recorder = _ACTIVE
    if recorder is None or recorder.wrappers is None or by not in recorder.wrappers:
        return None
    return None if is_machinery() or CLOCK.virtual is not None else recorder


def _noted(began: float, seconds: float, by: object) -> None:
    """A sleep of ``seconds`` the caller returned from, through the wrapper ``by``: noted
    if it slept at all (``sleep(0)`` yields)."""
    recorder = _noting(by) if seconds > 0 else None
    if recorder is not None:
        _held(recorder, make=True).sleeps.append((began, float(seconds)))  # type: ignore[union-attr]


def _waited(event: object, began: float, seconds: float | None, ran_out: bool, by: object) -> None:
    """A wait on ``event`` returned, through the wrapper ``by``: a sleep asked for
    ``seconds`` if it ran out and is the caller's first wait on ``event`` since its last
    I/O; a second wait, or one the event's setting ended, or a poll (``wait(0)``), shows
    the event polled, and the caller's waits on it are not noted."""
    recorder = _noting(by)
    if recorder is None:
        return
    held = _held(recorder, make=True)
    assert held is not None
    key = id(event)
    if key in held.events:
        noted = held.events[key]
        if noted is not None:
            held.sleeps[:] = [sleep for sleep in held.sleeps if sleep is not noted]
            held.events[key] = None
        return
    if ran_out and seconds is not None and seconds > 0:
        sleep = (began, float(seconds))
        held.sleeps.append(sleep)
        held.events[key] = sleep
    else:
        held.events[key] = None


def _forget() -> None:
    """The caller did I/O: its sleeps before are not the pause before its next request.
    A read in an event loop's callback (no task) is no task's."""
    task = _task()
    if task is not None:
        _TASKS.pop(task, None)
    elif getattr(_LOCAL, "held", None) is not None:
        _LOCAL.held = None


def _unwrapped(function: Any) -> Any:
    """``function``, or what it notes if it is one of this module's wrappers."""
    return getattr(function, "__pacing__", function)


_MADE: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
"""Every sleep wrapper made and still alive, by id: a fixture's undo may have left one
in a module's global after its recording ended (inert, :func:`_noted`)."""


def left_behind(replacement: Callable[[Any], Any]) -> dict[int, object]:
    """``{id(wrapper): replacement(what it wraps)}`` for the wrappers made and not the
    open recording's: a patch that swaps functions bound in modules swaps these too."""
    active = _ACTIVE.wrappers if _ACTIVE is not None else None
    return {
        key: replacement(wrapper.__pacing__)
        for key, wrapper in list(_MADE.items())
        if not active or wrapper not in active
    }


def _sleep(real: Callable[[float], None]) -> Callable[[float], None]:
    @functools.wraps(real)  # a witness only: it reads as the function it notes
    def sleep(seconds: float) -> None:
        began = CLOCK.now()
        real(seconds)
        _noted(began, seconds, sleep)

    sleep.__pacing__ = real  # type: ignore[attr-defined]
    _MADE[id(sleep)] = sleep
    return sleep


def _async_sleep(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    async def sleep(delay: float, result: Any = None) -> Any:
        began = CLOCK.now()
        value = await real(delay, result)
        _noted(began, delay, sleep)
        return value

    sleep.__pacing__ = real  # type: ignore[attr-defined]
    _MADE[id(sleep)] = sleep
    return sleep


def _event_wait(real: Callable[..., bool]) -> Callable[..., bool]:
    @functools.wraps(real)
    def wait(self: threading.Event, timeout: float | None = None) -> bool:
        if sys._getframe(1).f_globals.get("__name__", "").startswith(_PLUGIN):
            return real(self, timeout)  # the plugin's own wait (real_sleep, a settle)
        began = CLOCK.now()
        flag = real(self, timeout)
        _waited(self, began, timeout, not flag, wait)
        return flag

    wait.__pacing__ = real  # type: ignore[attr-defined]
    return wait


def _connect(real: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        recorder = _ACTIVE
        tap = None if recorder is None or is_machinery() else recorder.tapped(address)
        try:
            return real(self, address)
        finally:  # a connect in progress (asyncio's) has its local address already
            if tap is not None:
                with contextlib.suppress(OSError):
                    _TAPPED[self] = _Mark(self.getsockname()[1], tap)

    return connect


def _send(real: Callable[..., Any]) -> Callable[..., Any]:
    def send(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        mark = _TAPPED.get(self)
        recorder = _ACTIVE
        if mark is not None and recorder is not None and not is_machinery():
            recorder.note(mark)
        else:
            _forget()
        return real(self, *args, **kwargs)

    return send


def _read(real: Callable[..., Any]) -> Callable[..., Any]:
    def read(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        mark = _TAPPED.get(self)
        if mark is not None:
            mark.reads += 1
        _forget()
        return real(self, *args, **kwargs)

    return read


class _Patches:
    """What :meth:`PacingRecorder.recording` sets, and gives back."""

    def __init__(self) -> None:
        # A wrapper left in place by an earlier patch's undo (a fixture that saved it) is
        # unwrapped: wrappers never nest, and each sleep is noted once.
        time_real, asyncio_real = _unwrapped(time.sleep), _unwrapped(asyncio.sleep)
        sleeps = {time_real: _sleep(time_real), asyncio_real: _async_sleep(asyncio_real)}
        waited = _event_wait(_unwrapped(getattr(*_WAIT)))
        self.wrappers = frozenset([*sleeps.values(), waited])
        self._swap: dict[int, object] = {id(real): noted for real, noted in sleeps.items()}
        self._swap.update(left_behind(lambda real: sleeps.get(real, real)))
        self._back: dict[int, object] = {id(noted): real for real, noted in sleeps.items()}
        self._plan: list[tuple[object, str, object]] = [
            (owner, name, sleeps[time_real if owner is time else asyncio_real])
            for owner, name in _SLEEPS
        ]
        self._plan.append((*_WAIT, waited))
        for owner in (socket.socket, ssl.SSLSocket):
            # SSLSocket's own methods only: the others are socket.socket's, patched already.
            own = vars(owner) if owner is ssl.SSLSocket else None
            for names, wrap in ((_SENDS, _send), (_READS, _read)):
                for name in names:
                    if hasattr(owner, name) and (own is None or name in own):
                        self._plan.append((owner, name, wrap(getattr(owner, name))))
        for name in ("connect", "connect_ex"):
            self._plan.append((socket.socket, name, _connect(getattr(socket.socket, name))))
        self._saved: list[tuple[object, str, object, object]] = []
        """(owner, name, what it was, this recording's replacement)."""
        self._bound: list[tuple[Any, str, object]] = []
        self._modules: set[str] = set()

    def apply(self) -> None:
        for owner, name, value in self._plan:
            self._saved.append((owner, name, _unwrapped(rebind.held(owner, name)), value))
            setattr(owner, name, value)
        self._modules = set(sys.modules)
        self._bound = rebind.bound(list(sys.modules), self._swap)
        for module, name, real in self._bound:
            setattr(module, name, self._swap[id(real)])

    def undo(self) -> None:
        """Give back what is still this recording's: a patch a wider fixture made since
        (``time.sleep`` faked for a module) stays, and when that fixture puts this
        recording's wrapper back later, the wrapper is inert (:func:`_noted`)."""
        for owner, name, value, mine in reversed(self._saved):
            if getattr(owner, name, None) is mine:
                rebind.give_back(owner, name, value)
        for module, name, value in self._bound:
            if getattr(module, name, None) is self._swap[id(value)]:
                setattr(module, name, _unwrapped(value))
        rebind.give_back_late(self._modules, self._back)


def sweep() -> None:
    """Put back what a sleep wrapper left in place wraps (a fixture's undo, after the
    recording ended, restored the wrapper it had seen), in ``time``, ``asyncio``,
    ``threading.Condition`` and the modules' globals: at a session's end, so that the process is left as it was found."""
    with _GUARD:
        if _ACTIVE is not None:
            return
        for owner, name in (*_SLEEPS, _WAIT):
            value = getattr(owner, name)
            if hasattr(value, "__pacing__"):
                setattr(owner, name, _unwrapped(value))
        back = left_behind(lambda real: real)
        if back:
            for module, name, value in rebind.bound(list(sys.modules), back):
                setattr(module, name, back[id(value)])
