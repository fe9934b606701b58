"""The fixed payments client under every fault the incident had, and a few more.

Each test injects one fault on the payments API, lets the client do its job, and
asserts what the API saw: how many attempts each charge made, how they were spaced,
whether Retry-After was waited, whether any charge was applied twice.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from pytest_resilience import HttpService, Resilience

from .client import (
    CircuitBreaker,
    PaymentError,
    PaymentsClient,
    PaymentsUnavailable,
    RetryPolicy,
)
from .conftest import Order


def test_a_429_burst_is_ridden_out_waiting_the_retry_after(
    payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    payments.route("POST", "/charges").rate_limit(burst=1, retry_after=1)

    charge = client.charge(order.amount, order.currency, order.customer)

    assert charge.status == "succeeded"
    payments.assert_retry_after_honoured()
    payments.assert_attempts(max=2)
    payments.assert_stable_idempotency_key()
    payments.assert_no_duplicate_side_effects()


def test_a_retry_after_longer_than_the_client_waits_ends_the_retries(
    payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    payments.route("POST", "/charges").rate_limit(burst=1, retry_after=3600)

    with pytest.raises(PaymentError, match="after 1 attempt"):
        client.charge(order.amount, order.currency, order.customer)

    payments.assert_attempts(max=1)


def test_a_503_burst_is_retried_with_growing_jittered_backoff(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    """Ten charges caught by the same burst each back off, each on its own schedule."""
    # The 503s go to whichever charge asks next, so one may draw more than its share.
    # Waits drawn below 150, 300, 400 ms: long enough to stand out of a busy machine's
    # timing noise, in enough charges to show it (six left their jitter undecided under
    # two CPU hogs once in nine runs: full-jitter waits may fall together, and waits
    # lying together may be lockstep clients held by one delay).
    client.policy = RetryPolicy(attempts=8, base=0.15, cap=0.4, timeout=0.5)
    client.breaker = CircuitBreaker(failures=40)  # the breaker is another test's subject
    payments.route("POST", "/charges").fail(503, count=30)
    run = resilience.load(
        lambda: client.charge(order.amount, order.currency, order.customer),
        duration=0.1,
        rate=100,
        concurrency=10,
    )

    run.assert_availability(min=1.0)
    payments.assert_attempts(max=8)
    # Growth is not judged: the cap stops it at 2.7x the first range, and ten first waits
    # drawn with full jitter may all be low draws, so a fixed range cannot be ruled out.
    payments.assert_backoff(jitter=True, max_delay=0.4, min_factor=1)
    payments.assert_stable_idempotency_key()
    resilience.assert_no_retry_storm(payments)


@pytest.mark.partition("payments", direction="downstream", duration=0.3)
def test_a_lost_answer_is_retried_with_the_same_key_and_charged_once(
    payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    charge = client.charge(order.amount, order.currency, order.customer)

    assert charge.status == "succeeded"
    assert payments.exchanges.lost(), "the partition should have eaten the first answer"
    assert len(payments.effects) == 1
    payments.assert_no_duplicate_side_effects()
    payments.assert_stable_idempotency_key()
    payments.assert_attempts(max=3)


@pytest.mark.reset_peer("payments", duration=0.2)
def test_reset_connections_are_retried_until_the_api_answers(
    payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    # Full jitter may draw short waits; eight attempts outlast the 0.2 s of resets.
    client.policy = RetryPolicy(attempts=8, base=0.05, cap=0.4, timeout=0.5)
    client.breaker = CircuitBreaker(failures=8)

    charge = client.charge(order.amount, order.currency, order.customer)

    assert charge.status == "succeeded"
    assert any(c.outcome == "reset" for c in payments.connections)
    assert len(payments.effects) == 1
    payments.assert_no_duplicate_side_effects()


@pytest.mark.latency("payments", ms=150, jitter=50)
def test_a_slow_api_within_the_timeout_is_not_retried(
    payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    client.charge(order.amount, order.currency, order.customer)

    payments.assert_attempts(max=1)


def test_a_partition_ends_in_a_bounded_number_of_attempts(
    payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    with payments.partition(mode="refuse"), pytest.raises(PaymentError, match="after 5 attempt"):
        client.charge(order.amount, order.currency, order.customer)

    # Refused: not one connection got through.  The 5 attempts are the client's own count:
    # a refused connection leaves no record, so assert_connections(max=) cannot bound them
    # (it says insufficient evidence under mode="refuse"; "blackhole" would record them).
    assert payments.connections == []


def test_an_outage_opens_the_breaker_and_the_cached_balance_keeps_answering(
    resilience: Resilience, payments: HttpService, client: PaymentsClient
) -> None:
    seen = client.balance()
    payments.route("GET", "/balance").fail(503)

    # Long enough for the breaker's five failed attempts, backoff included, and one whole
    # 0.5 s cooldown after them, also on a busy machine: assert_breaker_opened says
    # insufficient evidence if the calls end inside the first cooldown (a stress run with
    # 1.2 s had the breaker open 0.8 s in, and its last call 413 ms after that).
    run = resilience.load(client.balance, duration=2.0, rate=25)

    resilience.assert_breaker_opened(payments, run, after_failures=5, cooldown=0.5)
    run.assert_fail_fast(max_latency=0.05, skip=2)
    run.assert_availability(min=1.0)
    assert {value.available for value in run.values} == {seen.available}
    assert all(value.stale for value in run.values)


@pytest.mark.http_faults("payments", status=503, duration=0.8)
def test_charges_recover_once_the_outage_heals(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    """The outage outlasts a charge's retries and opens the breaker; the first probe after
    its 0.5 s cooldown closes it again."""

    def charge() -> object:
        return client.charge(order.amount, order.currency, order.customer)

    run = resilience.load(charge, duration=2.0, rate=10)

    assert 0 < run.availability < 1
    assert any(isinstance(error, PaymentsUnavailable) for error in run.errors)
    run.assert_recovers(within=0.7)


@pytest.mark.explore(examples=10, kinds=["http_faults", "cut_answers"], max_faults=3)
def test_no_mix_of_errors_and_lost_answers_charges_twice(
    resilience: Resilience, payments: HttpService, order: Order
) -> None:
    """Up to three faults of the kinds the incident had (5xx answers, answers lost on the
    way back), drawn and combined by explore: whatever they are, a charge is applied at
    most once and its retries keep their key. The client is made in the body, so that a
    breaker opened by one schedule does not carry into the next."""
    with (
        PaymentsClient(
            payments.url,
            policy=RetryPolicy(attempts=5, base=0.02, cap=0.1, timeout=0.5),
            breaker=CircuitBreaker(failures=5, cooldown=0.5),
            rng=random.Random(resilience.seed),
        ) as client,
        contextlib.suppress(PaymentError),
    ):
        client.charge(order.amount, order.currency, order.customer)

    payments.assert_no_duplicate_side_effects()
    payments.assert_stable_idempotency_key()
