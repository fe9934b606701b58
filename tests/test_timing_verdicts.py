"""The timing verdicts (jitter, growth, storm) as statistical tests.

The simulation at the end is the proof of their error rates: seeded fleets of clients
with each backoff strategy, at several fleet sizes, wait lengths and noise levels, with
the noise measured as the probe would while the fleet retries (a sample each ``PERIOD`` of
its schedule), judged by the verdicts as shipped.
Jittered strategies must be called jitter-free, a storm or not growing at most once in
4,800 fleets per verdict (95% upper bound under 1 in 1,000); jittered clients that do
not grow must never pass ``assert_backoff``; lockstep herds of 3 or more must be caught
when the noise is small against their waits, and never be cleared.
"""

from __future__ import annotations

import copy
import itertools
import random
from collections.abc import Callable

import pytest
from records import T0, attempts, exchange, failure, insufficient, marked, rule
from simulated import delay, herd, noisy, outcome, paced, real_time, recorded

from pytest_resilience import ConfigurationError
from pytest_resilience.assertions import (
    check_backoff,
    check_no_retry_storm,
)
from pytest_resilience.assertions.timing import (
    MIN_JITTER,
    Noise,
    alike_under_jitter,
    combined,
    jitter_bound,
    outgrown,
)
from pytest_resilience.http.records import Exchange
from pytest_resilience.observe.noise import PERIOD

QUIET = Noise([0.0001] * 500)
"""A machine that wakes threads 0.1 ms late."""


# -- the statistics ---------------------------------------------------------------------


def test_fisher_combination_is_the_tail_of_a_product_of_uniforms() -> None:
    assert combined([]) == 1.0
    assert combined([0.3]) == pytest.approx(0.3)
    # Two p-values of 0.05: P(U1*U2 <= 0.0025) = x(1 - ln x).
    assert combined([0.05, 0.05]) == pytest.approx(0.0025 * (1 + 5.991464547), rel=1e-6)
    rng = random.Random(0)
    draws = [combined([rng.random() for _ in range(3)]) for _ in range(20000)]
    assert sum(d < 0.05 for d in draws) / len(draws) == pytest.approx(0.05, abs=0.005)


def test_alike_under_jitter_is_the_law_of_the_range_of_uniform_draws() -> None:
    rng = random.Random(1)
    for n in (2, 3, 5):
        spreads = []
        for _ in range(20000):
            u = [rng.uniform(0.75, 1.0) for _ in range(n)]
            spreads.append(alike_under_jitter(u))
        # p-values of the least favourable jitter are uniform or larger (conservative).
        assert sum(p < 0.05 for p in spreads) / len(spreads) <= 0.05 + 0.005


def test_noise_apart_bounds_the_chance_that_noise_spreads_equal_waits() -> None:
    rng = random.Random(2)
    samples = [rng.expovariate(1000) for _ in range(300)]
    noise = Noise(samples, seed=3)
    assert noise.apart([0.5, 0.5, 0.5]) == 1.0
    unseen = 4 / 301  # no wait's noise is taken rarer than one delay beyond every sample
    assert noise.tail(1.0) == pytest.approx(unseen)
    assert noise.apart([0.5, 1.5, 2.5]) == pytest.approx(
        2 * (3 * unseen**2 * (1 - unseen) + unseen**3)
    )
    for n in (3, 10):
        hits = 0
        for _ in range(4000):
            waits = [0.5 + sum(rng.choices(samples, k=4)) for _ in range(n)]
            hits += noise.apart(waits) < 0.01
        assert hits / 4000 <= 0.01


def test_outgrown_bounds_the_chance_that_waits_never_growing_look_grown() -> None:
    """Waits that never grow (every retry drawn from the first one's range, the worst case
    ``D_k = factor * D_0``) with full jitter: the bound is a p-value, below 0.05 at most 5%
    of the time; with narrower jitter, whose bound is smaller, too."""
    rng = random.Random(13)
    for n, retries, width in ((1, 3, 1.0), (3, 3, 1.0), (5, 4, 1.0), (10, 3, 1.0), (5, 4, 0.5)):
        hits = 0
        for _ in range(500):
            rows = [
                [rng.uniform(1 - width, 1) * (1 if k == 0 else 1.5) for k in range(retries)]
                for _ in range(n)
            ]
            first = [r[0] for r in rows]
            later = [w for r in rows for w in r[1:]]
            hits += outgrown(first, later, 1.5, QUIET, width) < 0.05
        # Measured once with 1,000 draws a cell: 1.3-2.5%.
        assert hits / 500 <= 0.05, (n, retries, width, hits)


