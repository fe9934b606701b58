"""AWS's official SDK, botocore 1.43 (under boto3), against a stub that answers like DynamoDB.

What it does, from its source (paths under ``site-packages/botocore/``):
- ``configprovider.py`` ``_DEFAULT_RETRY_MODE``: ``'standard' if NEW_RETRIES_ENABLED else
  'legacy'``, and ``NEW_RETRIES_ENABLED`` (``_resolve_new_retries``) is off unless the
  environment sets ``AWS_NEW_RETRIES_2026=true``: in 1.43 a client with no retry
  configuration runs the *legacy* mode, not ``standard``.
- ``args.py`` ``ClientArgsCreator._compute_retry_max_attempts``: the client config's
  ``max_attempts`` counts *retries* (``total_max_attempts = max_attempts + 1``);
  ``total_max_attempts`` counts attempts.  ``client.py`` ``_register_retries`` installs
  ``retries/standard.py`` for ``standard`` and ``retryhandler.py`` for ``legacy``.
- ``retries/standard.py`` ``StandardRetryConditions``: retry while
  ``MaxAttemptsChecker`` (``attempt_number < max_attempts``) and any of
  ``TransientRetryableChecker`` (statuses 500, 502, 503, 504; ``RequestTimeout``…),
  ``ThrottledRetryableChecker`` (error codes ``Throttling``, ``ThrottlingException``,
  ``ProvisionedThroughputExceededException``, ``SlowDown``… read from the parsed error,
  whatever the HTTP status: DynamoDB throttles with a 400) or a modeled retryable error.
  ``register_retry_handler`` defaults to ``DEFAULT_MAX_ATTEMPTS = 3`` (4 for DynamoDB only
  under ``NEW_RETRIES_ENABLED``).
- ``retries/standard.py`` ``ExponentialBackoff.delay_amount``: ``random() *
  min(2 ** (attempt - 1), 20)`` s: full jitter, capped at 20 s (the DynamoDB base scale of
  0.025 s and ``x-amz-retry-after`` are read only under ``NEW_RETRIES_ENABLED``).
- ``data/_retry.json`` ``retry.dynamodb.__default__``: legacy DynamoDB makes up to 10
  attempts with ``delay`` ``base: 0.05``, ``growth_factor: 2``, and
  ``retryhandler.py`` ``delay_exponential`` draws a random base only when ``base ==
  'rand'``: legacy DynamoDB waits exactly 0.05, 0.1, 0.2, 0.4… s, with no jitter.  Its
  ``throughput_exceeded`` policy retries a 400 ``ProvisionedThroughputExceededException``.
- ``endpoint.py`` ``Endpoint._update_retries_context``: one ``invocation-id`` (a uuid4)
  per API call, kept across its attempts, and the attempt number; ``handlers.py``
  ``add_retry_headers`` sends them as ``amz-sdk-invocation-id`` and ``amz-sdk-request:
  attempt=N`` (``; max=M`` once a max-attempts checker has run: ``MaxAttemptsChecker``,
  ``retryhandler.py`` ``MaxAttemptsDecorator``; and ``; ttl=...`` after an answer with a
  ``Date`` header, ``Endpoint._set_ttl``, which the stub does not send).
- ``parsers.py`` ``BaseJSONParser._do_error_parse``: the error code is the part of
  ``__type`` after ``#``.

A DynamoDB throttle is an HTTP 400, which the plugin's default failure set does not count,
so every verdict here gets the failure set botocore retries on (``FAILURES``).  The clients
sleep as their policies say (that is what is judged); the tests never sleep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from botocore.configprovider import NEW_RETRIES_ENABLED
from real_clients import judged, released_together

from pytest_resilience import (
    Exchange,
    HttpService,
    Resilience,
    ResilienceAssertionError,
)

THROTTLED = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded. "
    "Consider increasing your provisioning level with the UpdateTable API.",
}
"""DynamoDB's throttling answer (HTTP 400), as its JSON protocol shapes errors."""
ITEM = {"Item": {"pk": {"S": "user#1"}, "name": {"S": "Ada"}}}
AMZ_JSON = "application/x-amz-json-1.0"
HERD = 5
"""Clients that a throttling episode fails together."""


def aws_error_code(exchange: Exchange) -> str | None:
    """The error code botocore reads from a JSON-protocol answer: ``__type`` after ``#``."""
    try:
        body = json.loads(exchange.answer_body)
    except (TypeError, ValueError):
        return None
    code = body.get("__type") if isinstance(body, dict) else None
    return code.rsplit("#", 1)[-1] if isinstance(code, str) else None


def throttled(exchange: Exchange) -> bool:
    """A DynamoDB throttle: HTTP 400 whose ``__type`` names a code of
    ``ThrottledRetryableChecker._THROTTLED_ERROR_CODES``."""
    return exchange.status == 400 and aws_error_code(exchange) in {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
    }


