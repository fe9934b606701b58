"""Timing verdicts as statistical tests: no jitter, lockstep, no growth.

A client's wait before retry k of operation i is modelled as ``D_k * u + e``: ``D_k`` the
longest wait its policy allows at that retry, ``u`` its jitter draw in ``[1 - a, 1]``
(``a = 0`` without jitter; full jitter ``a = 1``, equal jitter ``a = 0.5``, SDK-style
``x0.75-1.0`` ``a = 0.25``), ``e >= 0`` the timing noise of this run: the time the machine
took to wake the client, pass its request on and notice it, measured while the test ran
(:class:`Noise`).

Each claim is made only when its p-value is below :data:`ALPHA`, so a client that does
what the claim denies is accused at most once in 1,000 verdicts:

- "no jitter": waits at the same retry index of several operations are closer together
  than jitter of at least ``x0.8-1.0`` would leave them (:func:`alike_under_jitter`; SDK
  jitter of ``x0.75-1.0`` is wider still, so its false-alarm rate is far below);
- jitter shown: they lie further apart than jitter of ``x0.95-1.0`` and the measured noise
  would leave them (:meth:`Noise.apart`; :data:`SHOWN_JITTER` says why not the noise alone);
- "does not grow": waits shown jitter-free stay so far below ``factor ** k`` times the
  first ones that jitter of ``x0.8-1.0`` would rarely draw them (:func:`judge_growth`).

Evidence from several retry indices is combined with Fisher's method (the exact tail of
a product of independent p-values).  When neither side reaches ``ALPHA``, the verdict says
the evidence is insufficient.  ``tests/test_timing_verdicts.py`` proves the rates by
seeded simulation over strategies, fleet sizes, wait lengths and noise levels.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..observe.noise import PERIOD as PROBE_PERIOD

ALPHA = 0.001
"""Largest chance of a false claim per verdict."""
MIN_JITTER = 0.2
"""The smallest jitter recognised as jitter: each wait drawn from ``[0.8, 1]`` of its range."""
SHOWN_JITTER = 0.05
"""The jitter that waits must show to be cleared: spreads that jitter of ``x0.95-1.0`` and
the measured noise could leave are not taken as jitter (between it and :data:`MIN_JITTER`
neither claim is made).  The noise probe, one sleeping thread, does not see the client's
own work between an answer and its next request, which a busy machine stretches unevenly:
under two CPU hogs, lockstep herds of 3-5 clients without jitter came 1-4% apart at waits
of 0.3-1.2 s (7% once, at 0.22 s; what lies beyond the 5% must still beat the noise) while
the probe's longest delay was 2-10 ms; read against the probe alone, a herd of 3 was
"shown jittered" (p = 1e-4)."""
HOPS = 4
"""Wake-ups between a client's decision and the record of its request (the client on the
answer, its timer, the proxy, the HTTP layer): a wait's noise is the sum of this many
measured delays."""
DRAWS = 4000
"""Sums drawn from the measured delays to tabulate the noise of one wait."""

Outcome = Literal["claim", "clear", "undecided"]


def combined(pvalues: Sequence[float]) -> float:
    """Fisher's method: the chance that independent p-values have a product this small."""
    ps = [min(max(p, 0.0), 1.0) for p in pvalues]
    if not ps:
        return 1.0
    if min(ps) == 0.0:
        return 0.0
    x = math.prod(ps)
    log = -math.log(x)
    return min(1.0, x * sum(log**i / math.factorial(i) for i in range(len(ps))))


def alike_under_jitter(waits: Sequence[float], floor: float = 0.0) -> float:
    """The chance that jitter of at least ``x0.8-1.0`` leaves ``waits`` this close.

    The spread (max - min) / D of ``n`` waits ``D * u + e`` is about the range of the
    ``u``, whose law for ``u`` uniform on ``[0.8, 1]`` is ``n t^(n-1) - (n-1) t^n`` at
    ``t = spread / 0.2``; wider jitter and independent noise spread the waits further.
    ``D`` is taken as the longest wait less ``floor`` (the median steady noise, more than
    the least of the waits' noises, which is all they share), so that noise lengthening
    every wait alike cannot make them look alike; noise lengthening some waits more than
    others widens their spread as much as their longest.
    """
    n = len(waits)
    top = max(waits) - floor
    if n < 2 or top <= 0:
        return 1.0
    t = (max(waits) - min(waits)) / top / MIN_JITTER
    return 1.0 if t >= 1 else n * t ** (n - 1) - (n - 1) * t**n