def test_outgrown_is_largest_at_the_widest_jitter_allowed() -> None:
    """The bound is taken at the jitter bound, not below it: checked on a grid of waits,
    fleet sizes and widths, no narrower jitter gives a larger bound than full jitter (so
    the bound at full jitter holds for every client; the same argument, pairing the draws
    of a narrower jitter with full jitter's, holds at every width)."""
    unseen = Noise([0.0001] * 100)  # its unseen tail, 4 / 101, as in a short test
    for n, waits in itertools.product((1, 3, 10), (2, 5, 12)):
        first = [0.1 * (0.5 + i / (2 * n)) for i in range(n)]
        for top in (0.16, 0.2, 0.4, 1.0):
            later = [top * (1 - j / (2 * waits)) for j in range(waits)]
            widest = outgrown(first, later, 1.5, unseen, 1.0)
            for width in (0.01, 0.05, 0.2, 0.5, 0.9):
                assert outgrown(first, later, 1.5, unseen, width) <= widest + 1e-12


def test_the_jitter_bound_is_above_the_true_jitter_but_at_its_level() -> None:
    """``jitter_bound`` at level 0.05: waits with jitter ``x(1-a)-1.0`` give a bound below
    ``a`` at most 5% of the time, and jitter-free waits a bound below ``MIN_JITTER``."""
    rng = random.Random(14)
    for width, n in itertools.product((0.25, 0.5, 1.0), (2, 5)):
        below = 0
        for _ in range(1000):
            columns = [[0.4 * 2**k * rng.uniform(1 - width, 1) for _ in range(n)] for k in range(3)]
            below += jitter_bound(columns, QUIET, 0.05) < width
        assert below / 1000 <= 0.05 + 0.02, (width, n, below)
    assert jitter_bound([[0.4] * 3, [0.8] * 3], QUIET, 0.001) < MIN_JITTER


# -- the verdicts on synthetic timelines --------------------------------------------------


def test_lockstep_exponential_fails_jitter_with_its_p_value_and_passes_jitter_false() -> None:
    timeline = herd([[0.4, 0.8, 1.6]] * 3)
    check_backoff(timeline, jitter=False, noise=QUIET)
    message = failure(check_backoff, timeline, noise=QUIET)
    assert rule(message).startswith(
        "retry waits carry no jitter: at 3 retries the waits of 3 operations lie within 0.0% "
        "of each other, where jitter of at least x0.8-1.0 would leave them this close with p = "
    )
    assert [m[2] for m in marked(message)] == ["2", "2", "2", "3", "3", "3", "4", "4", "4"]


def test_a_single_operation_cannot_show_jitter() -> None:
    """Issue 10: one call with SDK-style x0.75-1.0 jitter failed "cannot judge jitter" with
    3 attempts and "no jitter" with 4; one operation's waits cannot show randomness."""
    rng = random.Random(4)
    timeline = attempts(0.0, [0.5 * 2**k * rng.uniform(0.75, 1) for k in range(3)], "a")
    message = insufficient(check_backoff, timeline, noise=QUIET)
    assert "jitter needs waits at the same retry in at least 2 operations" in message
    # Nor growth: its one first wait may be a low draw of full jitter over a fixed range.
    message = insufficient(check_backoff, timeline, jitter=False, noise=QUIET)
    assert "the first waits may all be low jitter draws" in message


def test_small_multiplicative_jitter_is_never_called_jitter_free() -> None:
    """SDK-style ``x0.75-1.0`` jitter: two operations often lie within the ``x0.95-1.0``
    that is not taken as jitter (insufficient evidence, never "no jitter"); six show it."""
    rng = random.Random(5)
    for _ in range(20):
        pair = herd([[0.5 * 2**k * rng.uniform(0.75, 1) for k in range(3)] for _ in range(2)])
        assert outcome(check_backoff, pair, noise=QUIET) in ("pass", "insufficient")
    timeline = herd([[0.5 * 2**k * rng.uniform(0.75, 1) for k in range(3)] for _ in range(6)])
    check_backoff(timeline, noise=QUIET)


