"""The official Stripe SDK (stripe 16.1) against a stub that answers like Stripe.

What the SDK does, from its source (paths under site-packages/stripe/):
- ``_http_client.py`` ``HTTPClient._should_retry``: ``Stripe-Should-Retry: true|false``
  decides first; else 409 and every status >= 500 are retried; 429 is not.
  Retry-After is never read.
- ``_http_client.py`` ``HTTPClient._sleep_time_seconds``: the first retry waits 0.5 s.
- ``_api_requestor.py`` ``_APIRequestor.request_headers``: one ``Idempotency-Key`` per
  POST call, sent unchanged on each of its retries.
- ``_api_requestor.py`` ``_APIRequestor.specific_v1_api_error``: 429 (or 400 with code
  ``rate_limit``) raises ``RateLimitError``, other statuses ``APIError``; it reads
  ``error.get("code")``, so an answer whose ``"error"`` is a string crashes it.
- ``_encode.py`` ``_api_encode``: a form-encoded body, parameters in the order given.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import stripe

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError


def charge(client: stripe.StripeClient, params: dict[str, object] | None = None) -> stripe.Charge:
    return client.v1.charges.create(
        params=params or {"amount": 1999, "currency": "eur", "customer": "cus_1"}  # type: ignore[arg-type]
    )


def test_the_default_fault_body_meets_stripe_as_its_own_errors(resilience: Resilience) -> None:
    """A user saw AttributeError inside the SDK on a plain rate_limit(): the old default body
    put a string under "error", which specific_v1_api_error reads with .get()."""
    plain = resilience.http_service("plain")
    client = stripe.StripeClient("sk_test_stub", base_addresses={"api": plain.url})
    plain.rate_limit(burst=1)
    plain.fail(503, count=1)

    with pytest.raises(stripe.RateLimitError):
        charge(client)
    with pytest.raises(stripe.APIError):
        charge(client)


def test_a_lock_timeout_is_retried_once_under_the_same_key(
    stripe_api: HttpService, stripe_client: stripe.StripeClient
) -> None:
    stripe_api.route("POST", "/v1/charges").fail(
        409, count=1, headers={"Stripe-Should-Retry": "true"}
    )

    assert charge(stripe_client).id == "ch_1"

    first, second = stripe_api.settled()
    assert first.status == 409 and first.answer_header("Stripe-Should-Retry") == "true"
    assert first.idempotency_key is not None
    assert first.idempotency_key == second.idempotency_key
    stripe_api.assert_attempts(min=2, max=2)
    stripe_api.assert_stable_idempotency_key()
    stripe_api.assert_no_duplicate_side_effects()


def test_should_retry_false_stops_the_sdk_at_one_attempt(
    stripe_api: HttpService, stripe_client: stripe.StripeClient
) -> None:
    stripe_api.fail(500, headers={"Stripe-Should-Retry": "false"})

    with pytest.raises(stripe.APIError, match="An unknown error occurred"):
        charge(stripe_client)

    assert len(stripe_api.settled()) == 1
    stripe_api.assert_attempts(max=1)


def test_a_429_is_a_rate_limit_error_that_stripe_does_not_retry(
    stripe_api: HttpService, stripe_client: stripe.StripeClient
) -> None:
    stripe_api.rate_limit(burst=1, retry_after=1)

    with pytest.raises(stripe.RateLimitError) as raised:
        charge(stripe_client)

    assert raised.value.error is not None and raised.value.error.code == "rate_limit"
    assert raised.value.http_status == 429
    stripe_api.assert_attempts(max=1)


def test_the_same_charge_with_its_parameters_reordered_is_one_business_action(
    stripe_api: HttpService, stripe_client: stripe.StripeClient
) -> None:
    """Each call mints its own key, so the stub applies both; the bodies differ only in the
    order of their form fields, which the business identity ignores."""
    charge(stripe_client, {"amount": 1999, "currency": "eur", "customer": "cus_1"})
    charge(stripe_client, {"customer": "cus_1", "currency": "eur", "amount": 1999})

    first, second = stripe_api.settled()
    assert first.header("Content-Type") == "application/x-www-form-urlencoded"
    assert first.fingerprint == second.fingerprint
    with pytest.raises(ResilienceAssertionError, match="side effect applied 2 times"):
        stripe_api.assert_no_duplicate_side_effects()


def test_the_same_charge_under_one_key_is_applied_once(
    stripe_api: HttpService, stripe_client: stripe.StripeClient
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "order-42"}
    for params in ({"amount": 1999, "currency": "eur"}, {"currency": "eur", "amount": 1999}):
        stripe_client.v1.charges.create(params=params, options=options)  # type: ignore[arg-type]

    assert [e.step for e in stripe_api.settled()] == ["respond", "replay"]
    stripe_api.assert_no_duplicate_side_effects()


def test_the_readme_cookbook_shows_these_shapes() -> None:
    """The README's cookbook block is this example's shapes.py, word for word."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Cookbook: answers of real APIs") :]
    start = section.index("```python\n") + len("```python\n")
    block = section[start : section.index("\n```", start)]
    assert "def stripe_error" in block and "def anthropic_error" in block
    assert block.strip() in (Path(__file__).parent / "shapes.py").read_text()
