"""Toxics of the embedded engine, with Toxiproxy 2.12's attributes and semantics.

A :class:`Toxic` is what the API stores; a :class:`Stage` is one toxic at work
on one direction of one connection.  Data passes the stages of a direction in
the order their toxics were added; each stage gets a chunk (bytes plus the
moment it was read) and hands zero or more chunks on.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..clock import real_monotonic

if TYPE_CHECKING:
    from .link import Pipe

DIRECTIONS = ("upstream", "downstream")


@dataclass(slots=True)
class Chunk:
    data: bytes
    at: float
    """When the bytes were read (monotonic seconds); latency counts from here."""


Emit = Callable[[Chunk], Awaitable[None]]


@dataclass
class Toxic:
    """A toxic as the API sees it."""

    name: str
    type: str
    stream: str
    """As the client wrote it (Toxiproxy keeps the case it was given)."""
    toxicity: float
    attributes: dict[str, int]
    direction: str = field(init=False)

    def __post_init__(self) -> None:
        self.direction = self.stream.lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "attributes": dict(self.attributes),
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": go_float32(self.toxicity),
        }


def go_float32(value: float) -> float | int:
    """``value`` as Go's encoding/json writes a float32: the shortest decimal that reads
    back as the same float32 (``1`` for 1.0, ``0.3`` for 0.3)."""
    single = struct.unpack("f", struct.pack("f", value))[0]
    for digits in range(1, 10):
        shortest = float(f"{single:.{digits}g}")
        if struct.unpack("f", struct.pack("f", shortest))[0] == single:
            break
    return int(shortest) if shortest.is_integer() and abs(shortest) < 1e21 else shortest


GO_SHORTEST_SLEEP = 0.001
"""Toxiproxy's toxics wait with Go timers, which the runtime's poller waits out in whole
milliseconds (Go 1.26, which builds Toxiproxy 2.12 here: ``runtime/netpoll_epoll.go``
``netpoll`` gives ``epoll_wait`` 1 ms for any delay under 1 ms, and whole milliseconds above):
a wait under a millisecond lasts one, so the engine's do too (a slicer's ``delay`` of
100 µs took 0.26-0.39 of Toxiproxy's time without this; ``benchmarks/slicer_timing.py``)."""


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


class Stage:
    """One toxic working on one direction of one connection."""

    attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, toxic: Toxic, pipe: Pipe, rng: random.Random) -> None:
        self.toxic = toxic
        self.pipe = pipe
        self.rng = rng
        self.removed = asyncio.Event()
        self._waits: set[asyncio.Future[None]] = set()

    def attr(self, name: str) -> int:
        return self.toxic.attributes.get(name, 0)

    def attached(self) -> None:
        """The stage joined a live connection."""

    def detached(self) -> None:
        """The toxic was removed: wake anything waiting so held data moves on."""
        self.removed.set()
        for woken in self._waits:
            _wake(woken)

    async def wait(self, seconds: float) -> None:
        """Sleep, but stop early if the toxic is removed (held data is then delivered).

        A future and a timer, not ``asyncio.wait_for`` on ``removed``: that makes a task
        per wait and cost twice the CPU (65 against 34 µs a wait of 100 µs, loaded
        machine), which a slicer pays on every piece and a latency toxic on every chunk."""
        if seconds <= 0 or self.removed.is_set():
            return
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(max(seconds, GO_SHORTEST_SLEEP), _wake, woken)
        self._waits.add(woken)
        try:
            await woken
        finally:
            timer.cancel()
            self._waits.discard(woken)

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        await emit(chunk)

    async def eof(self) -> bool:
        """The source closed; return False to hold the close back for good."""
        return True


class Noop(Stage):
    pass


class Latency(Stage):
    attributes = ("latency", "jitter")

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        delay = self.attr("latency")
        jitter = self.attr("jitter")
        if jitter > 0:
            delay += self.rng.randrange(2 * jitter) - jitter
        sleep = delay / 1000 - (real_monotonic() - chunk.at)
        await self.wait(sleep)
        chunk.at += max(sleep, 0.0)
        await emit(chunk)