def test_fixed_interval_fails_growth_when_the_fleet_shows_no_jitter() -> None:
    timeline = herd([[0.4, 0.4, 0.4]] * 3)
    message = failure(check_backoff, timeline, jitter=False, noise=QUIET)
    assert rule(message).startswith(
        "retry waits do not grow: the longest wait after the first retry is 398 ms, against "
        "398 ms before the first; jitter-free waits growing 1.5x a retry would leave them "
        "this low"
    )
    with pytest.raises(ConfigurationError, match=r"judges nothing: ask for growth"):
        check_backoff(timeline, jitter=False, min_factor=1.0, noise=QUIET)  # it passed


def test_waits_alike_within_the_noise_measured_are_insufficient_evidence() -> None:
    """A loaded machine: 30 ms of noise against waits of 50 ms cannot tell jitter apart."""
    loud = Noise([0.008] * 50)
    timeline = herd([[0.05, 0.1, 0.2], [0.052, 0.104, 0.195], [0.049, 0.101, 0.21]])
    message = insufficient(check_backoff, timeline, noise=loud)
    assert "too alike to rule out timing noise" in message
    assert "one wait's noise p50 32.0 ms" in message


def test_no_retry_is_insufficient_evidence_for_backoff() -> None:
    message = insufficient(check_backoff, [exchange(0.0, 200, key="a")])
    assert "no operation retried (1 attempts in 1 operations)" in message


def test_a_gap_above_the_cap_fails_first() -> None:
    timeline = attempts(0.0, [0.1, 0.23, 0.8], "a")
    message = failure(check_backoff, timeline, max_delay=0.5, noise=QUIET)
    assert (
        rule(message)
        == "a retry waited 798 ms after the answer before it, above the cap of 500 ms."
    )


def test_a_wait_past_the_cap_by_no_more_than_noise_can_add_is_insufficient_evidence() -> None:
    """Noise measured up to 30 ms a wake-up can add 120 ms to a wait (``HOPS`` wake-ups):
    a wait of 603 ms under a 500 ms cap is not shown to break it, one of 643 ms is (issue 15: a full-jitter
    herd under load was failed for 1024 ms against a 1000 ms cap)."""
    loaded = Noise([0.002] * 300 + [0.03])
    assert loaded.most() == pytest.approx(0.12)
    message = insufficient(
        check_backoff, attempts(0.0, [0.1, 0.605], "a"), min_factor=1, max_delay=0.5, noise=loaded
    )
    assert (
        "a retry waited 603 ms after the answer before it, 103 ms above the cap of 500 ms, "
        "within the 120 ms that timing noise can add (4 wake-ups of up to 30.0 ms, the latest "
        "measured) plus the 20 ms tolerance, so whether the client keeps its cap is not shown"
        in message
    )
    message = failure(
        check_backoff, attempts(0.0, [0.1, 0.645], "a"), min_factor=1, max_delay=0.5, noise=loaded
    )
    assert rule(message).startswith(
        "a retry waited 643 ms after the answer before it, above the cap of 500 ms, by more "
        "than the 120 ms that timing noise can add (4 wake-ups of up to 30.0 ms, the latest "
        "measured) plus the 20 ms tolerance."
    )


def test_a_lockstep_herd_is_a_storm_and_a_jittered_one_is_not() -> None:
    lockstep = herd([[0.4, 0.8, 1.6]] * 4, spread=0.002)
    message = failure(check_no_retry_storm, lockstep, noise=QUIET, origin=T0)
    assert rule(message).startswith(
        "retry storm: 4 operations failed together (within 6.0 ms) and retried in lockstep "
        "over 3 retries: at 3 retries the waits of 4 operations lie within 0.0% of each other"
    )
    rng = random.Random(6)
    jittered = herd([[rng.uniform(0, 0.4 * 2**k) for k in range(3)] for _ in range(4)])
    check_no_retry_storm(jittered, noise=QUIET)


def test_a_storm_needs_a_herd() -> None:
    message = insufficient(check_no_retry_storm, herd([[0.4, 0.8]] * 2), noise=QUIET)
    assert "the largest such herd here has 2 (2 operations retried)" in message
    staggered = herd([[0.4, 0.8, 1.6]] * 3, spread=0.5)
    insufficient(check_no_retry_storm, staggered, noise=QUIET)


