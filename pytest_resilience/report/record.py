"""One test's record: the faults injected, what the code did, and the verdicts.

Typed, frozen records (:class:`TestRecord` and the records it holds), built from the
test's evidence when its services are torn down.  They travel on pytest's report objects
(and so through pytest-xdist) as the plain JSON data :func:`~.jsontypes.to_json` makes
of them, and are rebuilt with :meth:`TestRecord.from_json` where they are read: the
terminal summary, the SVG timeline, JUnit properties, the JSON report and the
``pytest_resilience_report_sections`` hook.  ``schema.json`` beside this module is their
JSON Schema, written from these types (``python -m pytest_resilience.report.schema``).
Times are milliseconds from the start of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ..observe.records import fault_spans
from .jsontypes import from_json, to_json

if TYPE_CHECKING:
    from ..evidence import Evidence
    from ..explore import Exploration
    from ..http.records import Exchange, ExchangeList
    from ..runs import Run
    from ..runtime.scheduler import VirtualClock

SCHEMA = 1
"""Version of the record's shape; bumped when a field changes meaning or goes away."""

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
"""Headers whose values a report shows as ``<redacted>``: reports are CI artefacts,
and SDKs pointed at a stub still send their credentials."""

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault injected into a service, and when it was in force."""

    id: int
    """Shared by the fault's applied and healed events."""
    service: str
    kind: str
    detail: str
    applied_ms: float
    healed_ms: float | None
    """None: in force until the test's services closed."""


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """One request an HTTP service received, and its answer."""

    start_ms: float
    end_ms: float | None
    method: str
    path: str
    key: str | None
    """The request's idempotency key."""
    operation: str
    """The operation it is an attempt of, as the verdicts grouped it."""
    status: int | None
    step: str
    """The script step that answered: a fault's name, 'default', 'forward'."""
    scripted: bool
    delivered: bool | None
    """Whether the answer reached the client; None: unknown."""
    retry_after_s: float | None
    wait_header: str | None
    """The header that asked the client to wait."""
    headers: Headers
    """The request's headers, credentials redacted."""
    answer_headers: Headers


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service's figures; the HTTP ones are None for a TCP service."""

    name: str
    type: Literal["tcp", "http"]
    connections: int
    resets: int
    requests: int | None = None
    operations: int | None = None
    max_attempts: int | None = None
    retried: int | None = None
    failed_attempts: int | None = None
    lost_answers: int | None = None
    effects: int | None = None
    duplicated_effects: int | None = None
    exchanges: tuple[ExchangeRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A ``drive`` or ``load``: the client's calls, and the requests each HTTP service got
    during them."""

    calls: int
    ok: int
    availability: float
    start_ms: float | None
    end_ms: float | None
    slowest_ms: float
    requests: dict[str, int]
    amplification: dict[str, float]


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """What a client's retry or breaker library said it would do."""

    at_ms: float
    service: str
    source: str
    kind: Literal["wait", "breaker"]
    value: float | str | None
    attempt: int | None


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """A resilience assertion, and whether it held."""

    name: str
    service: str
    passed: bool
    message: str
    """The rule broken (the failure's first line); empty when it held."""
    at_ms: float

    @property
    def undecided(self) -> bool:
        """It failed for want of evidence, not because the rule broke."""
        return not self.passed and self.message.startswith("insufficient evidence:")


@dataclass(frozen=True, slots=True)
class ClockRecord:
    """The test's time on virtual time: the virtual seconds its blocks spanned, the real
    seconds they took, and the thread whose running made waits end in real time."""

    virtual_s: float
    real_s: float
    jumps: int
    held_by: str | None
    """The thread that held the jumps back longest (None: none did)."""
    held_s: float
    """Real seconds that waits ended in while ``held_by`` ran."""


@dataclass(frozen=True, slots=True)
class ExploreRecord:
    """What explore ran: schedules, how many left a verdict undecided, the stretch of the
    body faults fell in, and the shrunk failing schedule as marker decorators."""

    examples: int
    undecided: int
    span_ms: float
    failing: tuple[str, ...] | None
    """None: no schedule failed; empty: the test fails with no fault."""
    seconds: float
    """Real time spent exploring, shrinking included."""
    first_failure_s: float | None
    """Seconds to the first failing schedule."""


@dataclass(frozen=True, slots=True)
class TestRecord:
    """One test's record: faults, services, runs, intents and verdicts."""

    __test__ = False  # a record, not a test class for pytest to collect

    schema: int
    seed: int
    """The run's --resilience-seed, which replays the test."""
    end_ms: float | None
    faults: tuple[FaultRecord, ...]
    services: tuple[ServiceRecord, ...]
    runs: tuple[RunRecord, ...]
    intents: tuple[IntentRecord, ...]
    verdicts: tuple[VerdictRecord, ...]
    backend: str | None
    """The Toxiproxy the test ran against."""
    explored: ExploreRecord | None = None
    """With ``explore``: what it ran (the rest of the record is the last schedule's)."""
    clock: ClockRecord | None = None
    """On virtual time: what the clock did (None: real time)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = to_json(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestRecord:
        return from_json(cls, data)

    @property
    def http_services(self) -> list[ServiceRecord]:
        return [s for s in self.services if s.type == "http"]

    @property
    def broken(self) -> list[VerdictRecord]:
        return [v for v in self.verdicts if not v.passed]


def redacted(headers: Headers) -> Headers:
    """``headers`` with credentials hidden."""
    return tuple((k, "<redacted>" if k.lower() in SECRET_HEADERS else v) for k, v in headers)


def empty_record(seed: int, backend: str | None) -> TestRecord:
    """The record of a test that used the plugin but ended before its services were
    recorded (an unreachable backend, a bad marker): it still shows in the report."""
    return TestRecord(SCHEMA, seed, None, (), (), (), (), (), backend)


def record_of(
    evidence: Evidence,
    backend: str | None,
    explored: Exploration | None = None,
    clocks: Sequence[VirtualClock] = (),
) -> TestRecord:
    """The record of a test, from its evidence (``Resilience.evidence()``), what
    explore ran (``Resilience.explored``) and its blocks on virtual time
    (``Resilience.clocks``)."""
    from ..assertions.operations import failed, operations

    events = evidence.events

    def ms(at: float) -> float:
        return round((at - evidence.started_at) * 1000.0, 3)

    faults = [
        FaultRecord(
            span.fault,
            span.service,
            span.kind,
            span.detail,
            ms(span.applied_at),
            None if span.healed_at is None else ms(span.healed_at),
        )
        for span in fault_spans(events.faults())
    ]

    services = []
    for name, kind in evidence.services.items():
        connections = events.connections(name)
        tcp = ServiceRecord(name, "tcp", len(connections), len(connections.reset()))
        if kind != "http":
            services.append(tcp)
            continue
        exchanges = evidence.exchanges[name]
        ops = operations(exchanges, failure_statuses=evidence.failure_sets[name])
        label = {id(a): op.label for op in ops for a in op.attempts}
        effects = evidence.effects[name]
        services.append(
            replace(
                tcp,
                type="http",
                requests=len(exchanges),
                operations=len(ops),
                max_attempts=max((len(op.attempts) for op in ops), default=0),
                retried=sum(1 for op in ops if len(op.attempts) > 1),
                failed_attempts=sum(1 for e in exchanges if failed(e)),
                lost_answers=sum(1 for e in exchanges if e.delivered is False),
                effects=len(effects),
                duplicated_effects=len(effects) - len({e.fingerprint for e in effects}),
                exchanges=tuple(_exchange(e, label.get(id(e), ""), ms) for e in exchanges),
            )
        )

    return TestRecord(
        SCHEMA,
        evidence.seed,
        ms(evidence.taken_at),
        tuple(faults),
        tuple(services),
        tuple(_run(run, evidence.exchanges, ms) for run in evidence.runs),
        tuple(
            IntentRecord(ms(i.at), i.service, i.source, i.kind, i.value, i.attempt)
            for i in events.intents()
        ),
        tuple(
            VerdictRecord(v.name, v.service, v.passed, v.message, ms(v.at))
            for v in events.verdicts()
        ),
        backend,
        None
        if explored is None
        else ExploreRecord(
            explored.examples,
            explored.undecided,
            round(explored.span * 1000.0, 3),
            explored.failing,
            round(explored.seconds, 3),
            None if explored.first_failure is None else round(explored.first_failure, 3),
        ),
        _clock(clocks),
    )


def _clock(clocks: Sequence[VirtualClock]) -> ClockRecord | None:
    if not clocks:
        return None
    held: dict[str, float] = {}
    for clock in clocks:
        for name, seconds in clock.held.items():
            held[name] = held.get(name, 0.0) + seconds
    by = max(held, key=held.__getitem__, default=None)
    return ClockRecord(
        round(sum(c.virtual for c in clocks), 6),
        round(sum(c.real for c in clocks), 6),
        sum(c.jumps for c in clocks),
        by,
        round(held[by], 6) if by is not None else 0.0,
    )


def _exchange(e: Exchange, operation: str, ms: Callable[[float], float]) -> ExchangeRecord:
    return ExchangeRecord(
        ms(e.started_at),
        None if e.ended_at is None else ms(e.ended_at),
        e.method,
        e.path,
        e.idempotency_key,
        operation,
        e.status,
        e.step,
        e.scripted,
        e.delivered,
        e.retry_after_delay,
        e.wait_header,
        redacted(e.headers),
        redacted(e.answer_headers),
    )


def _run(
    run: Run, exchanges: Mapping[str, ExchangeList], ms: Callable[[float], float]
) -> RunRecord:
    """A run, with the requests each HTTP service (``exchanges`` by name) got during it."""
    calls = run.calls
    start, end = run.span or (0.0, 0.0)
    requests = {name: len(run.requests(received)) for name, received in exchanges.items()}
    return RunRecord(
        len(calls),
        sum(1 for c in calls if c.ok),
        round(run.availability, 4),
        ms(start) if calls else None,
        ms(end) if calls else None,
        round(max((c.latency for c in calls), default=0.0) * 1000, 3),
        requests,
        {n: round(r / len(calls), 3) for n, r in requests.items()} if calls else {},
    )


def junit_properties(record: TestRecord) -> list[tuple[str, object]]:
    """Key figures of a record, as ``(name, value)`` for JUnit XML's ``<properties>``."""
    http = record.http_services
    broken = record.broken
    figures: list[tuple[str, object]] = [
        ("resilience.seed", record.seed),
        ("resilience.faults", len(record.faults)),
        ("resilience.requests", sum(s.requests or 0 for s in http)),
        ("resilience.max_attempts", max((s.max_attempts or 0 for s in http), default=0)),
        ("resilience.lost_answers", sum(s.lost_answers or 0 for s in http)),
        ("resilience.duplicated_effects", sum(s.duplicated_effects or 0 for s in http)),
        ("resilience.verdicts", len(record.verdicts)),
        ("resilience.verdicts_broken", len(broken)),
    ]
    if broken:
        figures.append(("resilience.broken", f"{broken[0].name}: {broken[0].message}"))
    return figures
