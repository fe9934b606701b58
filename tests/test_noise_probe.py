"""The noise probe, which measures how late this machine wakes threads while a test runs
(what the timing verdicts read as timing noise), and the real time between two instants
of a clock that jumps."""

from __future__ import annotations

import threading

import pytest
from processes import wait_for
from records import T0, exchange

from pytest_resilience.assertions.timing import real_between
from pytest_resilience.clock import CLOCK
from pytest_resilience.observe.noise import PERIOD


def test_the_noise_probe_measures_while_it_runs_and_stops_its_thread() -> None:
    from pytest_resilience.observe.noise import NoiseProbe

    probe = NoiseProbe()
    assert probe.samples() == ()  # not started: nothing measured, nothing made up
    probe.start()
    try:
        wait_for(lambda: len(probe._samples) >= 5, what="five samples from the probe thread")
        assert all(-0.001 < s < 5.0 for s in probe.samples())
        # A verdict reads the wake-ups of the span it judges: none from before it or after it.
        since = CLOCK.now()
        wait_for(lambda: probe._samples[-1][0] >= since, what="a sample after the mark")
        until = CLOCK.now()
        wait_for(lambda: probe._samples[-1][0] > until, what="a sample after the span")
        kept = tuple(probe._samples)  # one copy: the probe thread appends meanwhile
        assert probe.samples()[: len(kept)] == tuple(d for _, d in kept)
        assert len(probe.samples(since=since)) < len(probe.samples())
        assert len(probe.samples(since=since, until=until)) < len(probe.samples(since=since))
    finally:
        probe.stop()
    assert not any(t.name == "pytest-resilience noise probe" for t in threading.enumerate())


def test_a_verdict_reads_the_samples_whose_sleeps_overlapped_its_span() -> None:
    """The span runs from the first exchange's start to the last one's end (an exchange
    never answered: its start); a sample is the sleep that ended when the probe woke, so
    one that straddles an edge counts, and none is made up where nothing was measured."""
    from pytest_resilience.observe.noise import NoiseProbe

    probe = NoiseProbe()
    span = [exchange(0.0, took=0.1), exchange(0.3, status=None)]  # T0 to T0 + 0.3
    assert probe.samples_during(span) == ()  # nothing measured: nothing read
    probe._samples.extend(
        [
            (T0 - 0.001, 0.0011),  # slept and woke before the span
            (T0 + 0.002, 0.0012),  # woke inside it, its sleep begun before: straddles
            (T0 + 0.15, 0.0013),  # inside
            (T0 + 0.3 + PERIOD + 0.001, 0.0014),  # woke after, but slept from inside
            (T0 + 0.3 + PERIOD + 0.019, 0.02),  # a long delay that began inside it
            (T0 + 0.3 + PERIOD + 0.03, 0.0016),  # slept wholly after it
        ]
    )
    assert probe.samples_during(span) == (0.0012, 0.0013, 0.0014, 0.02)
    assert probe.samples_during([]) == ()


def test_the_real_time_between_two_instants_counts_each_jump_once() -> None:
    """A jump of 5 s noted at 10.0: a read at 10.5 was made while it was being noted (the
    clock had not moved yet), so it lies before the jump, not inside it."""
    jumps = [(10.0, 5.0)]
    assert real_between(9.0, 16.0, jumps) == pytest.approx(2.0)
    assert real_between(10.5, 16.0, jumps) == pytest.approx(0.5)
    assert real_between(9.0, 10.5, jumps) == pytest.approx(1.5)
    assert real_between(15.0, 20.0, jumps) == pytest.approx(5.0)