def test_a_refusing_fault_makes_a_clear_fleet_insufficient_evidence() -> None:
    """Issue 10: retries refused at connect leave no HTTP record; a reconnect storm then
    passed.  Spans in which a fault swallowed requests make the verdict say so."""
    rng = random.Random(7)
    jittered = herd([[rng.uniform(0, 0.4 * 2**k) for k in range(3)] for _ in range(4)])
    message = insufficient(
        check_no_retry_storm, jittered, noise=QUIET, blind=[(T0, T0 + 1.0, "down")], origin=T0
    )
    assert "attempts could leave no record (down from t+0 to t+1000 ms)" in message


def test_noise_lengthening_every_wait_alike_does_not_pass_for_no_jitter() -> None:
    """Review: waits of 4 ms jittered x0.8-1.0 under a steady 8 ms of noise each lie within
    7% of each other; read against the whole wait they looked jitter-free (a false storm
    in 999 of 1,000 fleets).  Read net of the noise they are not."""
    rng = random.Random(8)
    steady = Noise([0.002] * 500)
    rows = [[0.004 * 2**k * rng.uniform(0.8, 1) + 0.008 for k in range(3)] for _ in range(10)]
    timeline = herd(rows, spread=0.0001)
    assert outcome(check_no_retry_storm, timeline, noise=steady) in ("pass", "insufficient")
    assert outcome(check_backoff, timeline, noise=steady) in ("pass", "insufficient")


def test_a_fixed_interval_with_full_jitter_is_never_cleared_as_growing() -> None:
    """Session 3: waits drawn ``U(0, 0.4)`` at every retry do not grow, yet a later wait
    reaching 1.5x every first one happens by chance: the rule that cleared growth then
    passed ``assert_backoff(jitter=False)`` for 125 of 300 single operations, 54 of 300
    fleets of 3 and 30 of 300 fleets of 5 (seeded, quiet noise).  Such a client must come
    out "insufficient evidence" (or "does not grow"), never pass."""
    rng = random.Random(12)
    found = set()
    for n in (1, 3, 5, 10):
        for _ in range(100):
            rows = [[rng.uniform(0, 0.4) for _ in range(3)] for _ in range(n)]
            found.add(outcome(check_backoff, herd(rows), jitter=False, noise=QUIET))
    assert "pass" not in found, found


def test_a_cap_after_the_jitter_is_not_read_as_no_growth_or_no_jitter() -> None:
    """Review: AWS-style full jitter capped at 0.4 s (min(cap, U * D)) over 8 retries was
    called "does not grow" in a third of fleets: the waits at the cap were left out, and
    the rest read against a growth the cap forbids."""
    rng = random.Random(9)
    found = set()
    for _ in range(50):
        rows = [[min(0.4, rng.uniform(0, 0.05 * 2**k)) for k in range(8)] for _ in range(5)]
        found.add(outcome(check_backoff, herd(rows), max_delay=0.4, noise=QUIET))
    assert found <= {"pass", "insufficient"}, found


def test_a_retry_made_at_once_is_no_evidence_of_lockstep() -> None:
    """Stress run (urllib3 2.7, Retry.get_backoff_time: no wait before the first retry,
    then jitter): five clients' immediate first retries came 7 ms after their failures,
    all alike, and a well-jittered herd was called a storm."""
    rng = random.Random(10)
    rows = [[0.007, 0.3 + rng.uniform(0, 0.6), 0.6 + rng.uniform(0, 0.6)] for _ in range(5)]
    timeline = herd(rows, spread=0.0001)
    assert outcome(check_no_retry_storm, timeline, noise=QUIET) == "pass"
    assert outcome(check_backoff, timeline, noise=QUIET) in ("pass", "insufficient")


def test_lockstep_clients_served_one_after_another_are_not_cleared() -> None:
    """Stress run (3 urllib3 clients, ``Retry(backoff_factor=0.15)``: no jitter, waits 0,
    0.3, 0.6 s by ``urllib3/util/retry.py:Retry.get_backoff_time``; embedded engine, two CPU
    hogs): the waits came 301-305 and 601-609 ms while the noise probe's longest delay was
    2.2 ms.  Clients woken together are served one after another, a spread the probe cannot
    see; read against the probe alone, the herd was "shown jittered" (p = 1e-4) and, too
    small for a storm claim, would have passed."""
    probe = Noise([0.0002] * 170 + [0.0006, 0.0022], seed=11)
    timeline = herd(
        [[0.00377, 0.30123, 0.60477], [0.00375, 0.30516, 0.60872], [0.00374, 0.30338, 0.60123]]
    )
    assert outcome(check_no_retry_storm, timeline, noise=probe) in ("retry storm", "insufficient")
    assert outcome(check_backoff, timeline, noise=probe) in (
        "retry waits carry no jitter",
        "insufficient",
    )


