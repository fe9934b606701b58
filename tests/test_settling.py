"""Readers of a test's records wait for them to settle on the observers' word, not by polling;
the exchange recorder learns each delivery once."""

from __future__ import annotations

import threading
import time

from pytest_resilience.http.records import Exchange, ExchangeEvent
from pytest_resilience.observe import Timeline
from pytest_resilience.observe.join import Trace
from pytest_resilience.observe.settle import ExchangeRecorder, Settling


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


# -- the exchange recorder ---------------------------------------------------------------


def _answered(connection: int, *, written_whole: bool = True) -> ExchangeEvent:
    exchange = Exchange(
        "api", connection, 0, 1.0, 2.0 if written_whole else None, "GET", "/", (), None, "",
        200, False, "respond", None, None, None,
    )  # fmt: skip
    return ExchangeEvent(2.0, "api", "ended", exchange)


class FakeTap:
    """What the tap reports of each client connection: the bytes its client took."""

    def __init__(self) -> None:
        self.delivered: dict[int, int] = {}
        self.ended: set[int] = set()

    def heads(self) -> list[tuple[int, str | None, float | None]]:
        return [(c, f"head{c}", None) for c in self.delivered]

    def traces(self) -> list[Trace]:
        return [Trace(c, f"head{c}", n, c in self.ended) for c, n in self.delivered.items()]


def test_the_recorder_waits_for_the_tap_and_records_each_delivery_once() -> None:
    timeline = Timeline()
    recorder = ExchangeRecorder(timeline)
    tap = FakeTap()
    recorder.watch("api", tap.heads, tap.traces)
    tap.delivered = {1: 40, 2: 0}
    recorder.record(_answered(1), answer_end=100)
    recorder.record(_answered(2), answer_end=100)

    assert [e.delivered for e in recorder.settled(["api"], 0.0).exchanges("api")] == [None, None]

    def client_reads_then_one_gives_up() -> None:
        tap.delivered[1] = 100
        recorder.changed()
        tap.ended.add(2)
        recorder.changed()

    readers = [threading.Thread(target=recorder.settled, args=(["api"], 10.0)) for _ in range(4)]
    for reader in readers:
        reader.start()
    threading.Thread(target=client_reads_then_one_gives_up).start()
    events = recorder.settled(["api"], 10.0)
    for reader in readers:
        reader.join()

    assert [e.delivered for e in events.exchanges("api")] == [True, False]
    learnt = [e.step for e in timeline.snapshot() if isinstance(e, ExchangeEvent)]
    assert sorted(learnt) == ["delivered", "ended", "ended", "lost"]


def test_an_answer_whose_connection_failed_while_written_is_learnt_but_not_waited_for() -> None:
    timeline = Timeline()
    recorder = ExchangeRecorder(timeline)
    tap = FakeTap()
    recorder.watch("api", tap.heads, tap.traces)
    tap.delivered = {1: 10}
    recorder.record(_answered(1, written_whole=False), answer_end=100)

    started = time.monotonic()
    [exchange] = recorder.settled(["api"], 10.0).exchanges("api")
    assert exchange.delivered is None and time.monotonic() - started < 5

    tap.ended.add(1)
    [exchange] = recorder.settled(["api"], 10.0).exchanges("api")
    assert exchange.delivered is False