FAILURES: tuple[int | Callable[[Exchange], bool], ...] = (500, 502, 503, 504, throttled)
"""What botocore's standard mode retries on an answer: ``TransientRetryableChecker``'s
statuses and ``ThrottledRetryableChecker``'s codes (here, DynamoDB's throttle)."""


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Dummy credentials and region; no profile, config file or environment retry setting
    of the machine's; no instance metadata lookups."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_RETRY_MODE",
        "AWS_MAX_ATTEMPTS",
        "AWS_DEFAULTS_MODE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDZOOSTUB000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "zoo-stub-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def dynamodb(resilience: Resilience) -> HttpService:
    service = resilience.http_service("dynamodb")
    service.respond(200, body=json.dumps(ITEM), content_type=AMZ_JSON)
    return service


def throttle(service: HttpService, count: int | None = None) -> None:
    """The next ``count`` requests (all, for None) get DynamoDB's throttling answer."""
    service.fail(400, count=count, body=json.dumps(THROTTLED), content_type=AMZ_JSON)


@pytest.fixture
def aws(aws_env: None) -> boto3.session.Session:
    """The test's session: clients are made from it on the test's thread (a session is not
    thread-safe); their calls may run on many (a client is)."""
    return boto3.session.Session()


def client(aws: boto3.session.Session, service: HttpService, **retries: Any) -> Any:
    """A DynamoDB client aimed at the stub, with ``retries`` as its retry configuration."""
    config = botocore.config.Config(
        retries=retries or None, connect_timeout=2, read_timeout=2, region_name="us-east-1"
    )
    return aws.client("dynamodb", endpoint_url=service.url, config=config)


def get_item(ddb: Any) -> dict[str, Any]:
    return ddb.get_item(TableName="users", Key={"pk": {"S": "user#1"}})  # type: ignore[no-any-return]


def herd(clients: list[Any], call: Callable[[Any], Any]) -> list[Any]:
    """Call ``call`` on every client at once (released by a barrier); outcomes in order,
    an exception as itself.  Every thread is joined when the pool closes."""

    def one(n: int) -> Any:
        try:
            return call(clients[n])
        except botocore.exceptions.ClientError as error:
            return error

    return released_together(len(clients), one, timeout=10)


def by_invocation(exchanges: list[Exchange]) -> dict[str, list[Exchange]]:
    grouped: dict[str, list[Exchange]] = {}
    for exchange in sorted(exchanges, key=lambda e: e.started_at):
        grouped.setdefault(exchange.header("amz-sdk-invocation-id") or "", []).append(exchange)
    return grouped


def test_the_default_retry_mode_is_legacy_unless_new_retries_are_enabled(
    aws: boto3.session.Session, dynamodb: HttpService
) -> None:
    """``configprovider.py`` ``_DEFAULT_RETRY_MODE``; ``args.py``
    ``ClientArgsCreator._compute_retry_mode``.  (No request is sent.)"""
    ddb = client(aws, dynamodb)
    assert ddb.meta.config.retries["mode"] == ("standard" if NEW_RETRIES_ENABLED else "legacy")
    assert client(aws, dynamodb, mode="standard").meta.config.retries == {"mode": "standard"}


def test_standard_mode_retries_a_throttled_get_item_under_one_invocation_id(
    aws: boto3.session.Session, dynamodb: HttpService
) -> None:
    """``retries/standard.py`` ``ThrottledRetryableChecker.is_retryable`` retries the 400
    throttle; ``endpoint.py`` ``Endpoint._update_retries_context`` and ``handlers.py``
    ``add_retry_headers`` mark each attempt of the call."""
    throttle(dynamodb, count=1)

    reply = get_item(client(aws, dynamodb, mode="standard", total_max_attempts=3))

    assert reply["Item"]["name"] == {"S": "Ada"}
    assert reply["ResponseMetadata"]["RetryAttempts"] == 1
    first, second = dynamodb.settled()
    assert first.status == 400 and throttled(first)
    assert second.status == 200
    assert first.header("x-amz-target") == "DynamoDB_20120810.GetItem"
    assert first.header("amz-sdk-invocation-id") == second.header("amz-sdk-invocation-id")
    assert first.header("amz-sdk-request") == "attempt=1"
    assert second.header("amz-sdk-request") == "attempt=2; max=3"
    dynamodb.assert_attempts(min=2, max=2, failure_statuses=FAILURES)
    with pytest.raises(ResilienceAssertionError, match=r"made 2 attempts"):
        dynamodb.assert_attempts(max=1, failure_statuses=FAILURES)