def test_a_herd_grouped_by_the_user_with_overlapping_attempts_is_judged() -> None:
    """Review: a group= that puts overlapping attempts together made the first wait
    negative, and the herd search crashed with an IndexError."""
    timeline = herd([[0.4, 0.8]] * 3)
    insufficient(check_no_retry_storm, timeline, group=lambda e: "all", noise=QUIET)


# -- the simulation: error rates over strategies x fleet sizes x noise ----------------------

BASES = (0.4, 0.05)
"""Seconds of the first wait's range: long against the noise, and short (50 ms against
up to 5 ms wake-ups, where noise rivals the jitter)."""
RETRIES = 4


def _full(rng: random.Random, base: float, k: int, last: float) -> float:
    return rng.uniform(0, base * 2**k)


def _equal(rng: random.Random, base: float, k: int, last: float) -> float:
    half = base * 2**k / 2
    return half + rng.uniform(0, half)


def _decorrelated(rng: random.Random, base: float, k: int, last: float) -> float:
    return min(20.0, rng.uniform(base, 3 * (last or base)))


def _multiplicative(rng: random.Random, base: float, k: int, last: float) -> float:
    return base * 2**k * rng.uniform(0.75, 1.0)


def _exponential(rng: random.Random, base: float, k: int, last: float) -> float:
    return base * 2**k


def _fixed(rng: random.Random, base: float, k: int, last: float) -> float:
    return base


JITTERED = {
    "full": _full,
    "equal": _equal,
    "decorrelated": _decorrelated,
    "x0.75-1": _multiplicative,
}
LOCKSTEP = {"exponential": _exponential, "fixed": _fixed}
FLEETS = (2, 3, 5, 10)
NOISE_SCALES = (0.0001, 0.001, 0.005)
"""Mean delay of one wake-up (s): an idle machine, a busy one, an overloaded one."""


def fleet(
    strategy: Callable[[random.Random, float, int, float], float],
    size: int,
    base: float,
    scale: float,
    rng: random.Random,
) -> tuple[list[Exchange], list[list[float]]]:
    """``size`` clients failing together, each waiting as ``strategy`` says plus noise (the
    sum of 4 wake-up delays); and the noise each wait took, a row per client."""
    rows, noises = [], []
    for _ in range(size):
        waits, taken, last = [], [], 0.0
        for k in range(RETRIES):
            last = strategy(rng, base, k, last)
            taken.append(sum(delay(rng, scale) for _ in range(4)))
            waits.append(last + taken[-1])
        rows.append(waits)
        noises.append(taken)
    return herd(rows, spread=0.0005), noises


RUNS = 50
VIRTUAL_SAMPLES = 10
"""The probe's samples in a run on virtual time: its real time is the clients' work alone
(about 0.1-0.2 s in the examples), a sample each ``PERIOD``."""


def simulate(
    strategies: dict[str, Callable[[random.Random, float, int, float], float]], clock: str
) -> dict:
    """Each strategy x fleet size x base x noise level, ``RUNS`` fleets, judged as on
    ``clock``: on real time with the probe's samples over the longest schedule; on virtual
    time with the few samples of its short real time and the bounds it adds (each wait's
    noise is at most the real time the wait took, ``Noise.real``, here the noise itself:
    the tightest bound, the hardest test of the clear sides; ``Noise.bound``, the most of
    them); "paced": on real time with each client's sleep noted (``observe/pacing.py``:
    the wait less the sleep its client asked, here its noise again)."""
    rng = random.Random(20261202)
    tally: dict[tuple[str, int, float], dict[str, list[str]]] = {}
    for (name, strategy), size, base, scale in itertools.product(
        strategies.items(), FLEETS, BASES, NOISE_SCALES
    ):
        cell = tally.setdefault((name, size, base, scale), {"backoff": [], "storm": []})
        samples = VIRTUAL_SAMPLES if clock == "virtual" else int(base * (2**RETRIES - 1) / PERIOD)
        probe = Noise([delay(rng, scale) for _ in range(samples)], seed=rng.randrange(2**32))
        _ = probe.sums  # drawn here, once per cell: the copies below share the tables
        for _ in range(RUNS):
            timeline, noises = fleet(strategy, size, base, scale, rng)
            noise = probe
            if clock == "virtual":
                noise = copy.copy(probe)  # the samples' tables, drawn once per cell
                noise.bound = max(map(max, noises))
                noise.real = real_time(timeline, noises)
            pacing = paced(timeline, noises) if clock == "paced" else None
            cell["backoff"].append(
                outcome(check_backoff, timeline, min_factor=1.5, noise=noise, pacing=pacing)
            )
            cell["storm"].append(
                outcome(check_no_retry_storm, timeline, noise=noise, pacing=pacing)
            )
    return tally


