"""The patches that note, on real time, what each thread of the code under test asked
to sleep and when it sent on a socket to an HTTP service's tap (:mod:`~..observe.pacing`
says what is noted and how the timing verdicts read it).  The plugin records from a
test's setup to the end of its teardown (so that a fixture's own patch of
``time.sleep``, such as ``monkeypatch``'s, is given back inside that span).

``time.sleep`` and ``asyncio.sleep`` are replaced, and so are the module globals bound
to them before the test (:mod:`.rebind`: ``from time import sleep``, anyio's ``from
asyncio import sleep``).  A default argument bound to one before the test
(``sleep=time.sleep``) is not reached, and such a sleep goes unnoted, as do waits on a
condition (``Event.wait``) and sleeps in C: a retry after them, sent by the caller that
sent the attempt before, has nothing asked, and is not shown jittered on real time
(:func:`~..assertions.waits.asked_sleeps`).  Only sleeps are noted, because a wait that runs
out is as often a poll, or work given so long, as a backoff
(``docs/wait-noise-research.md``, session 20).  uvloop writes to its sockets in C: its
clients' sends are not seen at all.  Sockets are patched on their class
(``socket.socket`` and ``ssl.SSLSocket``), so every Python socket counts as I/O.

The caller is the asyncio task when the thread runs one (a loop runs many clients,
each its own task, and a transport sends a request's bytes from the task that wrote
them), else the thread.  A send also carries what the callers in whose context it runs
slept (:attr:`Sent.lent`, :data:`_LINEAGE`): the task that made the sending task, the
task that handed the call to a thread with its context.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import contextlib
import contextvars
import functools
import itertools
import socket
import ssl
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, NamedTuple

from ..clock import CLOCK, is_machinery
from . import rebind


class Sleep(NamedTuple):
    """One ``time.sleep`` or ``asyncio.sleep`` a caller returned from."""

    began: float
    seconds: float
    """What it asked."""
    site: int = 0
    """Where it was called from: the code path of the innermost :data:`SITE_DEPTH` frames
    that called it (each function and line), numbered in the order first seen.  A backoff
    and a queue slept through (a lock polled, a rate limiter's reservation) are called
    from different places; a backoff slept in chunks is called from one."""


SITE_DEPTH = 4
"""How many frames name a sleep's :attr:`Sleep.site`: the line that called the sleep
and the three calls above it.  That reaches the caller's own line past a library's
helpers (``anyio.sleep`` calls its backend's ``sleep``, which calls ``asyncio.sleep``),
and tells apart the lines of one function that call the same helper (openai's
``request()`` sleeps through ``_sleep_for_retry`` from one line per kind of error).
Deeper helpers (httpcore's backends over anyio's), or a spy on ``time.sleep``
(``mocker.spy`` adds its own frames), fill the path with their own frames, and then
every sleep through them reads as one place: the sum, as before places were told apart.  A frame is its code object, which compares by value: two
identical functions at the same lines of two files are one place."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One send on a socket connected to an HTTP service's tap."""

    port: int
    """The socket's local port: the tap's connection from it has it as its peer."""
    tap: int
    """The tap's port: which service it went to (a local port may serve two at once)."""
    at: float
    """When it was called, before its bytes went (the plugin's clock)."""
    caller: int
    """The sending caller, numbered in the order first seen (:func:`_caller`): never one
    another caller had (a thread's ident and a task's id are taken again once it ends)."""
    reads: int
    """The socket's reads before it: a request's sends share the number."""
    slept: tuple[Sleep, ...]
    """The sleeps its caller (task or thread) returned from since its last I/O."""
    lent: tuple[Sleep, ...] = ()
    """What the callers in whose context it runs had slept when that context was copied
    from theirs (:func:`_lent`; each caller's sleeps since its last I/O as they stood at
    its latest sleep in that context, so an I/O of its after that sleep does not drop
    them): the task that created the sender (aiohttp writes a request's body from a task
    of its own), the task that handed the call to a thread (``asyncio.to_thread`` runs it
    in a copy of the awaiting task's context)."""


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
        lent = tuple(_lent(self))
        self._sends.append(
            Sent(mark.port, mark.tap, CLOCK.now(), _caller(), mark.reads, slept, lent)
        )
        _forget()


@dataclass(frozen=True, slots=True)
class _Link:
    """A caller's sleeps since its last I/O as they stood at one of them: that sleep, and
    the link before it.  Links are shared, so a context copied keeps what was, for free."""

    sleep: Sleep
    before: _Link | None


_HELD_SERIALS = itertools.count(1)


def _chain(link: _Link | None) -> list[Sleep]:
    """The sleeps ``link`` holds, latest first."""
    sleeps = []
    while link is not None:
        sleeps.append(link.sleep)
        link = link.before
    return sleeps


@dataclass(slots=True, eq=False)
class _Held:
    """One caller's sleeps since its last I/O, in ``recorder``'s recording: the latest
    :class:`_Link` (its own, :func:`_slept`; lent, :data:`_LINEAGE`)."""

    serial: int = field(default_factory=lambda: next(_HELD_SERIALS))
    recorder: PacingRecorder | None = None
    last: _Link | None = None


@dataclass(frozen=True, slots=True)
class _Lender:
    """One caller's entry in :data:`_LINEAGE`: its sleeps as they stood at its latest in
    this context (the recording held weakly: a context can outlive its test)."""

    caller: int
    """Its :attr:`_Held.serial`."""
    recorder: weakref.ref[PacingRecorder]
    last: _Link


_LINEAGE: contextvars.ContextVar[tuple[_Lender, ...]] = contextvars.ContextVar(
    "pytest_resilience_pacing_lineage", default=()
)
"""The callers that slept in this context and in the contexts it was copied from, latest
first, each with its sleeps as they stood then: a caller that sleeps puts itself first
in its own context, so a task it creates (a copy of its context) or a call it hands to a
thread with its context (``asyncio.to_thread``) finds the sleeps it had made by then,
and none it makes later.  A thread started with ``threading.Thread`` begins with an
empty context by default (a free-threaded build, or ``-X thread_inherit_context=1``,
copies the starter's), and ``run_in_executor`` runs the call in the pool thread's own,
so neither finds the caller that started it."""
LINEAGE_DEPTH = 8
"""The most callers :data:`_LINEAGE` keeps (tasks creating tasks, nested)."""


def _lent(recorder: PacingRecorder | None) -> list[Sleep]:
    """What the callers in the calling context's :data:`_LINEAGE` other than the caller
    itself had slept in ``recorder``'s recording when the context was copied from theirs
    (each as it stood at its latest sleep there)."""
    held = _holder()
    own = None if held is None else held.serial
    return [
        sleep
        for lender in _LINEAGE.get()
        if lender.caller != own and lender.recorder() is recorder
        for sleep in _chain(lender.last)
    ]


@dataclass(slots=True)
class _Mark:
    port: int
    tap: int
    reads: int = 0


_ACTIVE: PacingRecorder | None = None
_GUARD = threading.Lock()
_LOCAL = threading.local()
"""Per thread, ``held``: its :class:`_Held`, outside a task; and ``serial``, its
:func:`_caller` number."""
_TASKS: weakref.WeakKeyDictionary[asyncio.Task[Any], _Held] = weakref.WeakKeyDictionary()
"""Per asyncio task, its sleeps since its last I/O (outside a task, the thread's are
``_LOCAL.held``)."""
_TAPPED: weakref.WeakKeyDictionary[socket.socket, _Mark] = weakref.WeakKeyDictionary()

_SLEEPS = ((time, "sleep"), (asyncio, "sleep"), (asyncio.tasks, "sleep"))
"""Where the sleeps are patched (``asyncio.sleep`` is ``asyncio.tasks.sleep``)."""
_SENDS = ("send", "sendall", "sendto", "sendmsg")
_READS = ("recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into")


def _task() -> asyncio.Task[Any] | None:
    """The asyncio task running in the calling thread, if any: the caller whose sleeps
    count, where the thread runs many (each a client of its own)."""
    return None if asyncio._get_running_loop() is None else asyncio.current_task()


_SERIALS = itertools.count(1)
_TASK_SERIALS: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
"""Each task's number, given at its first send (a task aiohttp makes to write a request's
body is a new one each time)."""


def _work_item(real: Callable[..., None]) -> Callable[..., None]:
    def run(item: Any, *args: Any, **kwargs: Any) -> None:  # 3.14 passes a context
        # Each call a thread pool runs (``asyncio.to_thread``, ``run_in_executor``) sends
        # as a caller of its own, with no sleep of an earlier call's: the sleep before it
        # was another's (the awaiting task's).  Other pools' workers (anyio's, trio's,
        # ``multiprocessing.pool.ThreadPool``'s) are not told apart: see the README.
        _LOCAL.serial = None
        _forget()  # outside a task, as a pool's thread runs: the thread's sleeps
        real(item, *args, **kwargs)

    return run


def _caller() -> int:
    """The sending caller's number (:attr:`Sent.caller`): its task's, else its thread's
    (since the call the thread's pool gave it, if it is a pool's)."""
    task = _task()
    if task is not None:
        serial = _TASK_SERIALS.get(task)
        if serial is None:
            serial = _TASK_SERIALS[task] = next(_SERIALS)
        return serial
    serial = getattr(_LOCAL, "serial", None)
    if serial is None:
        serial = _LOCAL.serial = next(_SERIALS)
    return serial


def _holder(create: bool = False) -> _Held | None:
    """The calling task's :class:`_Held`, else its thread's; made if ``create``."""
    task = _task()
    if task is not None:
        held = _TASKS.get(task)
        if held is None and create:
            held = _TASKS[task] = _Held()
        return held
    held = getattr(_LOCAL, "held", None)
    if held is None and create:
        held = _LOCAL.held = _Held()
    return held


def _slept() -> list[Sleep]:
    """The caller's sleeps since its last I/O, in the open recording (those kept from an
    earlier test's are not this one's), oldest first."""
    held = _holder()
    if held is None or held.recorder is not _ACTIVE:
        return []
    return _chain(held.last)[::-1]


_SITES: dict[tuple[tuple[object, int], ...], int] = {}
_SITE_SERIALS = itertools.count(1)


def _site(frame: FrameType | None) -> int:
    """The number of the code path that ``frame`` and its callers make (:attr:`Sleep.site`)."""
    path: list[tuple[object, int]] = []
    while frame is not None and len(path) < SITE_DEPTH:
        path.append((frame.f_code, frame.f_lineno))
        frame = frame.f_back
    key = tuple(path)
    site = _SITES.get(key)
    if site is None:
        site = _SITES.setdefault(key, next(_SITE_SERIALS))
    return site


def _noted(began: float, seconds: float, by: object, caller: FrameType | None) -> None:
    """A sleep of ``seconds`` the caller returned from, through the wrapper ``by``, called
    from the frame ``caller``: noted if ``by`` is the active recording's (one an earlier
    recording left in place, put back by a fixture's undo, only sleeps), and if it slept
    at all (``sleep(0)`` yields)."""
    recorder = _ACTIVE
    if recorder is None or recorder.wrappers is None or by not in recorder.wrappers:
        return
    if seconds <= 0 or is_machinery():
        return
    held = _holder(create=True)
    assert held is not None
    if held.recorder is not recorder:
        held.recorder, held.last = recorder, None
    held.last = _Link(Sleep(began, float(seconds), _site(caller)), held.last)
    others = [lender for lender in _LINEAGE.get() if lender.caller != held.serial]
    mine = _Lender(held.serial, weakref.ref(recorder), held.last)
    _LINEAGE.set((mine, *others[: LINEAGE_DEPTH - 1]))


def _forget() -> None:
    """The caller did I/O: its sleeps before are not the pause before its next request.
    A read in an event loop's callback (no task) is no task's."""
    held = _holder()
    if held is not None and held.recorder is not None:
        held.recorder, held.last = None, None


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
        _noted(began, seconds, sleep, sys._getframe(0).f_back)

    sleep.__pacing__ = real  # type: ignore[attr-defined]
    _MADE[id(sleep)] = sleep
    return sleep


def _async_sleep(real: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(real)
    async def sleep(delay: float, result: Any = None) -> Any:
        began = CLOCK.now()
        value = await real(delay, result)
        _noted(began, delay, sleep, sys._getframe(0).f_back)
        return value

    sleep.__pacing__ = real  # type: ignore[attr-defined]
    _MADE[id(sleep)] = sleep
    return sleep


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
        self.wrappers = frozenset(sleeps.values())
        self._swap: dict[int, object] = {id(real): noted for real, noted in sleeps.items()}
        self._swap.update(left_behind(lambda real: sleeps.get(real, real)))
        self._back: dict[int, object] = {id(noted): real for real, noted in sleeps.items()}
        self._plan: list[tuple[object, str, object]] = [
            (owner, name, sleeps[time_real if owner is time else asyncio_real])
            for owner, name in _SLEEPS
        ]
        for owner in (socket.socket, ssl.SSLSocket):
            # SSLSocket's own methods only: the others are socket.socket's, patched already.
            own = vars(owner) if owner is ssl.SSLSocket else None
            for names, wrap in ((_SENDS, _send), (_READS, _read)):
                for name in names:
                    if hasattr(owner, name) and (own is None or name in own):
                        self._plan.append((owner, name, wrap(getattr(owner, name))))
        for name in ("connect", "connect_ex"):
            self._plan.append((socket.socket, name, _connect(getattr(socket.socket, name))))
        item = concurrent.futures.thread._WorkItem
        self._plan.append((item, "run", _work_item(item.run)))
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
    recording ended, restored the wrapper it had seen), in ``time``, ``asyncio`` and the
    modules' globals: at a session's end, so that the process is left as it was found."""
    with _GUARD:
        if _ACTIVE is not None:
            return
        for owner, name in _SLEEPS:
            value = getattr(owner, name)
            if hasattr(value, "__pacing__"):
                setattr(owner, name, _unwrapped(value))
        back = left_behind(lambda real: real)
        if back:
            for module, name, value in rebind.bound(list(sys.modules), back):
                setattr(module, name, back[id(value)])
