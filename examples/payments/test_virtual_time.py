"""Production-sized schedules on virtual time: what production sends, asserted in milliseconds.

Retry-After of a minute, backoff capped at 30 s, twenty clients through a two-minute
outage: on real time each test would wait minutes, so suites shrink them to toy values
and never see a client that caps or ignores a long Retry-After.  Under
``@pytest.mark.virtual_time`` the client's ``time.sleep`` ends at once and moves the
clock the plugin records with forward, so the verdicts judge the real schedule.

Each test also checks the clock itself (``resilience.clocks``): the waits were jumped
over, not waited out.  That is the difference between this file and its real-time
twins in ``test_payments.py``, which judge the same client with toy values.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest

from pytest_resilience import HttpService, Resilience, Run
from pytest_resilience.assertions import ResilienceAssertionError

from .client import CircuitBreaker, PaymentError, PaymentsClient, RetryPolicy
from .conftest import Order

pytestmark = pytest.mark.virtual_time

OUTAGE = 120.0
HERD = 20


def skipped(resilience: Resilience) -> float:
    """Virtual seconds the test's clock jumped over (real time did not pass)."""
    (clock,) = resilience.clocks
    return clock.skipped


def test_a_retry_after_of_a_minute_is_waited_out_in_virtual_time(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    client.policy = RetryPolicy(attempts=5, base=0.05, cap=0.4, max_retry_after=120)
    payments.route("POST", "/charges").rate_limit(burst=1, retry_after=60)

    charge = client.charge(order.amount, order.currency, order.customer)

    assert charge.status == "succeeded"
    payments.assert_retry_after_honoured()
    payments.assert_attempts(max=2)
    payments.assert_stable_idempotency_key()
    assert skipped(resilience) >= 59.0


def test_a_client_that_caps_retry_after_at_5_s_gives_up_on_a_minute(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    """The client's default ``max_retry_after`` is 5 s: a minute ends its retries."""
    payments.route("POST", "/charges").rate_limit(burst=1, retry_after=60)

    with pytest.raises(PaymentError, match="after 1 attempt"):
        client.charge(order.amount, order.currency, order.customer)

    payments.assert_attempts(max=1)


def test_five_attempts_with_backoff_capped_at_30_s(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    """Ten charges, each through four 503s: five attempts each, one key per charge.

    The waits' growth and jitter are judged in the herd tests below, not here: the jitter
    test reads the timing noise measured over the real time the test took, and ten charges
    one after another on virtual time take a tenth of a second, too few samples to rule
    noise out; the verdict then says "insufficient evidence" (it did in some runs)."""
    client.policy = RetryPolicy(attempts=5, base=10.0, cap=30.0)
    amounts = iter(range(order.amount, order.amount + 10))

    def charge_through_four_503s() -> object:
        payments.route("POST", "/charges").fail(503, count=4)
        return client.charge(next(amounts), order.currency, order.customer)

    run = resilience.drive(charge_through_four_503s, calls=10)

    run.assert_availability(min=1.0)
    payments.assert_attempts(max=5)
    payments.assert_stable_idempotency_key()
    payments.assert_no_duplicate_side_effects()
    # Forty full-jitter draws below 10, 20, 30 and 30 s (mean 450 s), jumped over.
    assert skipped(resilience) >= 200.0


@dataclass(frozen=True)
class NoJitter(RetryPolicy):
    """Exponential backoff without jitter: every client waits the same series."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        return min(self.cap, self.base * 2 ** (retry - 1))


HERD_POLICY = {"attempts": 10, "base": 5.0, "cap": 60.0, "timeout": 2.0}


def herd_charges(
    resilience: Resilience, client: PaymentsClient, order: Order, policy: RetryPolicy
) -> Run:
    """:data:`HERD` charges at once, one thread each, retrying by ``policy``."""
    client.policy = policy
    client.breaker = CircuitBreaker(failures=10 * HERD)  # the breaker is another test's subject
    amounts = itertools.count(order.amount)  # one charge each, none a duplicate of another
    return resilience.load(
        lambda: client.charge(next(amounts), order.currency, order.customer),
        duration=0.02,
        rate=HERD / 0.02,
        concurrency=HERD,
    )


@pytest.mark.http_faults("payments", status=503, duration=OUTAGE)
def test_a_herd_with_full_jitter_comes_back_spread_out_after_a_two_minute_outage(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    run = herd_charges(resilience, client, order, RetryPolicy(**HERD_POLICY))

    assert len(run) == HERD
    payments.assert_attempts(max=10)
    payments.assert_no_duplicate_side_effects()
    payments.assert_backoff(jitter=True, max_delay=60.0, min_factor=1)
    resilience.assert_no_retry_storm(payments)
    assert skipped(resilience) >= OUTAGE / 2


@pytest.mark.http_faults("payments", status=503, duration=OUTAGE)
def test_a_herd_without_jitter_comes_back_as_a_retry_storm_after_a_two_minute_outage(
    resilience: Resilience, payments: HttpService, client: PaymentsClient, order: Order
) -> None:
    run = herd_charges(resilience, client, order, NoJitter(**HERD_POLICY))

    # 5 + 10 + 20 + 40 s of waits end in the outage; the fifth attempt, at 75 s, fails too,
    # and the sixth, at 135 s, finds it healed.
    run.assert_availability(min=1.0)
    payments.assert_attempts(max=6)
    payments.assert_no_duplicate_side_effects()
    with pytest.raises(
        ResilienceAssertionError,
        match=rf"^retry storm: ([3-9]|1\d|{HERD}) operations failed together",
    ):
        resilience.assert_no_retry_storm(payments)
    assert skipped(resilience) >= OUTAGE