def test_max_attempts_in_the_client_config_counts_retries(
    aws: boto3.session.Session, dynamodb: HttpService
) -> None:
    """``args.py`` ``ClientArgsCreator._compute_retry_max_attempts``: ``max_attempts=1`` is
    ``total_max_attempts=2``; ``retries/standard.py`` ``MaxAttemptsChecker.is_retryable``
    stops there and the throttle reaches the caller as a ``ClientError``."""
    throttle(dynamodb)

    with pytest.raises(botocore.exceptions.ClientError) as raised:
        get_item(client(aws, dynamodb, mode="standard", max_attempts=1))

    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert raised.value.response["ResponseMetadata"]["MaxAttemptsReached"] is True
    assert [e.header("amz-sdk-request") for e in dynamodb.settled()] == [
        "attempt=1",
        "attempt=2; max=2",
    ]
    dynamodb.assert_attempts(min=2, max=2, failure_statuses=FAILURES)
    with pytest.raises(ResilienceAssertionError, match=r"each operation may make at most 1"):
        dynamodb.assert_attempts(max=1, failure_statuses=FAILURES)


def test_standard_mode_fleet_is_bounded_grouped_by_invocation_and_fully_jittered(
    aws: boto3.session.Session, dynamodb: HttpService, resilience: Resilience
) -> None:
    """Eight clients send the same GetItem at once into a throttle that does not end: every
    operation stops at ``total_max_attempts`` (``MaxAttemptsChecker``), the operations are
    told apart by ``amz-sdk-invocation-id`` alone (same method, path and body, no
    idempotency key), and ``ExponentialBackoff.delay_amount`` draws full jitter,
    ``random() * 2 ** (attempt - 1)`` s: neither "no jitter" nor a retry storm may be claimed.
    Eight, not five: with two retries, five full-jitter waits may fall two by two within
    the 5% that lockstep clients sharing one delay may lie apart, and then the fleet is
    not shown jittered (once in nine stress runs)."""
    fleet = 8
    throttle(dynamodb)
    clients = [client(aws, dynamodb, mode="standard", total_max_attempts=3) for _ in range(fleet)]

    outcomes = herd(clients, get_item)

    assert all(isinstance(o, botocore.exceptions.ClientError) for o in outcomes)
    exchanges = dynamodb.settled()
    assert len({e.fingerprint for e in exchanges}) == 1
    assert len({e.idempotency_key for e in exchanges}) == 1  # none: botocore sends no key
    calls = by_invocation(list(exchanges))
    assert len(calls) == fleet
    for attempts in calls.values():
        assert [a.header("amz-sdk-request") for a in attempts] == [
            "attempt=1",
            "attempt=2; max=3",
            "attempt=3; max=3",
        ]
    dynamodb.assert_attempts(min=3, max=3, failure_statuses=FAILURES)
    judged(resilience.assert_no_retry_storm, dynamodb, failure_statuses=FAILURES)
    # Growth is not judged: two full-jitter retries cannot rule out a client that never
    # grows (timing.outgrown), so min_factor=1 judges the cap and the jitter alone.
    judged(
        dynamodb.assert_backoff, jitter=True, min_factor=1, max_delay=20, failure_statuses=FAILURES
    )


def test_legacy_dynamodb_retries_in_lockstep_and_is_called_a_storm(
    aws: boto3.session.Session, dynamodb: HttpService, resilience: Resilience
) -> None:
    """``data/_retry.json`` ``retry.dynamodb``: base 0.05 s, growth factor 2, and
    ``retryhandler.py`` ``delay_exponential`` uses the base as it is (no ``'rand'``): five
    clients throttled together retry at 0.05, 0.1, 0.2, 0.4 and 0.8 s, all of them, so the
    waits grow but carry no jitter, and the herd comes back as one.  ``max_attempts=5``
    retries is 6 attempts (``translate.py`` ``_merge_client_retry_config``)."""
    throttle(dynamodb)
    clients = [client(aws, dynamodb, mode="legacy", max_attempts=5) for _ in range(HERD)]

    outcomes = herd(clients, get_item)

    assert all(isinstance(o, botocore.exceptions.ClientError) for o in outcomes)
    calls = by_invocation(list(dynamodb.settled()))
    assert len(calls) == HERD
    for attempts in calls.values():
        assert [a.header("amz-sdk-request") for a in attempts] == [
            "attempt=1",
            *(f"attempt={n}; max=6" for n in range(2, 7)),
        ]
    dynamodb.assert_attempts(min=6, max=6, failure_statuses=FAILURES)
    judged(dynamodb.assert_backoff, jitter=False, min_factor=1.5, failure_statuses=FAILURES)
    judged(
        dynamodb.assert_backoff,
        jitter=True,
        failure_statuses=FAILURES,
        claim="retry waits carry no jitter",
    )
    judged(
        resilience.assert_no_retry_storm,
        dynamodb,
        failure_statuses=FAILURES,
        claim="retry storm",
    )
