"""The waits between attempts as the timing verdicts read them: by retry index
(:func:`wait_columns`), with the most noise each can carry (:func:`noise_bounds`: the
probe's model, on virtual time the real time it took and time it may have queued, on
real time what its sending client asked to sleep, :mod:`~..observe.pacing`), and what a
verdict says when they decide nothing (:func:`undecided_jitter`).  Shared by
:mod:`.backoff` and :mod:`.storm`; the statistics are :mod:`.timing`'s.  Times are
monotonic seconds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..http.records import Exchange
from .operations import InFlight, Operation, answered_at, outbound
from .timing import (
    SHOWN_JITTER,
    Judgement,
    Noise,
    RealTime,
    beyond_noise,
    evident,
    evident_at,
)

if TYPE_CHECKING:
    from ..observe.pacing import Pacing
    from ..observe.records import Call


def wait_columns(
    ops: Sequence[Operation],
    cap: float | None,
    of: Callable[[Exchange, Exchange], float] | None = None,
) -> list[list[float]]:
    """The waits before each retry, by retry index (one per operation).  A retry at which
    some wait reached ``cap`` is left empty: the cap flattens its draws, whether it applies
    before or after the jitter, so neither growth nor jitter can be read there.  With
    ``of``, in each wait's place what ``of`` says of the attempts before and after it
    instead (:func:`noise_bounds`)."""
    columns: list[list[tuple[bool, float]]] = []
    capped: set[int] = set()
    for op in ops:
        pairs = itertools.pairwise(op.attempts)
        for k, ((previous, following), wait) in enumerate(zip(pairs, op.waits, strict=True)):
            while len(columns) <= k:
                columns.append([])
            value = wait if of is None else of(previous, following)
            columns[k].append((_answered(previous), value))
            if cap is not None and wait >= cap:
                capped.add(k)
    return [[] if k in capped else _known_origins(c) for k, c in enumerate(columns)]


def _answered(exchange: Exchange) -> bool:
    """Whether the client got the attempt's answer, so its wait is timed from it; one that
    did not (none sent, or lost) is timed from the attempt's start, and the wait then also
    holds how long the client waited for an answer (its read timeout)."""
    return exchange.ended_at is not None and exchange.delivered is not False


def _known_origins(column: list[tuple[bool, float]]) -> list[float]:
    """A retry's waits, where some were timed from an answer and others from an attempt
    that got none: those timed from an answer alone (the others hold the client's timeout
    too, and beside them would show a spread no jitter made)."""
    if any(answered for answered, _ in column) and not all(a for a, _ in column):
        return [value for answered, value in column if answered]
    return [value for _, value in column]


def in_flight_of(ops: Sequence[Operation], noise: Noise) -> InFlight | None:
    """On virtual time, the attempts of ``ops`` in flight, to tell a retry that may have
    queued behind others (hand-overs told by the jumps: :func:`handed_over`); None on real
    time, where nothing tells a hand-over from other traffic ending as close."""
    return None if noise.real is None else InFlight(ops, handed_over(noise.real))


def noise_bounds(
    ops: Sequence[Operation],
    cap: float | None,
    noise: Noise,
    in_flight: InFlight | None,
    asked: Sequence[Sequence[float] | None] | None = None,
) -> list[list[float] | None] | None:
    """In the places of :func:`wait_columns`' waits, the most noise each can carry, where it
    is known; None where it is not (the probe's model reads those waits).

    - On virtual time: the real time it took (:attr:`.timing.Noise.real`) and the virtual
      time it may have spent queued behind other attempts
      (:meth:`.operations.InFlight.queued`: its retry began right after they were done,
      with no jump between, so it may have waited for them, jumps and all).
    - On real time, at a retry index whose waits all have their sending client known
      (``asked``, from :func:`asked_sleeps`): the wait less what that client asked to
      sleep in it (none noted: the whole wait).  The sleep lies within the wait, so for a
      client that chose no longer than it asked to sleep the rest is noise: waking late,
      its own work, or time queued behind others, none of it jitter.
    """
    real = noise.real
    if real is not None and in_flight is not None:

        def bound(previous: Exchange, following: Exchange) -> float:
            took = max(real(answered_at(previous), following.started_at), 0.0)
            return took + in_flight.queued(previous, following)

        return list(wait_columns(ops, cap, bound))
    if asked is None:
        return None
    return [
        None if a is None else [w - s for w, s in zip(c, a, strict=True)]
        for c, a in zip(wait_columns(ops, cap), asked, strict=True)
    ]


def asked_sleeps(
    ops: Sequence[Operation], cap: float | None, pacing: Pacing | None
) -> list[list[float] | None] | None:
    """On real time, in the places of :func:`wait_columns`' waits: the seconds the client
    (thread or task) that sent each retry asked to sleep after the answer before it
    (:meth:`.Pacing.asked`), at the retry indices where every wait has its sender known;
    None at the others, and None in all when none has.  A sender known to have asked no sleep (0) waited on
    something the plugin does not note (``Event.wait``, a sleep in C, another loop's
    timers, a queue): what spread those waits is not shown to be jitter either."""
    if pacing is None:
        return None

    def asked(previous: Exchange, following: Exchange) -> float:
        seconds = asked_in(pacing, previous, following)
        return math.nan if seconds is None else seconds

    columns: list[list[float] | None] = [
        c if c and not any(map(math.isnan, c)) else None for c in wait_columns(ops, cap, asked)
    ]
    return columns if any(c is not None for c in columns) else None


NOTHING_ASKED = "asked no sleep the plugin notes (time.sleep, asyncio.sleep) in their waits"
"""What the messages say of retries whose senders are known and asked nothing noted."""


def places_note(ops: Sequence[Operation], pacing: Pacing | None) -> str:
    """What the messages add where the sender of a retry of ``ops`` slept from two places
    or more in its wait, of which only the least counts (:meth:`.Pacing.asked`); else ""."""
    if pacing is None:
        return ""
    split = sum(
        1
        for op in ops
        for previous, following in itertools.pairwise(op.attempts)
        if pacing.places(
            following.connection,
            following.started_at,
            answered_at(previous),
            (previous.connection, previous.started_at),
        )
        > 1
    )
    if not split:
        return ""
    return (
        f" ({split} of the waits were slept from two places or more in the client's code, "
        "such as a backoff and a lock it polled or a rate limiter's reservation: which of "
        "them was the backoff is not known, so only the place that slept least counts as "
        "asked there)"
    )


def on_real_time(pacing: Pacing | None, noise: Noise) -> Pacing | None:
    """``pacing``, unless the waits are on virtual time (a block of it in a real-time test:
    its sleeps were virtual, so none was noted, and each wait's real time bounds it)."""
    return None if noise.real is not None else pacing


def asked_in(pacing: Pacing, previous: Exchange, following: Exchange) -> float | None:
    """What the client that sent ``following`` asked to sleep after ``previous``'s answer
    (:meth:`.Pacing.asked`)."""
    return pacing.asked(
        following.connection,
        following.started_at,
        answered_at(previous),
        (previous.connection, previous.started_at),
    )


def handed_over(real: Callable[[float, float], float]) -> Callable[[float, float], bool]:
    """On virtual time, whether only a hand-over can lie between two instants: no jump
    does (a client released by another's answer runs at once, and while a participant
    runs the clock does not jump; a wait between the two would have been jumped over)."""

    def handed(start: float, end: float) -> bool:
        return real(start, end) >= (end - start) * (1 - 1e-9)

    return handed


def measured_noise(
    noise: Noise | Sequence[float],
    calls: Sequence[Call],
    ops: Sequence[Operation],
    jumps: Sequence[tuple[float, float]],
) -> Noise:
    """``noise`` as a :class:`Noise`: the probe's delays, with the bound virtual time's
    ``jumps`` give (:func:`real_bound`) and the way out of the driven
    ``calls`` that pair with ``ops`` (:func:`.operations.outbound`)."""
    if isinstance(noise, Noise):
        return noise
    if not jumps:
        return Noise(noise, outbound=outbound(calls, ops))
    real = RealTime(jumps)
    return Noise(noise, outbound=outbound(calls, ops), bound=real_bound(ops, real), real=real)


def real_bound(ops: Sequence[Operation], real: Callable[[float, float], float]) -> float | None:
    """On virtual time, the most real time a wait of ``ops`` took (``real``: the real
    seconds between two instants of the test's clock): a wait's noise (waking, the
    client's work, transit) is real time, while the jumps within it cover only what the
    client asked to wait."""
    spans = [span for op in ops for span in op.wait_spans]
    return max((real(start, end) for start, end in spans), default=None)


def spread_of(columns: Sequence[Sequence[float]], noise: Noise) -> str:
    shown = evident(columns, noise)
    widest = max(((max(c) - min(c)) / max(c) for c in shown), default=0.0)
    return (
        f"at {len(shown)} retries the waits of {max((len(c) for c in shown), default=0)} "
        f"operations lie within {widest * 100:.1f}% of each other"
    )


HERD = 3
"""The fewest retries arriving together that make a herd (the storm verdict's default
``min_herd``)."""


def convergence(
    ops: Sequence[Operation], cap: float | None, columns: Sequence[Sequence[float]], noise: Noise
) -> str | None:
    """Why the waits' spread shows no jitter, when at every retry shown (of :data:`HERD`
    operations or more) the retries arrived closer together than the answers before them
    came, and within the x0.95-1.0 not taken as jitter and the noise: clients retrying on
    one tick of a clock (each sleeping to the next whole second) or released together,
    whose waits differ by just what brings them together.  None otherwise.  A veto only:
    a jittered fleet that failed together arrives no closer than its answers came, and
    one whose arrivals met at every retry by chance is left undecided, never accused."""
    shown = [k for k in evident_at(columns, noise) if len(columns[k]) >= HERD]
    if not shown:
        return None
    starts = wait_columns(ops, cap, lambda previous, following: following.started_at)
    answers = wait_columns(ops, cap, lambda previous, following: answered_at(previous))
    slack = SHOWN_JITTER / (1 - SHOWN_JITTER)
    met = []
    for k in shown:
        came = max(starts[k]) - min(starts[k])
        answered = max(answers[k]) - min(answers[k])
        if came >= answered or came > slack * max(columns[k]) + noise.most():
            return None
        met.append((came, answered, k))
    came, answered, k = max(met)
    return (
        f"the waits lie apart, but at every retry the retries arrived closer together than "
        f"the answers before them (at retry {k + 1}: within {came * 1000:.1f} ms, the "
        f"answers {answered * 1000:.0f} ms apart): clients retrying on one tick of a clock, "
        "or released together, arrive as a herd whatever their waits, and no jitter spread "
        "them"
    )


def veto_clear(judgement: Judgement, converged: str | None) -> Judgement:
    """``judgement``, its clear side taken back if the retries converged (:func:`convergence`)."""
    if converged is None or judgement.outcome != "clear":
        return judgement
    return Judgement("undecided", judgement.claim_p, 1.0, judgement.level)


def undecided_jitter(
    judgement: Judgement,
    columns: Sequence[Sequence[float]],
    noise: Noise,
    asked: Sequence[Sequence[float] | None] | None = None,
    converged: str | None = None,
    places: str = "",
) -> str:
    """Why the jitter of ``columns`` is not decided, and what would decide it; ``places``
    is :func:`places_note`'s for the operations read."""
    if not any(len(c) >= 2 for c in columns):
        return (
            "jitter needs waits at the same retry in at least 2 operations (concurrent, or one "
            "after another): one operation's waits cannot show randomness; run it several times"
        )
    if not evident(columns, noise):
        return (
            "no retry was made after a wait longer than timing noise (at once, or under the "
            f"cap), so no jitter can show ({noise.describe()}); use longer waits"
        )
    if converged is not None:
        return converged
    shown = evident_at(columns, noise)
    paced = [(k, a) for k in shown if asked is not None and (a := asked[k]) is not None]
    vetoed = not any(
        beyond_noise(columns[k], SHOWN_JITTER, [w - s for w, s in zip(columns[k], a, strict=True)])
        for k, a in paced
    )
    if paced and len(paced) == len(shown) and vetoed:
        least = min(min(a) for _, a in paced)
        most = max(max(a) for _, a in paced)
        if most == 0:
            return (
                f"{spread_of(columns, noise)}, but the clients that sent those retries "
                f"{NOTHING_ASKED}: they waited on something else (Event.wait, a sleep in C, "
                "a lock, a queue), or a caller other than the sender slept (a worker thread "
                "of anyio, trio or a multiprocessing ThreadPool), and on real time what "
                "spread them (that wait, their own work, time queued behind others) is not "
                f"shown to be jitter ({noise.describe()}); judge such clients on virtual time "
                "(@pytest.mark.virtual_time), where each wait is held to the real time it took"
            )
        return (
            f"{spread_of(columns, noise)}, but the clients that sent those retries slept "
            f"from {least * 1000:.0f} to {most * 1000:.0f} ms in their waits{places}, none "
            "of them longer than the shortest wait at its retry by more than jitter under "
            f"x{1 - SHOWN_JITTER:g}-1.0 allows: the rest of each wait was not a sleep they "
            "asked (queued behind one another for a lock, a connection or a pool slot, "
            "their own work, or a wait the plugin does not see), which shows no jitter "
            f"({noise.describe()}); jitter shows when the clients ask for sleeps further "
            "apart"
        )
    return (
        f"{spread_of(columns, noise)}: too alike to rule out timing noise and jitter under "
        f"x{1 - SHOWN_JITTER:g}-1.0 (p = {judgement.clear_p:.2g}; "
        f"{noise.describe()}) and too apart to rule out jitter (p = {judgement.claim_p:.2g}); "
        "use longer waits or more operations"
    )
