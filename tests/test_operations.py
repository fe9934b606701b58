"""Operations and failed attempts as real clients put them on the wire.

What each header means comes from the clients' sources (cited per test); the expected
grouping is what that source says the client did, never the plugin's output.
"""

from __future__ import annotations

import json

import pytest
import requests
from records import exchange, failure, rule

from pytest_resilience import DEFAULT_FAILURES, ConfigurationError, Resilience
from pytest_resilience.assertions import (
    FailureSet,
    ResilienceAssertionError,
    check_attempts,
    check_retry_after_honoured,
    failed,
    operations,
)
from pytest_resilience.http.records import Exchange


def counted(at: float, status: int | None, count: int, **kwargs: object) -> Exchange:
    """A keyless attempt carrying the retry counter of Stainless-generated SDKs (OpenAI,
    Anthropic: ``_base_client.py`` ``BaseClient._build_headers`` sets
    ``x-stainless-retry-count`` to the retries made so far)."""
    return exchange(at, status, headers=(("x-stainless-retry-count", str(count)),), **kwargs)


# -- failure classes ------------------------------------------------------------------------


def test_default_failures_are_what_widely_used_sdks_retry() -> None:
    """stripe/_http_client.py HTTPClient._should_retry retries 409 and >= 500;
    openai/_base_client.py BaseClient._should_retry 408, 409, 429 and >= 500 (529 too)."""
    assert {408, 409, 425, 429, 500, 503, 529, 599} <= DEFAULT_FAILURES
    assert not {200, 201, 400, 401, 404, 412} & DEFAULT_FAILURES
    assert failed(exchange(0.0, 529)) and failed(exchange(0.0, 409))
    assert failed(exchange(0.0, None)) and failed(exchange(0.0, 200, delivered=False))
    assert not failed(exchange(0.0, 400))


def test_a_529_outage_is_one_operation_of_three_attempts() -> None:
    """Issue 10: three keyless 529s from one SDK call were judged three operations."""
    timeline = [counted(0.0, 529, 0), counted(0.5, 529, 1), counted(1.5, 529, 2)]
    [op] = operations(timeline)
    assert len(op.attempts) == 3
    check_attempts(timeline, min=3)
    failure(check_attempts, timeline, max=1)


