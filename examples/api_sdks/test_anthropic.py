"""The official Anthropic SDK (anthropic 2.17) against a stub that answers like Anthropic.

What the SDK does, from its source (``site-packages/anthropic/``):
- ``_base_client.py`` ``BaseClient._should_retry``: ``x-should-retry: true|false``
  decides first; else 408, 409, 429 and every status >= 500, 529 included, are retried
  (``max_retries`` 2 by default).
- ``_base_client.py`` ``BaseClient._parse_retry_after_header`` and
  ``_calculate_retry_timeout``: ``retry-after-ms`` first, then ``retry-after``; any
  positive wait is taken as it is.
- ``_error_classes.py`` ``make_status_error``: 529 raises ``OverloadedError``, 504
  ``GatewayTimeoutError``, 429 ``RateLimitError``, with ``type`` read from
  ``{"type": "error", "error": {"type": ...}}``.
"""

from __future__ import annotations

import itertools

import anthropic
import pytest

from pytest_resilience import HttpService, ResilienceAssertionError

from .conftest import ask_claude


def test_an_overloaded_api_is_one_operation_of_three_attempts(
    anthropic_api: HttpService, anthropic_client: anthropic.Anthropic
) -> None:
    """Three keyless 529s from one call are one operation: a 529 is a failed attempt."""
    anthropic_api.fail(529, headers={"retry-after-ms": "10"})

    with pytest.raises(anthropic.OverloadedError) as raised:
        ask_claude(anthropic_client)

    assert raised.value.type == "overloaded_error"
    anthropic_api.assert_attempts(min=3, max=3)
    with pytest.raises(ResilienceAssertionError, match="made 3 attempts"):
        anthropic_api.assert_attempts(max=1)


def test_an_overload_burst_is_ridden_out_on_the_waits_it_asked_for(
    anthropic_api: HttpService, anthropic_client: anthropic.Anthropic
) -> None:
    anthropic_api.fail(529, count=2, headers={"retry-after-ms": "200", "retry-after": "5"})

    assert ask_claude(anthropic_client) == "hi"

    exchanges = anthropic_api.settled()
    assert [e.status for e in exchanges] == [529, 529, 200]
    # The SDK waited the 200 ms of retry-after-ms, not the 5 s of retry-after.
    assert max(b.started_at - a.started_at for a, b in itertools.pairwise(exchanges)) < 1.0
    anthropic_api.assert_retry_after_honoured()
    anthropic_api.assert_attempts(max=3)


def test_x_should_retry_false_ends_an_overload_at_once(
    anthropic_api: HttpService, anthropic_client: anthropic.Anthropic
) -> None:
    anthropic_api.fail(529, count=1, headers={"x-should-retry": "false"})

    with pytest.raises(anthropic.OverloadedError):
        ask_claude(anthropic_client)

    anthropic_api.assert_attempts(max=1)


def test_a_slow_gateway_timeout_is_retried(
    anthropic_api: HttpService, anthropic_client: anthropic.Anthropic
) -> None:
    anthropic_api.route("POST", "/v1/messages").delay(
        0.05, count=1, status=504, headers={"retry-after-ms": "10"}
    )

    assert ask_claude(anthropic_client) == "hi"

    slow, answered = anthropic_api.settled()
    assert (slow.status, slow.step, slow.scripted) == (504, "delay", True)
    assert slow.ended_at is not None and slow.ended_at - slow.started_at >= 0.05
    assert answered.status == 200


def test_a_rate_limit_error_carries_anthropics_error_type(
    anthropic_api: HttpService, anthropic_client: anthropic.Anthropic
) -> None:
    anthropic_api.rate_limit(burst=3, retry_after_ms=200)

    with pytest.raises(anthropic.RateLimitError) as raised:
        ask_claude(anthropic_client)

    assert raised.value.type == "rate_limit_error"
    anthropic_api.assert_attempts(min=3, max=3)
    anthropic_api.assert_retry_after_honoured()


@pytest.mark.parametrize(
    "timeout",
    [
        pytest.param(60.0, marks=pytest.mark.virtual_time, id="virtual"),
        pytest.param(0.6, id="real"),
    ],
)
def test_a_slow_answer_times_out_at_the_sdks_timeout_three_times(
    anthropic_api: HttpService, timeout: float
) -> None:
    """A production timeout (a minute) against an answer that takes two, in milliseconds
    on virtual time, with what a hundredth of it gives on real time.

    From the SDK's source (``_base_client.py``): ``_attempt_request`` turns the read
    timeout into ``APITimeoutError``, an ``APIConnectionError``, which
    ``_should_retry_exception`` retries; ``max_retries=2`` makes three attempts, each
    sending ``x-stainless-retry-count`` 0, 1, 2 (``_build_headers``); between them
    ``_calculate_retry_timeout`` sleeps 0.5 s x 2^n times a jitter of 0.75-1.0.  So each
    attempt starts one read timeout plus that sleep after the one before.
    """
    anthropic_api.route("POST", "/v1/messages").delay(2 * timeout)
    with (
        anthropic.Anthropic(
            api_key="sk-ant-stub", base_url=anthropic_api.url, max_retries=2, timeout=timeout
        ) as client,
        pytest.raises(anthropic.APITimeoutError),
    ):
        ask_claude(client)

    attempts = anthropic_api.exchanges
    assert [e.header("x-stainless-retry-count") for e in attempts] == ["0", "1", "2"]
    for n, (before, after) in enumerate(itertools.pairwise(attempts)):
        slept = after.started_at - before.started_at - timeout
        assert 0.5 * 2**n * 0.75 <= slept < 0.5 * 2**n + 1.0, (n, slept)
    anthropic_api.assert_attempts(min=3, max=3)
