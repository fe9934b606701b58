"""One test's evidence: what its verdicts and its report read, in one frozen snapshot.

:meth:`Resilience.evidence <pytest_resilience.resilience.Resilience.evidence>` takes it:
the timeline's events (faults, connections, HTTP exchanges and side effects, runs,
intents, verdicts) once each answer's delivery is known (or a deadline passed,
:class:`~.observe.settle.ExchangeRecorder`), and each HTTP service's exchanges and
effects and the runs, joined from those events.  Every verdict judges a snapshot, and the
report (:func:`~.report.record.record_of`) is built from one, so a verdict and the
report entry it leads to read the same records.  A snapshot is not added to afterwards;
its records are frozen, and a ``Run``'s calls do not change once it has returned.  The
run verdicts judge their run's calls, and the timing verdicts add the noise the probe
measured, read beside the snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .observe.records import fault_spans

if TYPE_CHECKING:
    from .assertions.operations import FailureSet
    from .http.records import Effect, ExchangeList
    from .observe.pacing import Pacing
    from .observe.records import Call, FaultSpan
    from .observe.timeline import Events
    from .runs import Run

ANSWERING_KINDS = frozenset({"fail", "rate_limit", "cut", "delay"})
"""The HTTP layer's own faults: every request reaches it and is recorded."""
PASSING_DOWNSTREAM = frozenset(
    {"latency", "bandwidth", "slow_close", "slicer", "limit_data", "reset_peer", "noop"}
)
"""Toxics that, on the answers' stream, let every request through before they act
(``reset_peer`` resets at the answer's first bytes)."""


def hides_requests(kind: str, detail: str) -> bool:
    """Whether a fault of ``kind`` (with the ``detail`` its plan wrote) may keep requests
    from the HTTP layer, so that attempts leave no record.  Only what is known to let every
    request through does not: the HTTP layer's own faults, a partition of the answers
    alone (``direction=downstream``), and on the answers' stream the toxics of
    :data:`PASSING_DOWNSTREAM` and a ``timeout`` of 0 (one that closes the connection after
    a while may take a request not yet passed with it).  A proxy down, any toxic on the
    requests' stream (held, cut or reset requests) and a kind not known here (a custom
    toxic, a plugin's kind) may."""
    words = detail.split()
    if kind in ANSWERING_KINDS:
        return False
    if kind == "partition":
        return "direction=downstream" not in words
    if "stream=downstream" in words:
        if kind == "timeout":
            return "timeout=0" not in words
        return kind not in PASSING_DOWNSTREAM
    return True


@dataclass(frozen=True, slots=True)
class Evidence:
    """A test's records at one moment, times on the plugin's clock."""

    started_at: float
    taken_at: float
    """When the snapshot was taken: faults still in force count as lasting until then."""
    seed: int
    services: Mapping[str, Literal["tcp", "http"]]
    """Every service of the test, by name, in the order they were made."""
    events: Events
    """Faults, connections, exchanges, effects, runs, intents and verdicts, oldest first."""
    exchanges: Mapping[str, ExchangeList]
    """Each HTTP service's exchanges, settled, joined from ``events``."""
    effects: Mapping[str, tuple[Effect, ...]]
    """Each HTTP service's side effects, from ``events``."""
    failure_sets: Mapping[str, FailureSet]
    """Each HTTP service's failure set, which says which of its attempts failed."""
    runs: tuple[Run, ...]
    jumps: tuple[tuple[float, float], ...] = ()
    """On virtual time, the clock's jumps so far: (the instant it left, seconds).  The
    timing verdicts read the real time of a wait from them
    (:func:`~.assertions.timing.real_between`)."""
    pacing: Mapping[str, Pacing] = field(default_factory=dict)
    """On real time, each HTTP service's sends joined with its connections: what the
    thread that sent a retry asked to sleep before it (:mod:`~.observe.pacing`)."""

    def heals(self) -> list[float]:
        """When faults were healed."""
        return [e.at for e in self.events.faults() if e.action == "healed"]

    def calls(self, service: str) -> tuple[Call, ...]:
        """The calls of the runs (``resilience.load``, ``drive``) that overlapped the span of
        ``service``'s exchanges: what the timing verdicts pair with its operations to
        measure the clients' own way out (:func:`~.assertions.operations.outbound`)."""
        from .observe.noise import span

        bounds = span(self.exchanges[service])
        if bounds is None:
            return ()
        since, until = bounds
        return tuple(
            call
            for run in self.runs
            for call in run.calls
            if call.started_at <= until and call.ended_at >= since
        )

    def blind(self, service: str) -> list[tuple[float, float, str]]:
        """Spans in which a fault on ``service`` kept requests from its HTTP layer (refused,
        reset or swallowed connections): retries then leave no HTTP record."""
        return self._spans(service, lambda span: hides_requests(span.kind, span.detail))

    def refusing(self, service: str) -> list[tuple[float, float, str]]:
        """Spans in which a fault disabled ``service``'s proxy (``down``, a partition with
        ``mode="refuse"``): connections then were refused and leave no record."""
        return self._spans(service, lambda span: span.refuses)

    def _spans(
        self, service: str, keep: Callable[[FaultSpan], bool]
    ) -> list[tuple[float, float, str]]:
        """(start, end, kind) of the faults on ``service`` that ``keep`` selects; one still
        in force lasts until the snapshot."""
        return [
            (
                span.applied_at,
                self.taken_at if span.healed_at is None else span.healed_at,
                span.kind,
            )
            for span in fault_spans(self.events.faults(service))
            if keep(span)
        ]