THROTTLED = json.dumps(
    {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"}
).encode()


def throttled(e: Exchange) -> bool:
    """DynamoDB's throughput error: HTTP 400 with the exception named in the body."""
    return e.status == 400 and b"ProvisionedThroughputExceeded" in e.answer_body


def test_a_predicate_makes_a_throttling_400_a_failed_attempt() -> None:
    def answered_throttled(at: float) -> Exchange:
        base = exchange(at, 400)
        return Exchange(**{**_fields(base), "answer_body": THROTTLED})

    timeline = [answered_throttled(0.0), answered_throttled(0.2), exchange(0.5, 200)]
    assert len(operations(timeline)) == 3  # by default a 400 ends its operation
    failures = FailureSet([*DEFAULT_FAILURES, throttled])
    [op] = operations(timeline, failure_statuses=failures)
    assert len(op.attempts) == 3
    check_attempts(timeline, max=3, failure_statuses=[*DEFAULT_FAILURES, throttled])
    failure(check_attempts, timeline, max=2, failure_statuses=[*DEFAULT_FAILURES, throttled])


def test_a_status_in_the_set_makes_a_412_from_a_standby_a_failed_attempt() -> None:
    timeline = [exchange(0.0, 412), exchange(0.1, 412), exchange(0.3, 200)]
    assert len(operations(timeline)) == 3
    assert len(operations(timeline, failure_statuses=FailureSet({*DEFAULT_FAILURES, 412}))) == 1


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (503, "failure_statuses takes a collection of statuses and predicates"),
        ("503", "failure_statuses takes a collection"),
        ([503, "x"], "failure_statuses holds HTTP statuses (ints) and predicates"),
        ([True], "failure_statuses holds HTTP statuses"),
        ([700], "a status in failure_statuses must be a whole number >= 100 and <= 599"),
    ],
)
def test_a_bad_failure_set_is_one_sentence(rules: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FailureSet(rules)  # type: ignore[arg-type]


def test_a_predicate_that_raises_is_named() -> None:
    def broken(e: Exchange) -> bool:
        raise KeyError("code")

    with pytest.raises(ConfigurationError, match=r"the failure predicate .*broken.* raised"):
        operations([exchange(0.0, 400), exchange(0.1, 200)], failure_statuses=FailureSet([broken]))


# -- identity from the wire -----------------------------------------------------------------


def test_keyless_clients_counting_their_retries_stay_apart() -> None:
    """Issue 10: keyless workers polling one URL were chained into one 25-attempt operation.
    A retry counter of 0 starts an operation, whatever failed before."""
    timeline = [
        counted(0.000, 503, 0),
        counted(0.001, 503, 0),
        counted(0.002, 503, 0),
        counted(0.500, 503, 1),
        counted(0.501, 503, 1),
        counted(0.502, 503, 1),
        counted(1.500, 200, 2),
        counted(1.501, 200, 2),
        counted(1.502, 200, 2),
    ]
    ops = operations(timeline)
    assert [len(op.attempts) for op in ops] == [3, 3, 3]
    assert [[int(a.header("x-stainless-retry-count") or 0) for a in op.attempts] for op in ops] == [
        [0, 1, 2]
    ] * 3


def test_a_retry_takes_the_failed_operation_on_its_own_connection() -> None:
    a0 = exchange(0.000, 503)
    b0 = exchange(0.001, 503)
    # b retries first, on its own connection; a FIFO pairing would hand it a's operation.
    b1 = Exchange(**{**_fields(exchange(0.3, 200)), "connection": b0.connection})
    a1 = Exchange(**{**_fields(exchange(0.4, 200)), "connection": a0.connection})
    ops = operations([a0, b0, b1, a1])
    assert [[e.connection for e in op.attempts] for op in ops] == [
        [a0.connection, a1.connection],
        [b0.connection, b1.connection],
    ]


def test_aws_invocation_ids_group_attempts_and_attempt_one_starts_anew() -> None:
    """botocore/handlers.py add_retry_headers: ``amz-sdk-invocation-id`` is one uuid per
    operation, ``amz-sdk-request: attempt=N; max=M`` counts from 1."""

    def aws(at: float, status: int, invocation: str, attempt: int) -> Exchange:
        return exchange(
            at,
            status,
            headers=(
                ("amz-sdk-invocation-id", invocation),
                ("amz-sdk-request", f"attempt={attempt}; max=3"),
            ),
        )

    timeline = [aws(0.0, 503, "i1", 1), aws(0.0, 503, "i2", 1), aws(0.1, 200, "i1", 2)]
    timeline += [aws(0.2, 200, "i2", 2), aws(0.3, 200, "i3", 1)]
    assert [op.label for op in operations(timeline)] == ["key=i1", "key=i2", "key=i3"]
    assert [len(op.attempts) for op in operations(timeline)] == [2, 2, 1]


def test_a_retry_after_600_s_is_still_a_retry_of_the_same_operation() -> None:
    """Issue 10: keyless attempts were linked only within 60 s, so a client honouring a
    600 s Retry-After was two operations (false fail) and a retry 90 s into a 300 s
    Retry-After passed (false pass)."""
    honours = [exchange(0.0, 429, retry_after="600"), exchange(600.1, 200)]
    assert len(operations(honours)) == 1
    check_retry_after_honoured(honours)
    early = [exchange(0.0, 429, retry_after="300"), exchange(90.0, 200)]
    message = failure(check_retry_after_honoured, early)
    assert rule(message).startswith(
        "operation #1 POST /charges retried 89998 ms after an answer whose Retry-After asked for 300 s"
    )


def test_a_client_keeping_its_key_is_its_own_operation_beside_another_same_body() -> None:
    """Two customers paying the same amount, each keeping its key: two operations, even
    though the second began after the first one's failure."""
    timeline = [
        exchange(0.00, 503, key="k1"),
        exchange(0.05, 503, key="k2"),
        exchange(0.20, 200, key="k1"),
        exchange(0.25, 200, key="k2"),
    ]
    assert [op.label for op in operations(timeline)] == ["key=k1", "key=k2"]


def _fields(e: Exchange) -> dict[str, object]:
    return {name: getattr(e, name) for name in Exchange.__slots__}  # type: ignore[attr-defined]


def test_a_service_failure_set_reaches_its_verdicts_and_a_verdict_may_override_it(
    resilience: Resilience,
) -> None:
    """A client that retries a standby's 412 (the rule of this API, not of HTTP)."""
    replica = resilience.http_service("replica", failure_statuses={*DEFAULT_FAILURES, 412})
    replica.respond(200, json={"ok": True})
    replica.fail(412, count=2)
    with requests.Session() as session:
        for _ in range(3):
            if session.post(f"{replica.url}/rows", json={"id": 1}).status_code != 412:
                break

    assert [e.status for e in replica.settled()] == [412, 412, 200]
    replica.assert_attempts(min=3, max=3)
    with pytest.raises(ResilienceAssertionError, match=r"made 1 attempts; .* at least 3"):
        replica.assert_attempts(min=3, failure_statuses=DEFAULT_FAILURES)
