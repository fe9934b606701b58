"""How late this machine wakes a sleeping thread, measured while a test runs.

The timing verdicts tell jitter from noise with it (``assertions/timing.py``): on a
loaded machine equal waits come out unequal by what these samples show.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..clock import CLOCK, machinery_thread, real_monotonic

if TYPE_CHECKING:
    from ..http.records import Exchange

PERIOD = 0.005
"""Seconds the probe sleeps between samples.  Not shorter: the samples of one busy moment
are alike, so more of them would thin the unseen tail (:meth:`~..assertions.timing.Noise.tail`)
without measuring more of the machine.  With each herd's samples counted 2.5 times (what a
2 ms period would take), the lowest chance the jitter test's clear side gave the lockstep
herds of ``tests/data/lockstep_herds_harsh.json.gz`` fell from 0.024 to 0.0017."""
KEPT = 24000
"""Samples kept (the last 2 minutes at one per PERIOD): a verdict on a span that ended
longer ago reads none of it."""


def span(exchanges: Iterable[Exchange]) -> tuple[float, float] | None:
    """From the first of ``exchanges`` beginning to the last one ending (one still open:
    its beginning), on the plugin's clock; None without exchanges."""
    exchanges = list(exchanges)
    if not exchanges:
        return None
    since = min(e.started_at for e in exchanges)
    until = max(e.started_at if e.ended_at is None else e.ended_at for e in exchanges)
    return since, until


def overlapped(woke: float, delay: float, since: float | None, until: float | None) -> bool:
    """Whether a sleep of :data:`PERIOD` that woke at ``woke``, ``delay`` late, overlapped
    the span from ``since`` to ``until`` (either open when None)."""
    return (since is None or woke >= since) and (until is None or woke - PERIOD - delay <= until)


class NoiseProbe:
    """A thread that sleeps :data:`PERIOD` again and again and records how late it woke."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=KEPT)
        """(when the probe woke, how late), oldest first."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = machinery_thread(self._run, "pytest-resilience noise probe")
            self._thread.start()

    def _run(self) -> None:
        while True:
            began = real_monotonic()
            if self._stop.wait(PERIOD):
                return
            woke = real_monotonic()
            # Stamped on the plugin's clock, like the records it is read beside; the
            # delay itself is real time, which is what the machine's noise is.
            self._samples.append((CLOCK.now(), woke - began - PERIOD))

    def samples(self, since: float | None = None, until: float | None = None) -> tuple[float, ...]:
        """The delays measured so far (seconds); with ``since`` / ``until`` (on the plugin's
        clock), those whose sleep overlapped that span: the noise of the span a verdict
        judges, not of what the test did before it (building a botocore client holds the
        GIL for hundreds of ms, which the probe records as a stall no wait of the herd
        lived through) nor after it.  A sleep that straddles an edge is kept whole, which
        counts more noise, never less.  Never topped up from another moment: samples taken
        at the verdict, once the clients are done, measure a quieter process (a 503 burst
        of ten clients under load: wake-ups p90 1-4 ms while they retried, 0.1 ms at the
        verdict), and read beside the burst they made its spread look like jitter.  The
        clear sides read few samples as weak evidence
        (:meth:`~..assertions.timing.Noise.tail` never takes the noise's tail thinner than
        their number allows); with none, no noise was measured and none is assumed."""
        kept = tuple(self._samples)  # one copy, made while the probe thread waits (the GIL)
        return tuple(delay for woke, delay in kept if overlapped(woke, delay, since, until))

    def samples_during(self, exchanges: Iterable[Exchange]) -> tuple[float, ...]:
        """The delays whose sleeps overlapped the span from the first of ``exchanges``
        beginning to the last one ending (one still open: its beginning): the noise a
        timing verdict reads beside them (:meth:`samples`)."""
        bounds = span(exchanges)
        return () if bounds is None else self.samples(*bounds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
