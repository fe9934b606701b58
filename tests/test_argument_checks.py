"""Arguments checked at the call: every public argument of the wrong type, out of range or
not finite is one sentence of :class:`ConfigurationError` from the one validator
(``pytest_resilience.validate``), raised by the call that received it, with nothing applied.

Arguments of markers and chaos toxics, checked at collection, are in ``test_hardening.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from pytest_resilience import ConfigurationError, Resilience


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r, s: s.assert_connections(max="2"), r"assert_connections: max must be a whole"),
        (lambda r, s: s.assert_connections(min=-1), r"assert_connections: min must be a whole"),
        (lambda r, s: r.drive(5, calls=3), r"drive takes the code under test as a callable"),
        (lambda r, s: r.load(None, duration=1, rate=1), r"load takes the code under test"),
    ],
    ids=["max-text", "min-negative", "drive-int", "load-none"],
)
def test_bad_arguments_to_verdicts_and_runs_are_one_sentence_at_the_call(
    resilience: Resilience, echo_server: Any, call: Callable[..., Any], message: str
) -> None:
    service = resilience.tcp_service("echo", upstream=echo_server.address)
    with pytest.raises(ConfigurationError, match=message) as raised:
        call(resilience, service)
    assert "\n" not in str(raised.value)


VERDICT_ARGUMENTS: list[tuple[Callable[..., Any], str]] = [
    (lambda r, s, run: s.assert_attempts(max="2"), r"max must be a whole number >= 0 or None"),
    (lambda r, s, run: s.assert_backoff(jitter="yes"), r"jitter must be True or False"),
    (lambda r, s, run: s.assert_backoff(max_delay=math.nan), r"max_delay \(seconds\) must be"),
    (lambda r, s, run: s.assert_retry_after_honoured(tolerance=-1), r"tolerance must be a"),
    (
        lambda r, s, run: s.assert_stable_idempotency_key(failure_statuses=503),
        r"failure_statuses takes a collect",
    ),
    (
        lambda r, s, run: s.assert_attempts(max=1, failure_statuses=["503"]),
        r"failure_statuses holds HTTP statuses",
    ),
    (lambda r, s, run: r.assert_no_retry_storm(s, min_herd=1), r"min_herd must be a whole number"),
    (lambda r, s, run: r.assert_amplification(s, run, max=-1), r"max \(requests per call\)"),
    (
        lambda r, s, run: r.assert_breaker_opened(s, run, after_failures=0, cooldown=1),
        r"after_failures must be a whole number >= 1",
    ),
    (
        lambda r, s, run: r.assert_breaker_opened(s, run, after_failures=3, cooldown=math.nan),
        r"cooldown \(seconds\) must be a finite number > 0",
    ),
    (lambda r, s, run: run.assert_availability(min=2), r"min \(the share of calls"),
    (lambda r, s, run: run.assert_fail_fast(max_latency=math.inf), r"max_latency \(seconds\)"),
    (lambda r, s, run: run.assert_recovers(within=math.nan), r"within must be a finite"),
    (lambda r, s, run: r.load(lambda: None, duration=math.nan, rate=1), r"load: duration must"),
    # The waits for records to settle reached Condition.wait unchecked (raw Python errors).
    (lambda r, s, run: r.evidence(settle=math.nan), r"evidence: settle must be a finite"),
    (lambda r, s, run: r.evidence(settle=-1), r"evidence: settle must be a finite"),
    (lambda r, s, run: r.evidence(settle=1e10), r"evidence: settle must be a finite"),
    (lambda r, s, run: s.settled(timeout="1"), r"settled: timeout must be a finite"),
    (lambda r, s, run: s.settled(timeout=math.inf), r"settled: timeout must be a finite"),
    # Groupings, keys, runs and services of the wrong type failed later with raw errors.
    (lambda r, s, run: s.assert_attempts(max=1, group=5), r"group must be a function"),
    (lambda r, s, run: s.assert_backoff(group="op"), r"group must be a function"),
    (lambda r, s, run: s.assert_retry_after_honoured(group=5), r"group must be a function"),
    (lambda r, s, run: s.assert_stable_idempotency_key(group=5), r"group must be a function"),
    (lambda r, s, run: r.assert_no_retry_storm(s, group=5), r"group must be a function"),
    (lambda r, s, run: r.assert_amplification(s, run, 2, group=5), r"group must be a function"),
    (lambda r, s, run: s.assert_no_duplicate_side_effects(key="k"), r"key must be a function"),
    (lambda r, s, run: r.assert_amplification(s, "run", max=2), r"run must be a Run"),
    (
        lambda r, s, run: r.assert_breaker_opened(s, None, after_failures=3, cooldown=1),
        r"run must be a Run",
    ),
    (lambda r, s, run: r.fault(5, "latency", 10), r"service must be a service name"),
    (lambda r, s, run: r.partition(s, None), r"service must be a service name"),
    (lambda r, s, run: r.intent(3.5), r"service must be a service name"),
    # A float where a whole number goes was taken as one by some checks, not by others.
    (lambda r, s, run: r.assert_no_retry_storm(s, min_herd=3.0), r"min_herd must be a whole"),
    (lambda r, s, run: run.assert_fail_fast(1, skip=1.0), r"skip must be a whole number"),
    (lambda r, s, run: r.explore(lambda: None, examples=2.0), r"examples must be a whole"),
]


@pytest.mark.parametrize(
    ("call", "message"), VERDICT_ARGUMENTS, ids=[m for _, m in VERDICT_ARGUMENTS]
)
def test_bad_verdict_arguments_are_one_sentence_at_the_call(
    resilience: Resilience, call: Callable[..., Any], message: str
) -> None:
    api = resilience.http_service("api")
    run = resilience.drive(lambda: None, calls=1)
    with pytest.raises(ConfigurationError, match=message) as raised:
        call(resilience, api, run)
    assert "\n" not in str(raised.value) and str(raised.value).endswith(".")


@pytest.mark.parametrize(
    "upstream",
    [
        ("127.0.0.1", 80.9),
        ("127.0.0.1", True),
        (b"127.0.0.1", 80),
        ("", 80),
        "127.0.0.1: 80",
        "127.0.0.1:\uff18\uff10",  # fullwidth digits, which int() reads as 80
        "127.0.0.1:http",
        "127.0.0.1:70000",
    ],
)
def test_a_bad_upstream_address_is_one_sentence_at_the_call(
    resilience: Resilience, upstream: Any
) -> None:
    """A port of 80.9 was taken as 80, True as 1, and a bytes host as "b'127.0.0.1'"."""
    with pytest.raises(ConfigurationError) as raised:
        resilience.tcp_service("x", upstream=upstream)
    assert str(raised.value) == (
        "upstream of service 'x' must be 'host:port' or a (host, port) pair with a port "
        f"from 1 to 65535, got {upstream!r}."
    )
    assert resilience.services == {}


@pytest.mark.parametrize("value", [2.0, True, "2", math.nan, -1])
def test_every_whole_number_check_refuses_floats_and_bools_alike(value: Any) -> None:
    """integer() took 2.0 as 2 where count() and bound() refused it."""
    from pytest_resilience import validate

    for check in (validate.integer, validate.count, validate.bound):
        with pytest.raises(ConfigurationError, match=r"^n must be a whole number >= ") as raised:
            check(value, "n")
        assert str(raised.value).endswith(f", got {value!r}.")


def test_a_whole_fault_attribute_given_as_a_float_is_refused(
    resilience: Resilience, echo_server: Any
) -> None:
    echo = resilience.tcp_service("echo", upstream=echo_server.address)

    with pytest.raises(ConfigurationError, match=r"^latency: ms must be a whole number >= 0, got"):
        echo.latency(10.0)
    assert echo.faults == []
