"""What the client that sent each retry asked to sleep before it, on real time.

A retry's wait on the wire (from the answer before it to its request) is the delay the
client chose plus noise: waking late, its own work, and time spent queued behind other
clients (a lock, a pool slot, a connection they share).  The wire alone cannot tell them
apart, and a herd whose retries queue one behind another looks jittered there
(``docs/wait-noise-research.md``).  So while a test's body runs on real time,
:class:`~..runtime.pacing.PacingRecorder` notes, for the code under test:

- each ``time.sleep`` or ``asyncio.sleep`` a caller (an asyncio task, else a thread)
  returns from: when it began, the seconds it asked, and the place in the code it was
  slept from;
- that a caller did I/O on a socket (any socket, in Python): the sleeps it made before
  are no longer the pause before its next request;
- each send on a socket connected to an HTTP service's tap, noted before its bytes go
  (so before the service can have read them): the thread, the instant, the socket's
  local port, how many reads the socket had made (a request's sends all follow the read
  of the answer before it), the sleeps the caller made since its last I/O, and those
  the callers in whose context it runs had made when that context was copied from
  theirs (the task that made it, the task that awaited ``asyncio.to_thread``).

:class:`Pacing` joins those sends with the HTTP layer's connections through the tap
(the client socket's local port is the peer of the tap's connection,
:attr:`~.join.Trace.port`) and gives, for a retry, the seconds the caller that sent it
asked to sleep after the answer before it, with no I/O between (:meth:`Pacing.asked`).  That
sleep lies within the wait (a sleep lasts at least as asked), so the rest of the
wait, ``wait - asked``, is the most noise the wait can carry if the client chose no more
than it asked to sleep: lockstep clients asking the same sleep are then never shown
jittered, however their waits were spread by a busy machine or by queueing.  On real
time this only vetoes the probe's model, never clears what it does not
(:meth:`~..assertions.timing.Noise.apart`): a sleep that was no backoff makes a client
seem to have chosen more than it did.  Where a wait was slept from two places (a backoff,
and a lock polled or a rate limiter's reservation), only the smallest total slept from
any one place counts.

Waits the recorder does not note (``Event.wait``, a lock, a sleep in C) leave a retry
sent by the caller that sent the attempt before with nothing asked: 0, and such a wait
is never shown jittered on real time (it may hold work or queueing, and nothing tells).
A retry whose send the recorder did not see (a client in another process, or on
uvloop, which writes in C), or that another caller sent with nothing noted where no
caller in whose context it ran slept either (:meth:`Pacing.asked`), has None,
and the timing verdicts read its wait with the probe's model instead
(:mod:`~..assertions.timing`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..runtime.pacing import Sent, Sleep
from .join import Trace


@dataclass(frozen=True)
class Pacing:
    """The sends on one HTTP service's connections, by the HTTP layer's connection id,
    oldest first."""

    sends: Mapping[int, tuple[Sent, ...]]

    @classmethod
    def join(
        cls, sends: Sequence[Sent], traces: Mapping[int, Trace], since: float, tap: int
    ) -> Pacing:
        """The ``sends`` to the tap at port ``tap`` made from ``since`` on, given to the
        layer's connections that ``traces`` pairs with that tap's (:func:`~.join.pair`).
        A port is taken again only after the connection from it ended, so a send belongs
        to the connection from its port that had not ended before it."""
        by_port: dict[int, list[Sent]] = {}
        for sent in sorted(sends, key=lambda s: s.at):
            if sent.at >= since and sent.tap == tap:
                by_port.setdefault(sent.port, []).append(sent)
        ends: dict[int, list[float]] = {}
        for trace in traces.values():
            if trace.port is not None and trace.ended_at is not None:
                ends.setdefault(trace.port, []).append(trace.ended_at)
        for times in ends.values():
            times.sort()
        joined: dict[int, tuple[Sent, ...]] = {}
        for connection, trace in traces.items():
            if trace.port is None:
                continue
            earlier = [t for t in ends.get(trace.port, []) if t < trace.opened_at]
            start = earlier[-1] if earlier else -math.inf
            end = math.inf if trace.ended_at is None else trace.ended_at
            joined[connection] = tuple(
                s for s in by_port.get(trace.port, []) if start < s.at <= end
            )
        return cls(joined)

    def asked(
        self, connection: int, started_at: float, since: float, before: tuple[int, float]
    ) -> float | None:
        """The seconds that the caller which sent the request the layer began to read at
        ``started_at`` on ``connection`` asked to sleep from ``since`` (the answer before
        it) until it sent it, with no I/O of its own between; None when that is not known.

        All of its sleeps there, not only the longest: a backoff slept in chunks is all
        asked.  But where it slept from more than one place in its code
        (:attr:`~..runtime.pacing.Sleep.site`), only the smallest total slept from any one
        place: a backoff and a queue slept through (a lock polled with ``time.sleep``, a
        reserve-then-sleep rate limiter) are slept from different places, and which of
        them the client chose is not known, so the rest may be queueing.  Lockstep
        clients queued so then ask no more than their backoff, and are never shown
        jittered; a client that writes one backoff as sleeps in two places (a fixed half
        and a random half) is then not shown jittered either, only undecided.  A sleep
        that was no backoff slept from the same place as one (a second backoff after a
        refused connection that left no record, in a retry loop with one sleep line)
        counts in full, which makes the client seem to ask more than it chose: the
        verdicts only let this veto.  Sleeps of no time are not counted.

        The same caller as the one that sent the attempt ``before`` (its connection and
        start), with no sleep noted, waited on something nothing notes: 0.  Another caller
        with no sleep noted may not be the one that waited (aiohttp sends a request with a
        body from a task of its own, and ``asyncio.to_thread`` from a pool's thread): what
        the callers in whose context it ran slept is read instead
        (:attr:`~..runtime.pacing.Sent.lent`: the task that created aiohttp's, the task
        that awaited ``to_thread``).  Not known: none of them slept (a call
        ``run_in_executor`` ran, in the pool thread's own context), or the send was not
        seen (a client outside the process, a connection not traced)."""
        places = self._asked_places(connection, started_at, since, before)
        return None if places is None else min(map(math.fsum, places.values()), default=0.0)

    def places(
        self, connection: int, started_at: float, since: float, before: tuple[int, float]
    ) -> int:
        """From how many places in its code what :meth:`asked` reads was slept (0 when
        nothing was, or it is not known)."""
        return len(self._asked_places(connection, started_at, since, before) or ())

    def _asked_places(
        self, connection: int, started_at: float, since: float, before: tuple[int, float]
    ) -> dict[int, list[float]] | None:
        """What :meth:`asked` reads, by the place slept from: {} for nothing asked, None
        for not known."""
        sent = self._first(connection, started_at)
        if sent is None:
            return None
        places = _by_place(sent.slept, since)
        if places:
            return places
        earlier = self._first(*before)
        if earlier is not None and earlier.caller == sent.caller:
            return {}
        return _by_place(sent.lent, since) or None

    def _first(self, connection: int, started_at: float) -> Sent | None:
        """The first send of the request the layer began to read at ``started_at`` on
        ``connection`` (a request's sends share the socket's read count)."""
        sends = self.sends.get(connection, ())
        last = bisect.bisect_right(sends, started_at, key=lambda s: s.at)
        if last == 0:
            return None
        request = sends[last - 1].reads
        return next(s for s in sends[:last] if s.reads == request)


def _by_place(sleeps: Sequence[Sleep], since: float) -> dict[int, list[float]]:
    """The ``sleeps`` made from ``since`` on, by the place slept from."""
    places: dict[int, list[float]] = {}
    for sleep in sleeps:
        if sleep.began >= since and sleep.seconds > 0:
            places.setdefault(sleep.site, []).append(sleep.seconds)
    return places
