"""What the sender of a retry asked to sleep, and how that vetoes the probe's model, on
sends and timelines built by hand (``observe/pacing.py``: ``Pacing.asked``;
``assertions/waits.py``): which sleeps count as asked; jittered fleets whose clients
slept in chunks or drew whole milliseconds stay cleared; a fleet whose clients all asked
the least sleep is stopped where the probe alone would clear it; the arrivals veto
(retries that arrived closer together than the answers before them came).

No service and no clients run here: the herds on real time are in
``test_paced_verdicts.py``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
from paced import CHUNK
from simulated import herd

from pytest_resilience.assertions import (
    InsufficientEvidence,
    check_backoff,
    check_no_retry_storm,
)
from pytest_resilience.assertions.operations import answered_at
from pytest_resilience.assertions.timing import Noise
from pytest_resilience.http.records import Exchange
from pytest_resilience.observe.join import Trace
from pytest_resilience.observe.pacing import Pacing
from pytest_resilience.runtime.pacing import Sent, Sleep


def test_what_a_retry_asked_is_the_sleeps_of_its_sender_since_its_last_io() -> None:
    """``Pacing.asked``: a request's sends share the socket's read count, the first of them
    carries the sleeps since the caller's last I/O, and those after the answer count; a
    request whose send is unknown has None; sends to another tap, or on the port once its
    connection ended, are another's.  No sleep noted is 0 when the same caller sent the
    attempt before, and not known (None) when another did (it may not have waited)."""
    trace = Trace(1, "d", 0, True, opened_at=10.0, ended_at=20.0, port=5000)
    sends = [
        Sent(5000, 80, 10.1, 7, 0, ()),  # the first request
        Sent(5000, 80, 11.0, 7, 1, (Sleep(10.3, 0.1), Sleep(10.5, 0.4))),  # the retry's head ...
        Sent(5000, 80, 11.01, 7, 1, ()),  # ... and its body
        Sent(5001, 80, 11.0, 8, 0, (Sleep(10.2, 0.7),)),  # another connection
        Sent(5000, 81, 10.9, 9, 0, (Sleep(10.4, 0.45),)),  # the same local port, another service
    ]
    pacing = Pacing.join(sends, {3: trace}, since=0.0, tap=80)
    first = (3, 10.15)
    assert pacing.asked(3, 11.02, 10.25, first) == pytest.approx(0.5)
    assert pacing.asked(3, 11.02, 10.4, first) == pytest.approx(0.4)
    assert pacing.asked(3, 11.02, 10.55, first) == 0.0
    assert pacing.asked(3, 10.05, 0.0, first) is None
    assert pacing.asked(4, 11.02, 0.0, first) is None
    handed = [sends[0], Sent(5000, 80, 11.0, 12, 1, (Sleep(10.3, 0.1),))]  # the retry, by a task
    other = Pacing.join(handed, {3: trace}, since=0.0, tap=80)
    assert other.asked(3, 11.02, 10.25, first) == pytest.approx(0.1)
    assert other.asked(3, 11.02, 10.55, first) is None
    later = Trace(2, "d", 0, False, opened_at=21.0, port=5000)
    again = Pacing.join(
        [*sends, Sent(5000, 80, 21.5, 9, 0, (Sleep(21.1, 0.3),))], {3: trace, 4: later}, 0.0, 80
    )
    assert [s.caller for s in again.sends[4]] == [9]


# -- Found by the second review ------------------------------------------------------


def _sleeps(timeline: list[Exchange], asked: Callable[[int, float], list[float]]) -> Pacing:
    """The sends of a simulated ``herd``'s retries, each after the sleeps ``asked(n, wait)``
    gives for operation n's wait, slept one after another from the answer before it."""
    sends = {}
    for n in range(len({e.idempotency_key for e in timeline})):
        mine = sorted((e for e in timeline if e.idempotency_key == f"op{n}"), key=_started)
        for a, b in itertools.pairwise(mine):
            since = answered_at(a)
            slept, at = [], since
            for seconds in asked(n, b.started_at - since - 0.002):
                slept.append(Sleep(at, seconds))
                at += seconds
            sends[b.connection] = (Sent(b.connection, 0, b.started_at, n, 0, tuple(slept)),)
    return Pacing(sends)


