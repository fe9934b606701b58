"""The official OpenAI SDK (openai 3.63) against a stub that answers like OpenAI.

What the SDK does, from its source (``site-packages/openai/_base_client.py``):
- ``BaseClient._should_retry``: a Retry-After over 120 s means no retry at all; then
  ``x-should-retry: true|false`` decides; else 408, 409, 429 and every status >= 500
  are retried (``max_retries`` 2 by default).
- ``BaseClient._parse_retry_after_header``: ``retry-after-ms`` first, then
  ``retry-after`` (seconds, then HTTP-date); ``_calculate_retry_timeout`` waits
  exactly that when it is within (0, 120] s.
- ``BaseClient._build_headers``: each attempt carries ``x-stainless-retry-count``
  0, 1, 2...; no Idempotency-Key is sent.
- ``openai/_client.py`` ``OpenAI._make_status_error``: 429 raises ``RateLimitError``
  and every status >= 500 ``InternalServerError``, with ``code`` and ``type`` read from
  ``{"error": {...}}``.
"""

from __future__ import annotations

import itertools

import openai
import pytest

from pytest_resilience import HttpService, InsufficientEvidence, ResilienceAssertionError

from .conftest import ask_openai


def test_retry_after_ms_is_what_the_sdk_waits_and_what_the_verdict_reads(
    openai_api: HttpService, openai_client: openai.OpenAI
) -> None:
    """Retry-After says 2 s, retry-after-ms 200 ms: the SDK waits 200 ms, and the verdict,
    reading the millisecond header first, finds every retry on time."""
    openai_api.rate_limit(burst=2, retry_after=2, retry_after_ms=200)

    assert ask_openai(openai_client) == "hi"

    exchanges = openai_api.settled()
    assert [e.status for e in exchanges] == [429, 429, 200]
    assert [e.header("x-stainless-retry-count") for e in exchanges] == ["0", "1", "2"]
    assert [e.wait_header for e in exchanges[:2]] == ["retry-after-ms"] * 2
    assert exchanges[0].retry_after_delay == pytest.approx(0.2)
    assert max(b.started_at - a.started_at for a, b in itertools.pairwise(exchanges)) < 1.0
    openai_api.assert_retry_after_honoured()
    openai_api.assert_attempts(min=3, max=3)


def test_x_should_retry_false_ends_a_rate_limit_at_once(
    openai_api: HttpService, openai_client: openai.OpenAI
) -> None:
    openai_api.rate_limit(burst=1, retry_after_ms=10, headers={"x-should-retry": "false"})

    with pytest.raises(openai.RateLimitError) as raised:
        ask_openai(openai_client)

    assert (raised.value.code, raised.value.type) == ("rate_limit_exceeded", "requests")
    openai_api.assert_attempts(max=1)


def test_a_retry_after_over_two_minutes_is_not_retried(
    openai_api: HttpService, openai_client: openai.OpenAI
) -> None:
    openai_api.rate_limit(burst=1, retry_after=121)

    with pytest.raises(openai.RateLimitError):
        ask_openai(openai_client)

    openai_api.assert_attempts(max=1)
    # No retry came after the 429, so no record shows a wait kept: the verdict says so
    # rather than pass (assert_attempts above is what shows the SDK gave up).
    with pytest.raises(InsufficientEvidence, match="no retry followed one asking for more"):
        openai_api.assert_retry_after_honoured()


def test_an_outage_ends_in_internal_server_error_after_three_attempts(
    openai_api: HttpService, openai_client: openai.OpenAI
) -> None:
    openai_api.fail(503, headers={"retry-after-ms": "10"})

    with pytest.raises(openai.InternalServerError, match="currently overloaded"):
        ask_openai(openai_client)

    openai_api.assert_attempts(min=3, max=3)
    with pytest.raises(ResilienceAssertionError, match="made 3 attempts"):
        openai_api.assert_attempts(max=2)


@pytest.mark.rate_limited("openai", burst=1, retry_after_ms=200, headers={"x-request-id": "req_7"})
def test_the_rate_limited_marker_shapes_its_answer_too(
    openai_api: HttpService, openai_client: openai.OpenAI
) -> None:
    assert ask_openai(openai_client) == "hi"

    limited = openai_api.settled()[0]
    assert (limited.status, limited.answer_header("x-request-id")) == (429, "req_7")
    assert limited.answer_header("Content-Type") == "application/json"
    openai_api.assert_retry_after_honoured()
