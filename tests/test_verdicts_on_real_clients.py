"""Verdicts on real clients under real faults: requests, httpx, tenacity, stamina, backoff, pybreaker.

Each misbehaving client is caught by the verdict written for its mistake, and
the message opens with the rule it broke; each well-behaved client passes every
verdict that applies to it.  The clients (``charge_clients.py``) sleep as their
retry policies say (that is what is judged); the tests themselves never sleep.
Jitter comes from the global ``random``, seeded per test, so the draws replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pybreaker
import pytest
import requests
import tenacity
from charge_clients import (
    CAP,
    CHARGES,
    TRANSIENT,
    WELL_BEHAVED,
    charge,
    exponential_charge,
    fixed_interval_charge,
    new_key,
    new_key_per_attempt_charge,
    post_charge,
    same_key_charge,
    tenacity_charge,
)
from processes import wait_for
from real_clients import judged, released_together, settled

from pytest_resilience.assertions import InsufficientEvidence, ResilienceAssertionError
from pytest_resilience.resilience import Resilience
from pytest_resilience.services.http import HttpService

FALLBACK = {"id": None, "status": "queued"}
HERD_BASE = 0.2
"""Seconds of the herds' first wait: long against a busy machine's timing noise (tens of
ms under two CPU hogs), so that lockstep can be told from jitter."""
pytestmark = pytest.mark.usefixtures("seeded_jitter")
JITTER_SEED = 20261129
"""tenacity, stamina and backoff draw their jitter from the global ``random``."""


@pytest.fixture
def payments(resilience: Resilience) -> HttpService:
    service = resilience.http_service("payments")
    service.respond(201, json={"id": "ch_1", "status": "succeeded"})
    return service


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


@pytest.fixture(params=list(WELL_BEHAVED))
def good_client(request: pytest.FixtureRequest) -> Callable[..., requests.Response]:
    """One charge through tenacity 9.2.1, stamina 26.1.0 or backoff 2.2.1 (site-packages); each
    test using it cites the functions of the three that define what it relies on."""
    return WELL_BEHAVED[request.param]


# -- backoff: growth, jitter, storms ---------------------------------------------------------


def test_fixed_interval_retries_under_a_429_burst_neither_back_off_nor_honour_retry_after(
    payments: HttpService, session: requests.Session
) -> None:
    """``requests/adapters.py:HTTPAdapter.__init__`` (requests 2.34.2) mounts ``Retry(0,
    read=False)``: requests retries nothing itself, so the 4 attempts are the loop's, 50 ms
    apart, blind to the Retry-After of 1 s."""
    payments.rate_limit(burst=3, retry_after=1)

    assert fixed_interval_charge(session, payments.url, 1).status_code == 201

    settled(payments, 4)
    payments.assert_attempts(max=4)
    # One operation: its waits alone cannot tell a fixed interval from a growing backoff
    # with full jitter that drew short waits, nor show jitter (see tests/test_timing_verdicts.py).
    with pytest.raises(InsufficientEvidence, match=r"growth .*; jitter needs waits at the same"):
        payments.assert_backoff()
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation key=\w+ retried \d+ ms after an answer whose Retry-After asked for 1 s "
        r"\(3 early attempts",
    ):
        payments.assert_retry_after_honoured()


def test_exponential_backoff_without_jitter_after_a_shared_outage_retries_in_lockstep(
    resilience: Resilience, payments: HttpService
) -> None:
    """``exponential_charge(jitter=False)`` waits 0.2, 0.4, 0.8 s in every client; requests
    adds no attempt (``requests/adapters.py:HTTPAdapter.__init__``, requests 2.34.2:
    ``Retry(0, read=False)``)."""
    payments.fail(503, count=15)  # five clients, three failures each

    def client(order: int) -> int:
        with requests.Session() as session:
            return exponential_charge(
                session, payments.url, order, jitter=False, base=HERD_BASE
            ).status_code

    assert released_together(5, client) == [201] * 5

    settled(payments, 20)
    # Timing verdicts on a herd: decided, or honestly undecided on a machine whose noise
    # hides the herd (how often, tests/test_zoo_herds.py simulates), never the other side.
    judged(resilience.assert_no_retry_storm, payments, claim="retry storm")
    judged(payments.assert_backoff, jitter=True, claim="retry waits carry no jitter")
    judged(payments.assert_backoff, jitter=False)
    payments.assert_attempts(max=6)
    payments.assert_no_duplicate_side_effects()


def test_lockstep_clients_charging_the_same_body_are_told_apart_by_their_stable_keys(
    resilience: Resilience, payments: HttpService
) -> None:
    """Five customers paying the same amount at once, each keeping its own key: five
    operations of four attempts (bug: merged into one operation of twenty, so the storm
    goes unseen and each client is said to change its key).  Each client's 4
    attempts are its loop's: ``requests/adapters.py:HTTPAdapter.__init__`` (requests 2.34.2)
    mounts ``Retry(0, read=False)``."""
    payments.fail(503, count=15)

    def client(_: int) -> int:
        with requests.Session() as session:
            return exponential_charge(
                session, payments.url, 0, jitter=False, base=HERD_BASE
            ).status_code

    assert released_together(5, client) == [201] * 5

    settled(payments, 20)
    payments.assert_stable_idempotency_key()
    payments.assert_attempts(max=6)
    payments.assert_no_duplicate_side_effects(key=lambda effect: effect.idempotency_key)
    judged(payments.assert_backoff, jitter=False)
    judged(resilience.assert_no_retry_storm, payments, claim="retry storm")


def test_a_reconnect_storm_while_the_service_is_down_is_insufficient_evidence(
    resilience: Resilience, payments: HttpService
) -> None:
    """Issue 10: clients reconnecting in lockstep while connections are refused leave no
    HTTP record, and the storm verdict passed them.  It now says what it cannot see.
    ``requests/adapters.py:HTTPAdapter.__init__`` (requests 2.34.2) mounts ``Retry(0,
    read=False)``: a refused connection raises ``ConnectionError`` at once; only the 50 ms
    loop retries."""
    outage = payments.down()
    tries = [0] * 4

    def client(order: int) -> int:
        with requests.Session() as session:
            while True:
                try:
                    return session.post(payments.url + CHARGES, json=charge(order)).status_code
                except requests.ConnectionError:
                    tries[order] += 1
                    time.sleep(0.05)  # the policy under test: a fixed reconnect interval

    with ThreadPoolExecutor(4) as pool:
        results = [pool.submit(client, n) for n in range(4)]
        wait_for(
            lambda: min(tries) >= 3,
            timeout=3.0,
            interval=0.005,
            what="every client refused three times",
        )
        outage.heal()
        assert [r.result(timeout=5) for r in results] == [201] * 4

    settled(payments, 4)
    with pytest.raises(
        InsufficientEvidence,
        match=r"attempts could leave no record \(down from t\+\d+ to t\+\d+ ms\)",
    ):
        resilience.assert_no_retry_storm(payments)


def test_full_jitter_after_a_shared_outage_spreads_the_retries(
    resilience: Resilience, payments: HttpService
) -> None:
    """``exponential_charge(jitter=True)`` draws ``random.uniform(0, 0.2 * 2**n)``; requests
    adds no attempt (``requests/adapters.py:HTTPAdapter.__init__``, requests 2.34.2:
    ``Retry(0, read=False)``)."""
    payments.fail(503, count=15)

    def client(order: int) -> int:
        with requests.Session() as session:
            return exponential_charge(
                session, payments.url, order, jitter=True, base=HERD_BASE
            ).status_code

    assert released_together(5, client) == [201] * 5

    settled(payments, 20)
    judged(resilience.assert_no_retry_storm, payments)
    # Growth is not judged: five first waits drawn with full jitter may all be low draws
    # (timing.outgrown), so whether the client grows is insufficient evidence here.
    judged(payments.assert_backoff, jitter=True, min_factor=1)
    payments.assert_attempts(max=6)


# -- Retry-After ----------------------------------------------------------------------------


def test_httpx_client_that_ignores_retry_after_is_flagged(payments: HttpService) -> None:
    """``httpx/_transports/default.py:HTTPTransport.__init__`` (httpx 0.29.0): ``retries=0``, and
    those only for connect failures: the 429 reaches the loop, which retries after 50 ms."""
    payments.rate_limit(burst=1, retry_after=1)

    with httpx.Client(timeout=2) as client:
        response = client.post(
            payments.url + CHARGES, json=charge(1), headers={"Idempotency-Key": "k1"}
        )
        while response.status_code == 429:
            time.sleep(0.05)  # the policy under test: ignores the Retry-After
            response = client.post(
                payments.url + CHARGES, json=charge(1), headers={"Idempotency-Key": "k1"}
            )

    assert response.status_code == 201
    settled(payments, 2)
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^operation key=k1 retried \d+ ms after an answer whose Retry-After asked for 1 s "
        r"\(1 early attempts; tolerance 50 ms\)",
    ):
        payments.assert_retry_after_honoured()


def test_httpx_client_that_waits_the_retry_after_passes(payments: HttpService) -> None:
    """``httpx/_transports/default.py:HTTPTransport.__init__`` (httpx 0.29.0): ``retries=0``, and
    those only for connect failures: the 429 reaches the loop, which sleeps its Retry-After."""
    payments.rate_limit(burst=1, retry_after=1)

    with httpx.Client(timeout=2) as client:
        response = client.post(
            payments.url + CHARGES, json=charge(1), headers={"Idempotency-Key": "k1"}
        )
        while response.status_code == 429:
            time.sleep(float(response.headers["Retry-After"]))  # the policy under test
            response = client.post(
                payments.url + CHARGES, json=charge(1), headers={"Idempotency-Key": "k1"}
            )

    assert response.status_code == 201
    settled(payments, 2)
    payments.assert_retry_after_honoured()
    payments.assert_attempts(max=2)


def test_well_behaved_client_waits_the_retry_after_of_a_429(
    payments: HttpService, session: requests.Session, good_client: Callable[..., requests.Response]
) -> None:
    """The wait after the 429 is its Retry-After, 1 s, above CAP: tenacity 9.2.1
    ``__init__.py:BaseRetrying._run_wait`` asks ``wait_retry_after`` with the failed outcome;
    stamina 26.1.0 ``_core.py:_TenacityBackoffCallbackAdapter.__call__`` keeps the hook's float,
    which ``_RetryContextIterator._jittered_backoff_for_rcs`` waits unclamped by ``wait_max``;
    backoff 2.2.1 ``_wait_gen.py:runtime`` yields ``value(ret)``, unjittered (``jitter=None``,
    ``_common.py:_next_wait``)."""
    payments.rate_limit(burst=1, retry_after=1)

    assert good_client(session, payments.url, 1).status_code == 201

    [limited, ok] = settled(payments, 2)
    assert (limited.status, ok.status) == (429, 201)
    payments.assert_retry_after_honoured()
    payments.assert_attempts(max=2)
    payments.assert_stable_idempotency_key()
    payments.assert_no_duplicate_side_effects()


def test_well_behaved_client_backs_off_with_jitter_under_the_cap(
    payments: HttpService, session: requests.Session, good_client: Callable[..., requests.Response]
) -> None:
    """Each call's 3 waits, all jittered and at most CAP: tenacity 9.2.1
    ``wait.py:wait_random_exponential.__call__`` U(0, min(0.1 * 2**(n-1), 0.3)); backoff 2.2.1
    ``_wait_gen.py:expo`` 0.1, 0.2, then ``max_value`` 0.3, drawn by ``_jitter.py:full_jitter``
    U(0, v); stamina 26.1.0 ``_core.py:_compute_backoff`` min(0.3, 0.05 * 2**(n-1) + U(0, 0.05)).
    Each mints its key once per call, before its retry loop."""
    # Eight calls one after another: jitter shows across operations (one operation's waits
    # cannot show it), beyond the timing noise of a busy machine.  Growth is not judged:
    # the cap (3x the first range) cuts the third retry's range (0.4 s to 0.3 s for tenacity
    # and backoff; stamina's waits never reach it), and eight first waits that
    # may be full-jitter draws may all be low ones (timing.outgrown: a client never growing
    # cannot be ruled out; tests/test_timing_verdicts.py proves growth on larger fleets).
    for order in range(8):
        payments.fail(503, count=3)
        assert good_client(session, payments.url, order).status_code == 201

    settled(payments, 32)
    payments.assert_attempts(max=4)
    payments.assert_backoff(max_delay=CAP, min_factor=1)
    with pytest.raises(InsufficientEvidence, match="no answer that reached the client asked"):
        payments.assert_retry_after_honoured()  # its 503s carry no Retry-After
    payments.assert_stable_idempotency_key()
    payments.assert_no_duplicate_side_effects()
    assert len(payments.effects) == 8


# -- idempotency under a lost answer -------------------------------------------------------


def test_new_key_per_attempt_after_a_lost_answer_charges_twice(
    payments: HttpService, session: requests.Session
) -> None:
    """``requests/adapters.py:HTTPAdapter.__init__`` (requests 2.34.2) mounts ``Retry(0,
    read=False)``: the lost answer's ``ReadTimeout`` reaches the loop, whose retry mints a
    second key."""
    cut = payments.partition(direction="downstream")

    new_key_per_attempt_charge(session, payments.url, 1, before_retry=cut.heal)

    [lost, retry] = settled(payments, 2)
    assert (lost.delivered, retry.delivered) == (False, True)
    assert len(payments.effects) == 2
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^side effect applied 2 times: POST /charges with the same body .* under keys "
        r"'\w+', '\w+'; 1 business action\(s\) were duplicated\.",
    ):
        payments.assert_no_duplicate_side_effects()
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^the 2 attempts of key=\w+ carried 2 different Idempotency-Keys "
        r"\('\w+', '\w+'\); a retry must reuse its operation's key",
    ):
        payments.assert_stable_idempotency_key()


def test_same_key_after_a_lost_answer_charges_once(
    payments: HttpService, session: requests.Session
) -> None:
    """``requests/adapters.py:HTTPAdapter.__init__`` (requests 2.34.2) mounts ``Retry(0,
    read=False)``: the lost answer's ``ReadTimeout`` reaches the loop, whose one retry reuses
    the key."""
    cut = payments.partition(direction="downstream")

    assert same_key_charge(session, payments.url, 1, before_retry=cut.heal).status_code == 201

    [lost, replay] = settled(payments, 2)
    assert (lost.delivered, replay.step, replay.delivered) == (False, "replay", True)
    payments.assert_no_duplicate_side_effects()
    payments.assert_stable_idempotency_key()
    payments.assert_attempts(max=2)


def test_well_behaved_client_reuses_its_key_after_a_lost_answer(
    payments: HttpService, session: requests.Session, good_client: Callable[..., requests.Response]
) -> None:
    """The read timeout is retried with the same key: tenacity 9.2.1
    ``__init__.py:Retrying.__call__`` calls ``fn(*args, **kwargs)`` with the same args (key) each
    attempt, ``retry.py:retry_if_exception_type`` accepting ``requests.Timeout``; stamina 26.1.0
    ``_core.py:_TenacityBackoffCallbackAdapter.__call__`` retries on the hook's ``True``, the
    key bound before the loop; backoff 2.2.1 ``_sync.py:retry_exception`` retries ``TRANSIENT``
    (``giveup`` false: no ``status``), calling ``target`` again with the same key."""
    cut = payments.partition(direction="downstream")

    assert good_client(session, payments.url, 1, before_retry=cut.heal).status_code == 201

    [lost, replay] = settled(payments, 2)
    assert (lost.delivered, replay.step) == (False, "replay")
    assert len(payments.effects) == 1
    payments.assert_no_duplicate_side_effects()
    payments.assert_stable_idempotency_key()
    payments.assert_attempts(max=2)
    with pytest.raises(InsufficientEvidence, match="no answer that reached the client asked"):
        payments.assert_retry_after_honoured()  # the lost answer asked the client nothing


# -- circuit breakers, amplification, recovery -----------------------------------------------


def test_client_without_a_breaker_keeps_hammering_a_failing_service(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """No breaker, and no retry in requests (``requests/adapters.py:HTTPAdapter.__init__``,
    requests 2.34.2: ``Retry(0, read=False)``): each of the 20 calls is one attempt."""
    payments.fail(503)

    run = resilience.load(
        lambda: post_charge(session, payments.url, 1, new_key()), duration=1, rate=20
    )

    with pytest.raises(
        ResilienceAssertionError,
        match=r"^breaker did not open: after 3 consecutive failures the service still got \d+ "
        r"calls? within the 0\.5 s cooldown",
    ):
        resilience.assert_breaker_opened(payments, run, after_failures=3, cooldown=0.5)
    with pytest.raises(ResilienceAssertionError, match=r"^availability 0% is below 90%: 20 of 20"):
        run.assert_availability(min=0.9)


def test_pybreaker_with_a_fallback_opens_fails_fast_and_stays_available(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """pybreaker 1.4.1 ``__init__.py:CircuitClosedState.on_failure`` opens at ``counter >=
    fail_max`` (3) and raises ``CircuitBreakerError``; ``CircuitOpenState.before_call``
    refuses without calling until ``opened_at + reset_timeout``, then lets the call through
    half-open; ``CircuitHalfOpenState.on_failure`` reopens: 3 failures, then a probe per 0.5 s."""
    payments.fail(503)
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=0.5)

    def call() -> Any:
        try:
            return breaker.call(post_charge, session, payments.url, 1, new_key()).json()
        except (pybreaker.CircuitBreakerError, *TRANSIENT):
            return FALLBACK

    run = resilience.load(call, duration=1, rate=20)

    resilience.assert_breaker_opened(payments, run, after_failures=3, cooldown=0.5)
    run.assert_fail_fast(max_latency=0.05, skip=3)
    run.assert_availability(min=1.0)
    assert run.values.count(FALLBACK) == 20
    assert 4 <= len(payments.exchanges) <= 5  # three failures, then a probe per cooldown


def test_retries_without_a_budget_amplify_an_outage(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """``fixed_interval_charge(attempts=5)``: 5 requests per call; requests adds none
    (``requests/adapters.py:HTTPAdapter.__init__``, requests 2.34.2: ``Retry(0, read=False)``)."""
    payments.fail(503)

    def call() -> Any:
        return fixed_interval_charge(session, payments.url, 1, attempts=5)

    run = resilience.drive(call, calls=4)

    assert run.availability == 0
    with pytest.raises(
        ResilienceAssertionError,
        match=r"^retry amplification 5\.00: the service received 20 requests for 4 client calls "
        r"\(at most 2 per call allowed",
    ):
        resilience.assert_amplification(payments, run, max=2)


def test_tenacity_with_two_attempts_keeps_amplification_at_two(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """tenacity 9.2.1 ``stop.py:stop_after_attempt.__call__`` (``attempt_number >= 2``) stops after
    the second attempt, and ``__init__.py:BaseRetrying._post_stop_check_actions`` re-raises
    (``reraise=True``): 2 requests per call, every call failed."""
    payments.fail(503)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        wait=tenacity.wait_random_exponential(multiplier=0.02, max=CAP),
        stop=tenacity.stop_after_attempt(2),
        reraise=True,
    )

    run = resilience.drive(lambda: retrying(post_charge, session, payments.url, 1, new_key()), 4)

    assert run.availability == 0
    resilience.assert_amplification(payments, run, max=2)


def test_client_with_retries_recovers_once_the_outage_heals(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """tenacity 9.2.1 ``stop.py:stop_after_attempt.__call__`` gives each call 5 attempts;
    ``wait.py:wait_random_exponential.__call__`` waits U(0, 0.03 * 2**(n-1)) between them."""
    # An outage of 12 answers, healed once given: the first two calls spend their five
    # attempts in it (tenacity_charge: stop_after_attempt(5)), the third gets the last two.
    # (With a 0.4 s window instead, the first call's random waits, up to 0.03 + 0.06 + 0.12
    # + 0.24 s, and its round trips on a loaded machine could outlast the window, so its
    # last attempt succeeded and so did every call: seen when the test ran alone under load.)
    payments.fail(503, count=12)
    run = resilience.load(
        lambda: tenacity_charge(session, payments.url, 1, multiplier=0.03), duration=1, rate=20
    )

    assert 0 < run.availability < 1
    run.assert_recovers(within=0.2)


def test_breaker_that_never_closes_again_does_not_recover(
    resilience: Resilience, payments: HttpService, session: requests.Session
) -> None:
    """pybreaker 1.4.1 ``__init__.py:CircuitClosedState.on_failure`` opens at the third failure;
    ``CircuitOpenState.before_call`` raises ``CircuitBreakerError`` until ``opened_at +
    reset_timeout`` (60 s): every later call of the 1 s load fails."""
    # Three 503s open it (pybreaker: fail_max=3), healed once given: as many failures
    # whatever the machine's pace, where a window in time holds as many as the pace allows.
    payments.fail(503, count=3)
    breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=60)

    run = resilience.load(
        lambda: breaker.call(post_charge, session, payments.url, 1, new_key()), duration=1, rate=20
    )

    with pytest.raises(
        ResilienceAssertionError,
        match=r"^no recovery: \d+ calls? still failed more than 0\.2 s after the last fault healed",
    ):
        run.assert_recovers(within=0.2)