class Bandwidth(Stage):
    attributes = ("rate",)

    def __init__(self, toxic: Toxic, pipe: Pipe, rng: random.Random) -> None:
        super().__init__(toxic, pipe, rng)
        self.debt = 0.0

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        rate = self.attr("rate")  # KB/s, i.e. bytes per millisecond
        if rate <= 0:
            # As in Toxiproxy 2.12, a zero rate lets nothing through until the toxic goes.
            await self.removed.wait()
            await emit(chunk)
            return
        data = chunk.data
        self.debt += len(data) / (rate * 1000)
        step = rate * 100  # what 100 ms allow
        while len(data) > step and not self.removed.is_set():
            await self.wait(0.1)
            await emit(Chunk(data[:step], chunk.at))
            data = data[step:]
            self.debt -= 0.1
        started = real_monotonic()
        await self.wait(self.debt)
        self.debt = max(self.debt - (real_monotonic() - started), 0.0)
        await emit(Chunk(data, chunk.at))


class SlowClose(Stage):
    attributes = ("delay",)

    async def eof(self) -> bool:
        await self.wait(self.attr("delay") / 1000)
        return True


class Timeout(Stage):
    """Drops data; closes the connection once it has been idle ``timeout`` ms (0: never)."""

    attributes = ("timeout",)

    def __init__(self, toxic: Toxic, pipe: Pipe, rng: random.Random) -> None:
        super().__init__(toxic, pipe, rng)
        self._timer: asyncio.TimerHandle | None = None

    def attached(self) -> None:
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.attr("timeout") > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.attr("timeout") / 1000, self.pipe.link.close)

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        self._arm()  # the delay counts from the last chunk dropped

    def detached(self) -> None:
        super().detached()
        if self._timer is not None:
            self._timer.cancel()
        # Toxiproxy closes the connections a timeout toxic held when it is removed.
        self.pipe.link.close()


class ResetPeer(Stage):
    """On the first data (or close) in its direction, waits ``timeout`` ms, then resets."""

    attributes = ("timeout",)

    async def _fire(self) -> None:
        await self.wait(self.attr("timeout") / 1000)
        if not self.removed.is_set():
            self.pipe.link.close(reset=True)

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        await self._fire()

    async def eof(self) -> bool:
        await self._fire()
        return True


class Slicer(Stage):
    """Toxiproxy's slicer: each chunk halved again and again, each half moved by up to
    ``size_variation`` bytes, until a piece is within ``size_variation`` of
    ``average_size``; each piece written, then ``delay`` µs waited."""

    attributes = ("average_size", "size_variation", "delay")

    def bounds(self, start: int, end: int) -> list[int]:
        """Where to cut ``[start, end)``: ``[start, cut, cut, ..., end]``, as Toxiproxy's
        ``chunk`` returns them.  Where Toxiproxy would recurse forever or cut outside the
        piece (it crashes), the piece is kept whole or the cut kept inside it."""
        average, variation = self.attr("average_size"), self.attr("size_variation")
        if (end - start) - average <= variation or average + variation < 1:
            return [start, end]
        middle = start + (end - start) // 2
        if variation > 0:
            middle += self.rng.randrange(variation * 2) - variation
        middle = min(max(middle, start + 1), end - 1)
        return self.bounds(start, middle) + self.bounds(middle, end)

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        if not chunk.data:
            await emit(chunk)
            return
        cuts = self.bounds(0, len(chunk.data))
        for i in range(1, len(cuts), 2):
            await emit(Chunk(chunk.data[cuts[i - 1] : cuts[i]], chunk.at))
            await self.wait(self.attr("delay") / 1_000_000)
            if self.removed.is_set():
                if cuts[i] < len(chunk.data):
                    await emit(Chunk(chunk.data[cuts[i] :], chunk.at))
                return


class LimitData(Stage):
    attributes = ("bytes",)

    def __init__(self, toxic: Toxic, pipe: Pipe, rng: random.Random) -> None:
        super().__init__(toxic, pipe, rng)
        self.passed = 0

    async def data(self, chunk: Chunk, emit: Emit) -> None:
        remaining = max(self.attr("bytes") - self.passed, 0)
        data = chunk.data[:remaining]
        if data:
            self.passed += len(data)
            await emit(Chunk(data, chunk.at))
        if self.passed >= self.attr("bytes"):
            self.pipe.link.close()


TYPES: dict[str, type[Stage]] = {
    "noop": Noop,
    "latency": Latency,
    "bandwidth": Bandwidth,
    "slow_close": SlowClose,
    "timeout": Timeout,
    "reset_peer": ResetPeer,
    "slicer": Slicer,
    "limit_data": LimitData,
}