@pytest.mark.parametrize("clock", ["real", "virtual", "paced"])
def test_jittered_fleets_are_called_jitter_free_a_storm_or_not_growing_under_1_in_1000(
    clock: str,
) -> None:
    """At most one false claim per verdict in 4,800 fleets: the exact (Clopper-Pearson) 95%
    upper bound on its rate is then 4.74 / 4,800 < 1 / 1,000."""
    tally = simulate(JITTERED, clock)
    runs = sum(len(v["backoff"]) for v in tally.values())
    assert runs == len(JITTERED) * len(FLEETS) * len(BASES) * len(NOISE_SCALES) * RUNS == 4800
    for verdict in ("backoff", "storm"):
        claims = {
            cell: claimed
            for cell, verdicts in tally.items()
            if (claimed := [o for o in verdicts[verdict] if o not in ("pass", "insufficient")])
        }
        assert sum(map(len, claims.values())) <= 1, (verdict, claims)
    # And the verdicts are not vacuous where the evidence allows, with waits long against
    # the noise: the storm verdict clears fleets of 5 or more (fleets of 3 often lie within
    # the x0.95-1.0 not taken as jitter); growth needs more, since only the first waits
    # bound the first wait's range and with full jitter possible they may all be low draws
    # (n of them lie under 1/s of the range with chance s^-n): fleets of 10 are cleared.
    # Decorrelated jitter grows by a random factor a retry and is cleared less often.
    storm = [
        o
        for (_, size, base, scale), v in tally.items()
        if size >= 5 and base == 0.4 and scale <= 0.001
        for o in v["storm"]
    ]
    assert storm.count("pass") >= 0.95 * len(storm)
    backoff = [
        o
        for (name, size, base, scale), v in tally.items()
        if name != "decorrelated" and size == 10 and base == 0.4 and scale <= 0.001
        for o in v["backoff"]
    ]
    assert backoff.count("pass") >= 0.95 * len(backoff)


def _fixed_full(rng: random.Random, base: float, k: int, last: float) -> float:
    return rng.uniform(0, base)


def _fixed_equal(rng: random.Random, base: float, k: int, last: float) -> float:
    return base / 2 + rng.uniform(0, base / 2)


def _fixed_multiplicative(rng: random.Random, base: float, k: int, last: float) -> float:
    return base * rng.uniform(0.75, 1.0)


def _once_full(rng: random.Random, base: float, k: int, last: float) -> float:
    return rng.uniform(0, base * (1 if k == 0 else 1.5))


NOT_GROWING = {
    "fixed, full jitter": _fixed_full,
    "fixed, equal jitter": _fixed_equal,
    "fixed, x0.75-1": _fixed_multiplicative,
    "x1.5 once, then flat, full jitter": _once_full,
}


@pytest.mark.parametrize("clock", ["real", "virtual", "paced"])
def test_jittered_clients_that_do_not_grow_never_pass_the_backoff_verdict(clock: str) -> None:
    """4,800 fleets whose wait ranges never exceed 1.5x the first (a fixed range, or 1.5x
    from the second retry on: the edge of what growth must rule out), with jitter: none
    passes ``assert_backoff`` (95% upper bound on the false pass rate 3 / 4,800, under
    1 in 1,000)."""
    tally = simulate(NOT_GROWING, clock)
    judged = [o for v in tally.values() for o in v["backoff"]]
    assert len(judged) == 4800
    assert "pass" not in judged


