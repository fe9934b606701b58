"""Readers of a test's records wait for them to settle on the observers' word, not by polling."""

from __future__ import annotations

import threading

from pytest_resilience.observe.settle import Settling


def test_a_reader_reads_once_per_change_and_returns_when_settled() -> None:
    settling = Settling()
    state = {"delivered": 0}
    reads: list[int] = []
    go = threading.Event()

    def read() -> int:
        reads.append(state["delivered"])
        go.set()
        return state["delivered"]

    def observer() -> None:
        for _ in range(3):
            go.wait(5)
            go.clear()
            state["delivered"] += 1
            settling.changed()

    thread = threading.Thread(target=observer)
    thread.start()
    value = settling.until(read, lambda delivered: delivered == 3, timeout=10)
    thread.join()
    assert value == 3
    # One read at the start and one per change: it slept between them, never spun.
    assert reads == [0, 1, 2, 3]


def test_without_a_change_the_reader_sleeps_to_its_deadline_and_reads_once_more() -> None:
    settling = Settling()
    reads: list[int] = []
    value = settling.until(lambda: reads.append(1) or len(reads), lambda n: False, timeout=0.05)
    assert value == 2 and reads == [1, 1]  # at the start, and the freshest at the deadline
