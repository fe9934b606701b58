"""How late this machine wakes a sleeping thread, measured while a test runs.

The timing verdicts tell jitter from noise with it (``assertions/timing.py``): on a
loaded machine equal waits come out unequal by what these samples show.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..clock import CLOCK

if TYPE_CHECKING:
    from ..http.records import Exchange

PERIOD = 0.005
"""Seconds the probe sleeps between samples."""
KEPT = 6000
"""Samples kept (the last 30 s at one per PERIOD)."""
ENOUGH = 100
"""Samples a verdict wants; a short test's verdict takes the rest itself."""


def _overshoot(seconds: float) -> float:
    began = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - began - seconds


class NoiseProbe:
    """A thread that sleeps :data:`PERIOD` again and again and records how late it woke."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=KEPT)
        """(when the probe woke, how late), oldest first."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="pytest-resilience noise probe", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            began = time.monotonic()
            if self._stop.wait(PERIOD):
                return
            woke = time.monotonic()
            # Stamped on the plugin's clock, like the records it is read beside; the
            # delay itself is real time, which is what the machine's noise is.
            self._samples.append((CLOCK.now(), woke - began - PERIOD))

    def samples(self, since: float | None = None) -> tuple[float, ...]:
        """The delays measured so far (seconds), from the wake-ups at or after ``since``
        (on the plugin's clock) when given: the noise of the span a verdict judges, not of what the
        test did before it (building a botocore client holds the GIL for hundreds of ms,
        which the probe records as a stall no wait of the herd lived through); topped up
        to :data:`ENOUGH` on the spot."""
        kept = tuple(self._samples)  # one copy, made while the probe thread waits (the GIL)
        taken = tuple(delay for woke, delay in kept if since is None or woke >= since)
        if len(taken) >= ENOUGH:
            return taken
        return taken + tuple(_overshoot(0.001) for _ in range(ENOUGH - len(taken)))

    def samples_during(self, exchanges: Iterable[Exchange]) -> tuple[float, ...]:
        """The delays measured since the first of ``exchanges`` began: the noise a timing
        verdict reads beside them (:meth:`samples`)."""
        return self.samples(since=min((e.started_at for e in exchanges), default=None))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