class Noise:
    """The timing noise measured in this run: delays in waking a sleeping thread.

    ``samples`` are how late a thread woke from sleeps of ``period`` seconds.  One wait's
    noise is modelled two ways, and the longer is taken: the sum of :data:`HOPS` wake-up
    delays drawn alike from all but the longest 1% (the *steady* noise of a busy
    machine), or one stall of the whole
    process, drawn by the time it covers (``period`` plus the delay: a client waking at
    any moment lands in a long stall as often as the stall lasts, though the probe records
    it once, and a stall delays every thread at once, so it counts once a wait).
    """

    def __init__(
        self, samples: Sequence[float] = (), seed: int = 0, period: float = PROBE_PERIOD
    ) -> None:
        self.samples = tuple(max(s, 0.0) for s in samples)
        self.steady: list[float]
        self.sums: list[float]
        if self.samples:
            rng = random.Random(seed)
            # Steady delays: all but the longest 1% of samples (those are stalls, drawn apart).
            ordered = sorted(self.samples)
            usual = ordered[: max(1, len(ordered) - len(ordered) // 100)]
            flat = rng.choices(usual, k=HOPS * DRAWS)
            steady = [math.fsum(c) for c in zip(*[iter(flat)] * HOPS, strict=True)]
            weights = [period + s for s in self.samples]
            stalls = rng.choices(self.samples, weights=weights, k=DRAWS)
            self.steady = sorted(steady)
            self.sums = sorted(map(max, steady, stalls))
        else:
            self.steady = self.sums = [0.0]

    def quantile(self, q: float, steady: bool = False) -> float:
        """The ``q`` quantile of one wait's noise (seconds); of its steady part alone
        with ``steady`` (what lengthens every wait alike)."""
        table = self.steady if steady else self.sums
        return table[min(int(q * len(table)), len(table) - 1)]

    def tail(self, seconds: float) -> float:
        """The chance that one wait's noise is ``seconds`` or more: as measured, and never
        taken thinner than the chance that one of its :data:`HOPS` delays exceeds every
        sample (beyond what was measured the tail is not known)."""
        above = (len(self.sums) - bisect.bisect_left(self.sums, seconds)) / len(self.sums)
        return max(above, HOPS / (len(self.samples) + 1))

    def apart(self, waits: Sequence[float], jitter: float = 0.0) -> float:
        """An upper bound on the chance that noise alone, with jitter of at most ``jitter``
        (a share of the wait), spreads waits this far.

        Such waits ``D * u_i + e_i`` (``u_i`` in ``[1 - jitter, 1]``) lie above their least
        by at most ``jitter * D`` plus their own noise, so the k-th largest excess beyond
        ``jitter * D`` reaches ``d`` only if k noises do: a binomial tail; the least of them
        over k, times the k tried (Bonferroni).  ``D`` is taken as its most, the longest
        wait over ``1 - jitter``.
        """
        least = min(waits)
        slack = jitter * max(waits) / (1 - jitter)
        excesses = sorted((w - least - slack for w in waits), reverse=True)[:-1]
        n = len(waits)
        best = min(
            (_binomial_tail(n, self.tail(d), k) for k, d in enumerate(excesses, start=1)),
            default=1.0,
        )
        return min(1.0, best * len(excesses))

    def describe(self) -> str:
        return (
            f"timing noise measured in this run: {len(self.samples)} samples, one wait's "
            f"noise p50 {self.quantile(0.5) * 1000:.1f} ms, p99.9 {self.quantile(0.999) * 1000:.1f} ms"
        )


def _binomial_tail(n: int, q: float, k: int) -> float:
    """P(Binomial(n, q) >= k)."""
    return min(1.0, sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k, n + 1)))


