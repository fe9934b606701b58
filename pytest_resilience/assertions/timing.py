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
  on virtual time, further than that jitter and each wait's own real time, a certainty;
- "does not grow": waits shown jitter-free stay so far below ``factor ** k`` times the
  first ones that jitter of ``x0.8-1.0`` would rarely draw them (:func:`judge_growth`);
- growth shown: the later waits lie so far above ``factor`` times the first ones that a
  client whose waits never grow beyond that, with the widest jitter its waits leave
  likely (:func:`jitter_bound`), would rarely leave them there (:func:`outgrown`).

Evidence from several retry indices is combined with Fisher's method (the exact tail of
a product of independent p-values).  When neither side reaches ``ALPHA``, the verdict says
the evidence is insufficient.  ``tests/test_timing_verdicts.py`` proves the rates by
seeded simulation over strategies, fleet sizes, wait lengths and noise levels; its noise
is drawn wait by wait, so one delay holding several clients at once is checked on
lockstep herds recorded under load instead (``tests/test_recorded_herds.py``).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
import statistics
from collections.abc import Callable, Sequence
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


def alike_under_jitter(
    waits: Sequence[float], floor: float = 0.0, jitter: float = MIN_JITTER
) -> float:
    """The chance that jitter of at least ``jitter`` (``x0.8-1.0`` unless told) leaves
    ``waits`` this close.

    The spread (max - min) / D of ``n`` waits ``D * u + e`` is about the range of the
    ``u``, whose law for ``u`` uniform on ``[1 - jitter, 1]`` is ``n t^(n-1) - (n-1) t^n``
    at ``t = spread / jitter``; wider jitter and independent noise spread the waits further.
    ``D`` is taken as the longest wait less ``floor`` (the median steady noise, more than
    the least of the waits' noises, which is all they share), so that noise lengthening
    every wait alike cannot make them look alike; noise lengthening some waits more than
    others widens their spread as much as their longest.
    """
    n = len(waits)
    top = max(waits) - floor
    if n < 2 or top <= 0:
        return 1.0
    t = (max(waits) - min(waits)) / top / jitter
    return 1.0 if t >= 1 else n * t ** (n - 1) - (n - 1) * t**n