def _started(exchange: Exchange) -> float:
    return exchange.started_at


_DRAW = random.Random(7)
DRAWS = [_DRAW.uniform(0.1, 0.4) for _ in range(20)]
"""Twenty clients' backoffs drawn from 100-400 ms (seeded: the test rests on no draw)."""
QUIET = Noise([0.0005] * 400)
"""A quiet machine's probe: the probe's model clears these fleets, and the test asks
whether what the clients asked vetoes that."""


def test_jittered_clients_that_sleep_in_chunks_are_not_vetoed() -> None:
    """Found by review: a backoff slept in 50 ms chunks (an interruptible sleep) made every
    client's longest sleep 50 ms, and the fleet was left undecided.  All of a caller's
    sleeps in the wait are what it asked."""
    timeline = herd([[w + 0.002] for w in DRAWS])

    def chunks(n: int, wait: float) -> list[float]:
        whole, left = divmod(wait, CHUNK)
        return [CHUNK] * int(whole) + ([left] if left > 0 else [])

    pacing = _sleeps(timeline, chunks)
    check_backoff(timeline, min_factor=1, noise=QUIET, pacing=pacing)
    check_no_retry_storm(timeline, noise=QUIET, pacing=pacing)


# Jitter drawn in whole milliseconds: two clients draw the same sleep


def test_jitter_drawn_in_whole_milliseconds_is_not_vetoed() -> None:
    """Found by review: ``retrying`` draws its random wait in whole milliseconds
    (``retrying.py`` ``Retrying.random_sleep``: ``random.randint(min, max)``, slept as
    ``time.sleep(sleep / 1000.0)``), so two of twenty clients often draw the same sleep,
    which a rule against repeated sleeps took for no jitter."""
    draws = [round(w, 3) for w in DRAWS[:19]] + [round(DRAWS[0], 3)]  # one draw twice
    timeline = herd([[w + 0.002] for w in draws])
    pacing = _sleeps(timeline, lambda n, wait: [draws[n]])
    check_backoff(timeline, min_factor=1, noise=QUIET, pacing=pacing)
    check_no_retry_storm(timeline, noise=QUIET, pacing=pacing)


def test_the_probe_alone_would_clear_what_the_veto_stops() -> None:
    """The veto's own test: the same fleet whose clients all asked the least sleep (a
    queue spread their waits) is cleared by the probe's model alone, and not with what
    they asked."""
    timeline = herd([[w + 0.002] for w in DRAWS])
    check_no_retry_storm(timeline, noise=QUIET)
    least = min(DRAWS)
    with pytest.raises(InsufficientEvidence, match="slept from"):
        check_no_retry_storm(
            timeline, noise=QUIET, pacing=_sleeps(timeline, lambda n, wait: [least])
        )


# Found by the third review


def test_the_arrivals_veto_keeps_the_async_clients_burst_of_five_as_decided() -> None:
    """examples/async_client's burst (full jitter under 50 ms x 2^k, cap 0.5 s), five
    quotes, 1,000 seeded fleets as test_timing_verdicts judges them: 18 insufficient
    without the arrivals veto ("five in 2-3%" in that test's docstring), 54 with it.  The
    arrivals' slack is 5% of the longest *arrival*, which holds the spread of the answers
    before (earlier retries' jitter), so later retry indices of a jittered herd clear less."""
    from test_timing_verdicts import _burst

    verdicts = _burst(5, 1000, random.Random(20261203))
    assert verdicts.count("insufficient") <= 30, verdicts.count("insufficient")


def test_a_herd_vetoed_by_its_arrivals_is_told_so() -> None:
    """Five clients 40 ms apart retrying on one tick: their waits lie 32% apart, and only
    the arrivals veto clears them.  The message says the waits are "too alike to rule
    out timing noise and jitter under x0.95-1.0" (they are 32% apart) and advises longer
    waits or more operations; it never names the arrivals."""
    timeline = herd([[0.5 - 0.04 * i + 0.002] for i in range(5)], spread=0.04)
    with pytest.raises(InsufficientEvidence, match="arrived closer together"):
        check_no_retry_storm(timeline, noise=Noise([0.0005] * 400))
