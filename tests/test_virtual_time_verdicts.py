"""Timing verdicts on virtual time read each wait's noise against the real time that wait
took (``assertions/timing.py``, ``Noise.real``): a wait's noise is real time, the jumps in
it cover only what the client asked to wait.  One wait held in real time (a client stalled
by a busy machine) used to weaken every wait's bound, and the herd's jitter went
undecided (once in ten stress runs of ``examples/payments`` on virtual time, session 16:
one wait took 193 ms of real time).
"""

from __future__ import annotations

import http.client
import threading
import time

import pytest
from records import attempts
from simulated import herd, outcome, real_time

from pytest_resilience import HttpService, Resilience
from pytest_resilience.assertions import (
    InsufficientEvidence,
    ResilienceAssertionError,
    check_backoff,
    check_no_retry_storm,
)
from pytest_resilience.assertions.operations import operations
from pytest_resilience.assertions.timing import Noise
from pytest_resilience.clock import real_monotonic

STALL = 0.25
"""Real seconds one client spends between an answer and its wait, as a stalled client would."""
WAITS = (0.02, 0.07, 0.13)
"""Waits drawn with full jitter below 150 ms by three clients (fixed here, so that the
test does not rest on a draw): 50 ms and more apart, far beyond the few ms of real time
each wait takes, and within the stall."""


def _retry_once(api: HttpService, key: str, wait: float, stall: float = 0.0) -> None:
    """One charge: a first attempt, ``stall`` real seconds of work on a 503, ``wait``
    seconds of sleep, then the retry (a new connection each, as a pool-less client)."""
    for attempt in range(2):
        conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
        conn.request("POST", "/charges", body=b"{}", headers={"Idempotency-Key": key})
        status = conn.getresponse().status
        conn.close()
        if status != 503 or attempt == 1:
            return
        until = real_monotonic() + stall
        while real_monotonic() < until:  # real work: nothing to jump over
            pass
        time.sleep(wait)


@pytest.mark.virtual_time
def test_one_wait_held_in_real_time_leaves_the_others_jitter_shown(
    resilience: Resilience,
) -> None:
    """Three charges fail together and retry after their draws; a fourth, after they are
    done, is held a quarter second of real time before its own wait.  The three waits lie
    50-110 ms apart where each took a few ms of real time: no noise can spread them so, and
    jitter is shown, the stall notwithstanding (it was insufficient evidence: the bound of
    every wait was the stalled one's, and the probe's few samples could not decide)."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=3)
    herd = [
        threading.Thread(target=_retry_once, args=(api, f"charge-{n}", wait))
        for n, wait in enumerate(WAITS)
    ]
    for client in herd:
        client.start()
    for client in herd:
        client.join()
    api.route("POST", "/charges").fail(503, count=1)
    _retry_once(api, "charge-stalled", 0.01, stall=STALL)

    ops = operations(api.exchanges)
    assert [len(op.attempts) for op in ops] == [2, 2, 2, 2]
    assert ops[-1].waits[0] >= STALL  # the stalled wait holds its real time
    api.assert_backoff(jitter=True, min_factor=1)


def _capped(noise: Noise) -> str:
    """Two clients capped at 100 ms: one waited 300 ms in 5 ms of real time, the other
    sat 300 ms in real time (noise can explain all of its excess)."""
    timeline = attempts(0.0, [0.3], "a") + attempts(0.001, [0.3], "b")
    spans = {"a": 0.005, "b": 0.3}
    real = {e.ended_at: spans[e.idempotency_key or ""] for e in timeline if e.status == 503}
    noise.real = lambda start, end: real[start]
    noise.bound = max(spans.values())
    try:
        check_backoff(timeline, jitter=False, min_factor=1, max_delay=0.1, noise=noise)
    except InsufficientEvidence:
        return "insufficient"
    except ResilienceAssertionError as exc:
        return str(exc)
    return "pass"


def test_a_wait_past_the_cap_by_more_than_its_own_real_time_fails() -> None:
    """The cap on virtual time: a wait about 200 ms past it in 5 ms of real time is the client's
    choice, whatever another wait took (it was insufficient evidence while one wait of
    300 ms real time set every wait's bound and the probe's latest delay was 80 ms)."""
    busy = Noise([0.08] + [0.001] * 20)
    verdict = _capped(busy)
    assert verdict.startswith("a retry waited 298 ms after the answer before it, above the cap")
    assert "no more than the real time the wait took" in verdict


WORK = [[0.0, 0.004], [0.012, 0.02], [0.025, 0.033], [0.04, 0.011]]
"""Seconds of their own work four lockstep clients put into each of their two waits: real
time on a busy machine, which the probe (a sleeping thread) does not see."""


def test_lockstep_clients_spread_by_their_own_work_are_never_shown_jittered() -> None:
    """Four clients that each wait 200 ms, twice, their waits spread up to 40 ms by their
    own work (each wait's real time is that work and a millisecond).  A quiet probe with
    many samples (a long run) models that spread as near impossible: read against it, as
    virtual time read every wait before, the herd passed the storm verdict and the jitter
    check.  On virtual time only a certainty clears it, and no wait lies further from the
    least than its own real time: insufficient evidence, never a pass (too spread, at 20%
    of the wait, to claim lockstep either)."""
    timeline = herd([[0.2 + work for work in row] for row in WORK], spread=0.0005)
    probe = Noise([0.0001] * 2000, bound=0.041)
    probe.real = real_time(timeline, [[work + 0.001 for work in row] for row in WORK])
    assert outcome(check_no_retry_storm, timeline, noise=probe) == "insufficient"
    assert outcome(check_backoff, timeline, min_factor=1, noise=probe) == "insufficient"