class Noise:
    """The timing noise measured in this run: delays in waking a sleeping thread, and the
    way out of the calls the plugin drove.

    ``samples`` are how late a thread woke from sleeps of ``period`` seconds.  One wait's
    noise is modelled two ways, and the longer is taken: the sum of :data:`HOPS` wake-up
    delays drawn alike from all but the longest 1% (the *steady* noise of a busy
    machine), or one stall of the whole
    process, drawn by the time it covers (``period`` plus the delay: a client waking at
    any moment lands in a long stall as often as the stall lasts, though the probe records
    it once, and a stall delays every thread at once, so it counts once a wait).

    The probe does not see the client's own work between an answer and its next request,
    which a busy machine stretches unevenly (``docs/wait-noise-research.md``: under load
    lockstep waits lay 8/27/55 ms above their least at p50/p90/p99, the probe's model
    4/13/26 ms).  ``outbound`` measures it where the plugin drives the client
    (:func:`~.operations.outbound`: each call's start to its first request, above the
    quickest); with it, a third model is one wake-up delay plus one way out drawn from an
    exponential law of the ways' mean (:meth:`way_mean`), and the longest of the three is
    taken.  Exponential, because a few calls cannot show the tail beyond their longest
    (taken no thinner than 1 in their number + 1 there, it left ten well-jittered driven
    clients undecided under load), and because that law is what was measured: the
    waits above their least came 8.1/26.5/55.1 ms at p50/p90/p99 where an exponential of
    mean 12 ms has 8.3/27.6/55.3.  Only the clear sides read it (:meth:`tail`,
    :meth:`most` and the quantiles of one wait's noise): noise the claims do not count
    makes them no likelier.
    """

    def __init__(
        self,
        samples: Sequence[float] = (),
        seed: int = 0,
        period: float = PROBE_PERIOD,
        outbound: Sequence[float] = (),
        bound: float | None = None,
        real: Callable[[float, float], float] | None = None,
    ) -> None:
        self.bound = None if bound is None else max(bound, 0.0)
        """On virtual time: the most real time one of the waits judged took.  A wait's
        noise is real time (the jumps only cover what the client asked to wait), so no
        wait carries more: a certainty where the samples give a chance."""
        self.real = real
        """On virtual time: the real seconds between two instants of the test's clock
        (:func:`real_between` over its jumps), so the most noise the wait between them
        carries: each wait's own bound, where :attr:`bound` is the most of them."""
        self.samples = tuple(max(s, 0.0) for s in samples)
        self.outbound = tuple(max(o, 0.0) for o in outbound)
        self._seed = seed
        self._period = period

    @functools.cached_property
    def _drawn(self) -> tuple[list[float], list[float]]:
        """The sorted draws of one wait's noise: its steady part, and the whole (drawn on
        first use: the bounds, :meth:`most`, need none of them)."""
        rng = random.Random(self._seed)
        steady = stalls = [0.0] * DRAWS
        steady_sorted, sums = [0.0], [0.0]
        if self.samples:
            # Steady delays: all but the longest 1% of samples (those are stalls, drawn apart).
            ordered = sorted(self.samples)
            usual = ordered[: max(1, len(ordered) - len(ordered) // 100)]
            flat = rng.choices(usual, k=HOPS * DRAWS)
            steady = [math.fsum(c) for c in zip(*[iter(flat)] * HOPS, strict=True)]
            weights = [self._period + s for s in self.samples]
            stalls = rng.choices(self.samples, weights=weights, k=DRAWS)
            steady_sorted = sorted(steady)
            sums = sorted(map(max, steady, stalls))
        if self.outbound:
            timers = rng.choices(self.samples or (0.0,), k=DRAWS)
            mean = self.way_mean()
            ways = [rng.expovariate(1 / mean) if mean > 0 else 0.0 for _ in range(DRAWS)]
            sums = sorted(
                max(a, b, t + w) for a, b, t, w in zip(steady, stalls, timers, ways, strict=True)
            )
        return steady_sorted, sums

    @property
    def steady(self) -> list[float]:
        """One wait's steady noise, drawn and sorted."""
        return self._drawn[0]

    @property
    def sums(self) -> list[float]:
        """One wait's noise, drawn and sorted."""
        return self._drawn[1]

    def way_mean(self) -> float:
        """The mean of the exponential law that the ways out are taken to follow: their sum
        over their number less one (above the quickest, one of them is 0 and the others
        are, for an exponential law, as many draws of it)."""
        if len(self.outbound) < 2:
            return 0.0
        return math.fsum(self.outbound) / (len(self.outbound) - 1)

    def quantile(self, q: float, steady: bool = False) -> float:
        """The ``q`` quantile of one wait's noise (seconds); of its steady part alone
        with ``steady`` (what lengthens every wait alike)."""
        table = self.steady if steady else self.sums
        return self._within(table[min(int(q * len(table)), len(table) - 1)])

    def net(self) -> float:
        """The noise taken off a wait to read it net of noise: on virtual time the
        :attr:`bound` (no wait carries more), else that of 999 waits in 1,000."""
        return self.quantile(NOISE_BOUND) if self.bound is None else self.bound

    def _within(self, seconds: float) -> float:
        return seconds if self.bound is None else min(seconds, self.bound)

    def most(self, span: tuple[float, float] | None = None) -> float:
        """The most noise one wait carries if no wake-up is later than the latest measured:
        :data:`HOPS` wake-ups, each that late, or one wake-up that late and the slowest way
        out measured (:attr:`outbound`).  Beyond the samples the tail is not known
        (:meth:`tail`), so this is a bound by assumption, which a stall of the whole
        process meets (the probe, asleep a few ms at a time, is held by it too).  On
        virtual time, never more than the real time the wait over ``span`` took
        (:attr:`real`), or any wait (:attr:`bound`)."""
        timer = max(self.samples, default=0.0)
        most = self._within(max(HOPS * timer, timer + max(self.outbound, default=0.0)))
        if span is not None and self.real is not None:
            most = min(most, max(self.real(*span), 0.0))
        return most

    def most_said(self, most: float, span: str = "the wait took") -> str:
        """``most`` seconds of :meth:`most` as the verdicts name the allowance; ``span``
        says what the real time that bounds it on virtual time is."""
        timer = max(self.samples, default=0.0)
        way = max(self.outbound, default=0.0)
        if self.real is not None:
            how = (
                f"no more than the real time {span}, nor {HOPS} wake-ups as late as the "
                "latest measured"
            )
        elif timer + way > HOPS * timer:  # :meth:`most` took the way out
            how = (
                f"a wake-up as late as the latest measured, {timer * 1000:.1f} ms, and the "
                f"slowest way out measured, {way * 1000:.1f} ms"
            )
        else:
            how = f"{HOPS} wake-ups of up to {most / HOPS * 1000:.1f} ms, the latest measured"
        return f"the {most * 1000:.0f} ms that timing noise can add ({how})"

    def tail(self, seconds: float) -> float:
        """The chance that one wait's noise is ``seconds`` or more: as measured, and never
        taken thinner than the chance that one of its :data:`HOPS` delays exceeds every
        sample (beyond what was measured the tail is not known).  None beyond
        :attr:`bound`."""
        if self.bound is not None and seconds > self.bound:
            return 0.0
        above = (len(self.sums) - bisect.bisect_left(self.sums, seconds)) / len(self.sums)
        return max(above, HOPS / (len(self.samples) + 1))

    def apart(
        self, waits: Sequence[float], jitter: float = 0.0, bounds: Sequence[float] | None = None
    ) -> float:
        """An upper bound on the chance that noise alone, with jitter of at most ``jitter``
        (a share of the wait), spreads waits this far; ``bounds``, in the order of
        ``waits``: the most noise each can carry (on virtual time, the real time it took).

        Such waits ``D * u_i + e_i`` (``u_i`` in ``[1 - jitter, 1]``) lie above their least
        by at most ``jitter * D`` plus their own noise.  One delay may hold several clients
        at once (their work queued behind each other's, one pause of the process: 7 of 8
        lockstep clients came 14 ms after the eighth under load), so waits lying together
        count as one *level*: sorted, a wait more than ``jitter * D`` above the first wait
        of its level starts the next.  The k-th highest level reaching ``d`` beyond
        ``jitter * D`` needs k noises that reach it: a binomial tail; the least of them over
        k, times the k tried (Bonferroni).  ``D`` is taken as its most, the longest wait
        over ``1 - jitter``.  A group held by one delay that straddles a level's bound
        still counts twice, its second level barely above the first: a small excess, weak
        evidence.  ``tests/test_recorded_herds.py`` checks the bound on lockstep herds
        recorded under load.

        With ``bounds`` the waits must lie apart by a certainty too: a wait further above
        the least than ``jitter * D`` and its own bound (the least wait's noise is at
        least 0), which no such noise can do.  On virtual time that certainty is the
        answer, 0 or 1.  On real time (the bounds are what the clients asked to sleep,
        :mod:`~..observe.pacing`) it only vetoes: without it the answer is 1, with it
        the levels' chance below, so that what the clients asked never clears waits the
        probe's model does not.  The levels'
        chance is not asked there: it rests on the probe's model of a wait's noise, which
        leaves the clients' own work out (``docs/wait-noise-research.md``), and on virtual
        time that work is all of the noise (the jumps end each sleep on its deadline).
        Nor can the bounds stand in for the probe: a wait's real time holds its own noise,
        so waits at a level always find room there.
        """
        ordered = sorted(waits)
        slack = jitter * ordered[-1] / (1 - jitter)
        if bounds is not None:
            if not beyond_noise(waits, jitter, bounds):
                return 1.0
            if self.real is not None:
                return 0.0
        starts = [ordered[0]]
        for wait in ordered[1:]:
            if wait > starts[-1] + slack:
                starts.append(wait)
        levels = sorted((start - ordered[0] - slack for start in starts[1:]), reverse=True)
        if not levels:
            return 1.0
        n = len(waits)
        best = min(_binomial_tail(n, self.tail(d), k) for k, d in enumerate(levels, start=1))
        return min(1.0, best * len(levels))

    def describe(self) -> str:
        calls = (
            f" and the way out of {len(self.outbound)} driven calls (exponential, mean "
            f"{self.way_mean() * 1000:.1f} ms)"
            if self.outbound
            else ""
        )
        bound = (
            ""
            if self.bound is None
            else ", and on virtual time each wait's noise at most the real time it took "
            f"({self.bound * 1000:.1f} ms at the most)"
            if self.real is not None
            else f", and on virtual time at most {self.bound * 1000:.1f} ms (the most real time "
            "a wait took)"
        )
        return (
            f"timing noise measured in this run: {len(self.samples)} samples{calls}, one "
            f"wait's noise p50 {self.quantile(0.5) * 1000:.1f} ms, p99.9 "
            f"{self.quantile(0.999) * 1000:.1f} ms{bound}"
        )


def beyond_noise(waits: Sequence[float], jitter: float, bounds: Sequence[float]) -> bool:
    """Whether some of ``waits`` lies further above the least than jitter of at most
    ``jitter`` (a share of the longest wait, taken over ``1 - jitter``) and its own bound
    in ``bounds`` (the most noise it can carry) allow: what no such noise can do
    (:meth:`Noise.apart`)."""
    least = min(waits)
    slack = jitter * max(waits) / (1 - jitter)
    return any(w - least - slack > max(b, 0.0) for w, b in zip(waits, bounds, strict=True))


def real_between(start: float, end: float, jumps: Sequence[tuple[float, float]]) -> float:
    """The real seconds between two instants of a test's clock (:class:`RealTime`)."""
    return RealTime(jumps)(start, end)


class RealTime:
    """The real seconds between two instants of a test's clock: the virtual ones less
    ``jumps`` (:attr:`Clock.jumps <pytest_resilience.clock.Clock.jumps>`) between them.
    A jump lies between them when ``end`` was read after it and ``start`` before: a read
    made while the jump was being noted (after its instant, before the clock moved) is
    before it, though later than its instant.  Asked of many pairs (each wait, each
    hand-over), so the jumps are summed once: they land in the order they were made."""

    def __init__(self, jumps: Sequence[tuple[float, float]]) -> None:
        self._landings = [at + size for at, size in jumps]
        self._sums = [0.0, *itertools.accumulate(size for _, size in jumps)]

    def __call__(self, start: float, end: float) -> float:
        first = bisect.bisect_right(self._landings, start)
        last = bisect.bisect_right(self._landings, end)
        return end - start - (self._sums[last] - self._sums[first]) if last > first else end - start


def _binomial_tail(n: int, q: float, k: int) -> float:
    """P(Binomial(n, q) >= k)."""
    if k <= 0 or q >= 1:
        return 1.0
    if k > n or q <= 0:
        return 0.0
    term = math.comb(n, k) * q**k * (1 - q) ** (n - k)
    total = 0.0
    for i in range(k, n + 1):
        total += term
        if i > n * q and term <= total * 1e-16:  # past the mode the terms only shrink
            break
        term *= (n - i) / (i + 1) * q / (1 - q)
    return min(1.0, total)


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
    level: float = ALPHA
    """The p-value either side had to pass."""


def _decide(claim_p: float, clear_p: float, alpha: float) -> Judgement:
    if claim_p < alpha:
        return Judgement("claim", claim_p, clear_p, alpha)
    if clear_p < alpha:
        return Judgement("clear", claim_p, clear_p, alpha)
    return Judgement("undecided", claim_p, clear_p, alpha)


def evident(columns: Sequence[Sequence[float]], noise: Noise) -> list[Sequence[float]]:
    """The columns of waits that carry evidence on jitter (:func:`evident_at`)."""
    return [columns[k] for k in evident_at(columns, noise)]


def evident_at(columns: Sequence[Sequence[float]], noise: Noise) -> list[int]:
    """The indices of the columns of waits that carry evidence on jitter: two waits or
    more, typically (their median) above the steady noise of 99 in 100 waits, and not a
    retry made at once.

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
            kept.append(k)
    return kept


def _at_once(column: Sequence[float], following: Sequence[float], noise: Noise) -> bool:
    """Whether the retry of ``column`` was made at once (as :func:`evident` tells it): its
    typical wait within the steady noise of 99 in 100 waits, or under :data:`MIN_JITTER`
    of the next retry's."""
    typical = statistics.median(column)
    ceiling = noise.quantile(NOISE_CEILING, steady=True)
    return typical <= ceiling or (
        bool(following) and typical < MIN_JITTER * statistics.median(following)
    )


def judge_no_jitter(
    columns: Sequence[Sequence[float]],
    noise: Noise,
    alpha: float = ALPHA,
    bounds: Sequence[Sequence[float] | None] | None = None,
) -> Judgement:
    """Claim "no jitter" from waits at the same retry index (one column per index, one
    wait per operation); clear it when noise cannot explain their spread.  ``bounds``, in
    the places of the waits: the most noise each can carry (:meth:`Noise.apart`), where
    it is known (None for a column where it is not)."""
    shown = evident_at(columns, noise)
    if not shown:
        return Judgement("undecided", 1.0, 1.0)
    floor = noise.quantile(0.5, steady=True)
    claim = combined([alike_under_jitter(columns[k], floor) for k in shown])

    clear = combined(
        [
            noise.apart(columns[k], SHOWN_JITTER, None if bounds is None else bounds[k])
            for k in shown
        ]
    )
    return _decide(claim, clear, alpha)


def jitter_bound(columns: Sequence[Sequence[float]], noise: Noise, level: float) -> float:
    """The widest jitter (a share of the wait) that the waits at each retry index leave
    likely: jitter wider than this would spread them further than they lie, with a chance
    under ``level`` (:func:`alike_under_jitter` at that width).  1 (full jitter) when the
    columns cannot rule any jitter out."""
    shown = evident(columns, noise)
    floor = noise.quantile(0.5, steady=True)

    def alike(width: float) -> float:
        return combined([alike_under_jitter(c, floor, width) for c in shown])

    if not shown or alike(1.0) >= level:
        return 1.0
    narrow, wide = 0.0, 1.0  # alike() falls as the width grows: >= level at narrow, < at wide
    for _ in range(30):
        middle = (narrow + wide) / 2
        narrow, wide = (middle, wide) if alike(middle) >= level else (narrow, middle)
    return wide


RANKS = (1, 2, 4, 8, 16, 32)
"""The k tried as evidence of growth: the k-th longest later wait (a few, spread out, so
that the Bonferroni factor stays small)."""
GRID = 400
"""Steps of the sum that bounds an integral over the longest first wait's jitter draw."""


def outgrown(
    first: Sequence[float], later: Sequence[float], factor: float, noise: Noise, jitter: float
) -> float:
    """An upper bound on the chance that a client whose waits never grow beyond ``factor``
    times its first (``D_k <= factor * D_0``) leaves ``later`` waits this far above ``factor``
    times the longest of the ``first`` ones, with jitter of at most ``jitter``.

    With ``M`` the longest first wait and ``q`` the noise of 999 in 1,000 waits
    (:meth:`Noise.net`: on virtual time, the most any wait carries), the k-th
    longest later wait reaching ``q + s * factor * M`` needs k later waits whose jitter draw
    reaches ``s`` times the longest first draw ``V`` (``M >= D_0 * V``: noise only lengthens
    it), or whose noise passes ``q`` (:meth:`Noise.tail`).  Given ``V`` that is a binomial
    tail; it is summed over the law of ``V`` (the largest of ``len(first)`` draws on
    ``[1 - jitter, 1]``) from above, and the least bound over the k tried (:data:`RANKS`)
    is taken times their number (Bonferroni).  Only ``s > 1`` is evidence: jitter-free waits equal to
    ``factor * M`` would reach it.  For ``s > 1`` the bound is largest at the widest
    jitter allowed (checked by ``tests/test_timing_verdicts.py``), so ``jitter`` is an upper
    bound on the client's, not a guess.
    """
    longest = max(first)
    if longest <= 0 or not later:
        return 1.0
    q = noise.net()
    unseen = noise.tail(math.nextafter(q, math.inf))  # noise beyond q: up to q, jitter must
    ratios = sorted(((w - q) / (factor * longest) for w in later), reverse=True)
    tried = [k for k in RANKS if k <= len(ratios)]
    bounds = [
        _beyond(len(first), len(later), ratios[k - 1], k, unseen, jitter)
        for k in tried
        if ratios[k - 1] > 1
    ]
    return min(1.0, min(bounds, default=1.0) * len(tried))


def _beyond(n: int, trials: int, s: float, k: int, unseen: float, jitter: float) -> float:
    """P(at least k of ``trials`` later waits reach their threshold: each by its draw ``u``
    reaching ``s * V`` or, with chance ``unseen``, by its noise), ``V`` the largest of ``n``
    first draws, all uniform on ``[1 - jitter, 1]``: summed over
    :data:`GRID` steps of ``V``, each step's chance times the summand at its low end (an
    upper bound, as the summand falls as ``V`` grows)."""
    total = 0.0
    for i in range(GRID):
        v = 1 - jitter + jitter * i / GRID
        reach = min(max((1 - s * v) / jitter, 0.0), 1.0)
        if reach == 0.0:  # from here on, noise alone: the rest of V's law at once
            return total + (1 - (i / GRID) ** n) * _binomial_tail(trials, unseen, k)
        step = ((i + 1) / GRID) ** n - (i / GRID) ** n
        total += step * _binomial_tail(trials, min(1.0, reach + unseen), k)
    return total


def judge_growth(
    columns: Sequence[Sequence[float]],
    factor: float,
    noise: Noise,
    alpha: float = ALPHA,
) -> Judgement:
    """Claim "the waits do not grow by ``factor`` a retry" from waits by retry index
    (``columns[k]``: the waits before retry k+1; an empty column is not judged), or clear it.

    The client's jitter is first bounded from the waits (:func:`jitter_bound`, wrong at
    most ``alpha / 2`` of the time); each side then spends the other ``alpha / 2``.  The claim is made only of waits shown jitter-free (under ``x0.8-1.0``):
    had they grown, the longest wait ``D_k`` the policy allows at retry k would be at
    least ``factor ** k`` times ``D_0``, itself at least the longest first wait less the
    noise, and ``n`` waits ``D_k * u`` all staying below ``M`` has a chance of at most
    ``((M / D_k - 0.8) / 0.2) ** n``.  (With full jitter possible, few waits never rule
    growth out.)  Growth is clear when the later waits lie so far above ``factor`` times
    the first ones that a client never growing by ``factor`` would rarely leave them there
    (:func:`outgrown`).  The base is the first retry's waits, unless that retry came at
    once (:func:`_at_once`, as urllib3's does): then the second's, and growth is read
    from there (an immediate retry followed by a fixed interval does not grow).
    """
    judged = [(k, c) for k, c in enumerate(columns) if c]
    if len(judged) < 2 or judged[0][0] != 0:
        return Judgement("undecided", 1.0, 1.0)
    jitter = jitter_bound(columns, noise, alpha / 2)
    first = max(judged[0][1]) - noise.net()
    pvalues = []
    if jitter < MIN_JITTER and first > 0:
        for k, column in judged[1:]:
            ratio = max(column) / (first * factor**k)
            share = (ratio - (1 - MIN_JITTER)) / MIN_JITTER
            pvalues.append(min(1.0, max(share, 0.0)) ** len(column))
    claim = combined(pvalues) if pvalues else 1.0
    base = judged[1:] if _at_once(judged[0][1], judged[1][1], noise) else judged
    later = [w for _, column in base[1:] for w in column]
    clear = outgrown(base[0][1], later, factor, noise, jitter) if later else 1.0
    return _decide(claim, clear, alpha / 2)