@pytest.mark.parametrize("clock", ["real", "virtual", "paced"])
def test_lockstep_herds_of_three_or_more_are_caught_and_never_cleared(clock: str) -> None:
    tally = simulate(LOCKSTEP, clock)
    for (name, size, base, scale), verdicts in tally.items():
        assert "pass" not in verdicts["storm"], (name, size, base, scale)
        assert "pass" not in verdicts["backoff"], (name, size, base, scale)
        if size >= 3 and base == 0.4 and scale <= 0.001:
            caught = verdicts["storm"].count("retry storm")
            assert caught >= 0.99 * RUNS, (name, size, scale, caught)
            rule = "retry waits do not grow" if name == "fixed" else "retry waits carry no jitter"
            assert verdicts["backoff"].count(rule) >= 0.95 * RUNS, (name, size, scale)


def _burst(size: int, fleets: int, rng: random.Random) -> list[str]:
    """``fleets`` runs of examples/async_client's 503 burst: ``size`` quotes failed four
    times each, their waits drawn as ``RetryPolicy.backoff`` in its client.py draws them
    (full jitter below 50 ms x 2^k, capped at 0.5 s) and judged as that test judges them,
    on a machine waking threads 1 ms late on average (p50 of one wait's noise about 4 ms,
    twice what CI's probe measured in the run that found this)."""
    verdicts = []
    for _ in range(fleets // RUNS):
        # 100 samples: about what the probe takes while such a burst retries (0.4-0.7 s).
        noise = Noise([delay(rng, 0.001) for _ in range(100)], seed=rng.randrange(2**32))
        for _ in range(RUNS):
            timeline, _ = fleet(_full, size, 0.05, 0.001, rng)
            verdicts.append(
                outcome(
                    check_backoff, timeline, jitter=True, max_delay=0.5, min_factor=1, noise=noise
                )
            )
    return verdicts


def test_the_async_clients_burst_has_the_quotes_it_needs_to_show_jitter() -> None:
    """Five quotes left jitter undecided in 1 of 8 CI runs (the waits of five clustered,
    p = 0.0036 > 1/2,000); twelve are shown jittered in each of 3,000 simulated runs (95%
    upper bound on the undecided rate 1 / 1,000), ten in all but 3 of 6,000, five in 2-3%."""
    rng = random.Random(20261203)
    assert _burst(12, 3000, rng) == ["pass"] * 3000
    assert _burst(5, 1000, rng).count("insufficient") >= 10


def _capped(wait: float, scale: float, runs: int, rng: random.Random) -> list[str]:
    """``runs`` herds of 5 clients waiting ``wait`` before each of 3 retries (a client at
    its cap waits exactly the cap), judged against a cap of 0.5 s."""
    verdicts = []
    for _ in range(runs):
        rows = [noisy([wait] * 3, scale, rng) for _ in range(5)]
        timeline, noise = recorded(rows, scale, rng, spread=scale)
        kwargs = {"jitter": False, "min_factor": 1, "max_delay": 0.5, "noise": noise}
        verdicts.append(outcome(check_backoff, timeline, **kwargs).split(" after")[0])
    return verdicts


def test_clients_at_their_cap_are_seldom_said_to_pass_it_and_clients_past_it_are() -> None:
    """The cap takes a wait past it by more than ``HOPS`` times the longest wake-up measured
    as the client's (``backoff._over_the_cap``), a bound, not a p-value: beyond the delays
    measured their tail is not known.  The simulated delays strike each client apart, 1 in
    100 a 10x hiccup the probe need not see, harsher than the stalls of a loaded process
    (which reach the probe too), and there the bound is not the 1 in 1,000 of the other
    timing claims: clients waiting exactly their cap are said to pass it in 5 of 400 runs
    (1-4 with other seeds; a fixed 20 ms allowance, as before issue 15, in 14-24%), and
    otherwise pass or are insufficient evidence; clients waiting 1.5x the cap are caught in
    nearly every run of a busy machine."""
    rng = random.Random(20261203)
    at_cap = _capped(0.5, 0.001, 200, rng) + _capped(0.5, 0.005, 200, rng)
    past = _capped(0.75, 0.001, 100, rng)
    claims = [o for o in at_cap if o not in ("pass", "insufficient")]
    assert len(claims) <= 8, claims
    assert all(o.startswith("a retry waited") or o == "insufficient" for o in past), past
    assert sum(o.startswith("a retry waited") for o in past) >= 95