NOISE_CEILING = 0.99
"""Quantile of one wait's noise that a wait must pass to be a wait the client chose."""
NOISE_BOUND = 0.999
"""Quantile of one wait's noise taken as its most, where a wait is read net of noise."""


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    claim_p: float
    """Chance of evidence this strong for the claim if the claim were false."""
    clear_p: float
    """Chance of evidence this strong against the claim if the claim were true."""


def _decide(claim_p: float, clear_p: float, alpha: float) -> Judgement:
    if claim_p < alpha:
        return Judgement("claim", claim_p, clear_p)
    if clear_p < alpha:
        return Judgement("clear", claim_p, clear_p)
    return Judgement("undecided", claim_p, clear_p)


def evident(columns: Sequence[Sequence[float]], noise: Noise) -> list[Sequence[float]]:
    """The columns of waits that carry evidence on jitter: two waits or more, typically
    (their median) above the steady noise of 99 in 100 waits, and not a retry made at once.

    A retry the client makes at once (urllib3's first) shows no jitter to judge, only the
    noise and the client's own work between attempts; it is told by its typical wait being
    under :data:`MIN_JITTER` of the next retry's, shorter than any backoff that grows.
    """
    ceiling = max(noise.quantile(NOISE_CEILING, steady=True), 0.0)
    medians = [statistics.median(c) if c else 0.0 for c in columns]
    kept = []
    for k, column in enumerate(columns):
        at_once = k + 1 < len(columns) and medians[k] < MIN_JITTER * medians[k + 1]
        if len(column) >= 2 and medians[k] > ceiling and not at_once:
            kept.append(column)
    return kept


def judge_no_jitter(
    columns: Sequence[Sequence[float]], noise: Noise, alpha: float = ALPHA
) -> Judgement:
    """Claim "no jitter" from waits at the same retry index (one column per index, one
    wait per operation); clear it when noise cannot explain their spread."""
    shown = evident(columns, noise)
    if not shown:
        return Judgement("undecided", 1.0, 1.0)
    floor = noise.quantile(0.5, steady=True)
    claim = combined([alike_under_jitter(c, floor) for c in shown])
    clear = combined([noise.apart(c, SHOWN_JITTER) for c in shown])
    return _decide(claim, clear, alpha)


def judge_growth(
    columns: Sequence[Sequence[float]],
    factor: float,
    noise: Noise,
    jitter_free: bool,
    alpha: float = ALPHA,
) -> Judgement:
    """Claim "the waits do not grow by ``factor`` a retry" from waits by retry index
    (``columns[k]``: the waits before retry k+1; an empty column is not judged).

    The claim is made only of waits shown jitter-free (``jitter_free``: jitter under
    ``x0.8-1.0``, by :func:`judge_no_jitter`): had they grown, the longest wait ``D_k``
    the policy allows at retry k would be at least ``factor ** k`` times ``D_0``, itself
    at least the longest first wait less the noise, and ``n`` waits ``D_k * u`` all
    staying below ``M`` has a chance of at most ``((M / D_k - 0.8) / 0.2) ** n``.  (With
    full jitter possible, few waits never rule growth out.)  Growth is clear when a later
    wait, less the noise of 99 in 100 waits, reaches ``factor`` times every first one.
    """
    judged = [(k, c) for k, c in enumerate(columns) if c]
    if len(judged) < 2 or judged[0][0] != 0:
        return Judgement("undecided", 1.0, 1.0)
    first = max(judged[0][1]) - noise.quantile(NOISE_BOUND)
    pvalues = []
    if jitter_free and first > 0:
        for k, column in judged[1:]:
            ratio = max(column) / (first * factor**k)
            share = (ratio - (1 - MIN_JITTER)) / MIN_JITTER
            pvalues.append(min(1.0, max(share, 0.0)) ** len(column))
    claim = combined(pvalues) if pvalues else 1.0
    later = max(w for _, column in judged[1:] for w in column)
    reached = later - noise.quantile(NOISE_CEILING) >= factor * max(judged[0][1])
    return _decide(claim, 0.0 if reached else 1.0, alpha)
