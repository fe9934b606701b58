"""What explore draws, and where Hypothesis's shrinking takes it: pure, no network."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import find, settings

from pytest_resilience import ConfigurationError
from pytest_resilience.explore import KINDS, LENGTHS, ExploreSpec, Schedule
from pytest_resilience.explore.runner import schedules
from pytest_resilience.markers import parse_marker

SERVICES = [("api", True), ("db", False)]
QUIET = settings(database=None, derandomize=True)


def minimal(condition, spec: ExploreSpec | None = None, span: float = 0.4) -> Schedule:
    """The simplest schedule Hypothesis finds for which ``condition`` holds."""
    return find(schedules(SERVICES, spec or ExploreSpec(), span), condition, settings=QUIET)


def test_every_value_explore_draws_is_a_marker_the_plugin_accepts() -> None:
    for kind, explored in KINDS.items():
        names = [p.name for p in explored.params]
        for values in itertools.product(*(p.options for p in explored.params)):
            arguments = dict(zip(names, values, strict=True))
            if kind == "partition" and arguments["mode"] == "refuse":
                arguments["direction"] = "both"
            if not explored.http:
                arguments["duration"] = LENGTHS[0]
            parse_marker(kind, ("svc",), arguments)


def test_a_bug_any_fault_reveals_shrinks_to_the_simplest_fault_at_the_start() -> None:
    schedule = minimal(lambda s: True)

    assert schedule.decorators() == ['@pytest.mark.http_faults("api", status=503, count=1)']


def test_a_bug_a_connection_fault_reveals_shrinks_to_the_shortest_reset_partition() -> None:
    schedule = minimal(lambda s: any(f.service == "db" for f in s.faults))

    assert schedule.decorators() == [
        '@pytest.mark.partition("db", mode="reset", direction="both", duration=0.03)'
    ]


def test_a_bug_a_late_long_latency_reveals_shrinks_to_the_mildest_such_latency() -> None:
    def late_and_long(schedule: Schedule) -> bool:
        return any(
            f.marker == "latency"
            and f.arguments["ms"] >= 250
            and f.after >= 0.1
            and (f.duration or 0) >= 0.5
            for f in schedule.faults
        )

    schedule = minimal(late_and_long)

    assert schedule.decorators() == ['@pytest.mark.latency("api", ms=300, after=0.1, duration=0.6)']


def test_a_bug_two_faults_reveal_keeps_two_and_no_more() -> None:
    schedule = minimal(lambda s: len(s.faults) >= 2, ExploreSpec(max_faults=4))

    assert schedule.decorators() == ['@pytest.mark.http_faults("api", status=503, count=1)'] * 2


def test_kinds_and_services_restrict_what_is_drawn() -> None:
    spec = ExploreSpec.of({"kinds": ["latency"], "max_faults": 3})

    schedule = find(
        schedules([("db", False)], spec, 0.4), lambda s: len(s.faults) == 3, settings=QUIET
    )

    assert {(f.marker, f.service) for f in schedule.faults} == {("latency", "db")}


def test_a_span_bounds_the_starts_and_long_spans_allow_long_faults() -> None:
    schedule = minimal(lambda s: any(f.after >= 5 for f in s.faults), span=8.0)
    assert [f.after for f in schedule.faults] == [5.0]

    schedule = minimal(lambda s: any((f.duration or 0) > 3 for f in s.faults), span=8.0)
    assert [f.duration for f in schedule.faults] == [6.0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"examples": 0}, "examples must be a whole number >= 1, got 0."),
        ({"examples": 2.5}, "examples must be a whole number >= 1, got 2.5."),
        ({"max_faults": "2"}, "max_faults must be a whole number >= 1, got '2'."),
        (
            {"span": float("nan")},
            "span (seconds) must be a finite number >= 0.1 and <= 3600, got nan.",
        ),
        ({"span": 0.01}, "span (seconds) must be a finite number >= 0.1 and <= 3600, got 0.01."),
        ({"examples": 2.0}, "examples must be a whole number >= 1, got 2.0."),
        ({"kinds": "latency"}, "kinds must be a non-empty list of names"),
        ({"kinds": ["lag"]}, "kinds: 'lag' is not one explore draws (http_faults, "),
        ({"services": []}, "services must be a non-empty list of names"),
        ({"example": 5}, "unknown argument 'example'; explore takes examples=25, kinds=None"),
    ],
)
def test_bad_explore_arguments_are_refused_in_one_sentence(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        ExploreSpec.of(arguments)

    assert str(info.value).startswith(message)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)
