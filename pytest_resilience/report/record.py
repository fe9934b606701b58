"""One test's record: the faults injected, what the code did, and the verdicts.

Plain JSON-able dicts (schema below, ``SCHEMA``), built when the test's services are
torn down, so they travel on pytest's report objects (and so through pytest-xdist) and
into the JSON report unchanged. Times are milliseconds from the start of the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..clock import CLOCK

if TYPE_CHECKING:
    from ..http.records import Exchange
    from ..resilience import Resilience
    from ..runs import Run

SCHEMA = 1
"""Version of the record's shape; bumped when a field changes meaning or goes away."""

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)
"""Headers whose values a report shows as ``<redacted>``: reports are CI artefacts,
and SDKs pointed at a stub still send their credentials."""


def redacted(headers: tuple[tuple[str, str], ...]) -> list[list[str]]:
    """``headers`` as JSON pairs, credentials hidden."""
    return [[k, "<redacted>" if k.lower() in SECRET_HEADERS else v] for k, v in headers]


def empty_record(seed: int) -> dict[str, Any]:
    """The record of a test that used the plugin but ended before its services were
    recorded (an unreachable backend, a bad marker): it still shows in the report."""
    return {
        "schema": SCHEMA,
        "seed": seed,
        "end_ms": None,
        "faults": [],
        "services": [],
        "runs": [],
        "intents": [],
        "verdicts": [],
    }


def record_of(res: Resilience) -> dict[str, Any]:
    """The record of the test ``res`` belongs to (call before its services close)."""
    from ..assertions.operations import failed, operations
    from ..services.http import HttpService

    timeline = res.timeline
    ms = timeline.relative_ms

    faults: dict[tuple[str, int], dict[str, Any]] = {}
    for event in timeline.faults():
        key = (event.service, event.fault)
        if event.action == "applied":
            faults[key] = {
                "id": event.fault,
                "service": event.service,
                "kind": event.kind,
                "detail": event.detail,
                "applied_ms": round(ms(event.at), 3),
                "healed_ms": None,
            }
        elif key in faults:
            faults[key]["healed_ms"] = round(ms(event.at), 3)

    services = []
    seen: dict[str, list[Exchange]] = {}
    for name, service in res.services.items():
        connections = service.connections
        entry: dict[str, Any] = {
            "name": name,
            "type": "tcp",
            "connections": len(connections),
            "resets": len(connections.reset()),
        }
        if isinstance(service, HttpService):
            exchanges = seen[name] = service.settled(timeout=0.2)
            ops = operations(exchanges, failure_statuses=service._failure_set)
            label = {id(a): op.label for op in ops for a in op.attempts}
            effects = service.effects
            entry.update(
                type="http",
                requests=len(exchanges),
                operations=len(ops),
                max_attempts=max((len(op.attempts) for op in ops), default=0),
                retried=sum(1 for op in ops if len(op.attempts) > 1),
                failed_attempts=sum(1 for e in exchanges if failed(e)),
                lost_answers=sum(1 for e in exchanges if e.delivered is False),
                effects=len(effects),
                duplicated_effects=len(effects) - len({e.fingerprint for e in effects}),
                exchanges=[_exchange(e, label.get(id(e), ""), ms) for e in exchanges],
            )
        services.append(entry)

    return {
        "schema": SCHEMA,
        "seed": res.seed,
        "end_ms": round(ms(CLOCK.now()), 3),
        "faults": list(faults.values()),
        "services": services,
        "runs": [_run(run, seen, ms) for run in res.runs],
        "intents": [
            {
                "at_ms": round(ms(i.at), 3),
                "service": i.service,
                "source": i.source,
                "kind": i.kind,
                "value": i.value,
                "attempt": i.attempt,
            }
            for i in timeline.intents()
        ],
        "verdicts": [
            {
                "name": v.name,
                "service": v.service,
                "passed": v.passed,
                "message": v.message,
                "at_ms": round(ms(v.at), 3),
            }
            for v in timeline.verdicts()
        ],
    }


def _exchange(e: Exchange, operation: str, ms: Any) -> dict[str, Any]:
    return {
        "start_ms": round(ms(e.started_at), 3),
        "end_ms": None if e.ended_at is None else round(ms(e.ended_at), 3),
        "method": e.method,
        "path": e.path,
        "key": e.idempotency_key,
        "operation": operation,
        "status": e.status,
        "step": e.step,
        "scripted": e.scripted,
        "delivered": e.delivered,
        "retry_after_s": e.retry_after_delay,
        "wait_header": e.wait_header,
        "headers": redacted(e.headers),
        "answer_headers": redacted(e.answer_headers),
    }


def _run(run: Run, exchanges: dict[str, list[Exchange]], ms: Any) -> dict[str, Any]:
    """A run, with the requests each HTTP service (``exchanges`` by name) got during it."""
    calls = run.calls
    start, end = run.span or (0.0, 0.0)
    requests = {
        name: sum(1 for e in received if start <= e.started_at <= end)
        for name, received in exchanges.items()
    }
    return {
        "calls": len(calls),
        "ok": sum(1 for c in calls if c.ok),
        "availability": round(run.availability, 4),
        "start_ms": round(ms(start), 3) if calls else None,
        "end_ms": round(ms(end), 3) if calls else None,
        "slowest_ms": round(max((c.latency for c in calls), default=0.0) * 1000, 3),
        "requests": requests,
        "amplification": {n: round(r / len(calls), 3) for n, r in requests.items()}
        if calls
        else {},
    }


def junit_properties(record: dict[str, Any]) -> list[tuple[str, object]]:
    """Key figures of a record, as ``(name, value)`` for JUnit XML's ``<properties>``."""
    http = [s for s in record["services"] if s["type"] == "http"]
    broken = [v for v in record["verdicts"] if not v["passed"]]
    figures: list[tuple[str, object]] = [
        ("resilience.seed", record["seed"]),
        ("resilience.faults", len(record["faults"])),
        ("resilience.requests", sum(s["requests"] for s in http)),
        ("resilience.max_attempts", max((s["max_attempts"] for s in http), default=0)),
        ("resilience.lost_answers", sum(s["lost_answers"] for s in http)),
        ("resilience.duplicated_effects", sum(s["duplicated_effects"] for s in http)),
        ("resilience.verdicts", len(record["verdicts"])),
        ("resilience.verdicts_broken", len(broken)),
    ]
    if broken:
        figures.append(("resilience.broken", broken[0]["name"] + ": " + broken[0]["message"]))
    return figures
