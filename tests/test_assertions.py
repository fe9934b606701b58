"""The verdicts on synthetic timelines: records built by hand, no sockets, no plugin fixtures.

Every rule is shown failing and, on a closely related timeline, passing; every failure
message is read as a user reads it: the rule in one sentence, then the evidence table
with the offending rows marked ``>``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable

import pytest
from records import (
    HEALTHY,
    T0,
    WALL,
    attempts,
    breaker,
    call,
    effect,
    evidence,
    exchange,
    failure,
    insufficient,
    marked,
    rule,
)

from pytest_resilience import ConfigurationError, InsufficientEvidence
from pytest_resilience.assertions import (
    check_amplification,
    check_attempts,
    check_breaker_opened,
    check_no_duplicate_side_effects,
    check_no_retry_storm,
    check_retry_after_honoured,
    check_stable_idempotency_key,
    operations,
)
from pytest_resilience.http.records import Exchange, retry_after_seconds

# -- operations and attempts -----------------------------------------------------------


def test_a_single_attempt_passes_max_one_and_fails_min_two() -> None:
    one = [exchange(0.0, 200, key="a")]
    check_attempts(one, max=1)
    check_attempts(one, min=1)

    message = failure(check_attempts, one, min=2)
    assert rule(message) == (
        "operation key=a made 1 attempts; each operation may make at least 2 "
        "(1 of 1 operations broke it)."
    )
    assert marked(message) == [("0", "key=a", "1")]


def test_attempts_over_max_fail_with_every_attempt_of_the_operation_marked() -> None:
    timeline = attempts(0.0, [0.1, 0.2, 0.4], "a") + attempts(0.05, [0.1], "b")
    check_attempts(timeline, max=4)
    check_attempts(timeline, max=4, min=2)

    message = failure(check_attempts, timeline, max=3, origin=T0)
    assert rule(message) == (
        "operation key=a made 4 attempts; each operation may make at most 3 "
        "(1 of 2 operations broke it)."
    )
    rows = evidence(message)
    assert [(r.t, r.operation, r.attempt, r.status, r.gap) for r in rows] == [
        ("0", "key=a", "1", "503", ""),
        ("50", "key=b", "1", "503", ""),
        ("100", "key=a", "2", "503", "100"),
        ("150", "key=b", "2", "200", "100"),
        ("300", "key=a", "3", "503", "200"),
        ("700", "key=a", "4", "200", "400"),
    ]
    assert marked(message) == [
        ("0", "key=a", "1"),
        ("100", "key=a", "2"),
        ("300", "key=a", "3"),
        ("700", "key=a", "4"),
    ]


def test_attempts_with_no_request_fails_min_and_cannot_judge_max_but_zero() -> None:
    """No request shows no operation's attempts (the README's need: any attempt); it
    shows min= broken and max=0 kept."""
    with pytest.raises(InsufficientEvidence, match="no request arrived, so no operation shows"):
        check_attempts([], max=3)
    check_attempts([], max=0)
    check_attempts([], min=0)  # it failed: "at least 0 attempts, but no request arrived"
    check_attempts([], min=0, max=0)
    message = failure(check_attempts, [], min=1)
    assert rule(message) == "expected operations with at least 1 attempts, but no request arrived."


def test_retries_with_a_minted_key_after_a_failure_are_one_operation() -> None:
    timeline = attempts(0.0, [0.1, 0.2], "a", mint=True)
    [op] = operations(timeline)
    assert op.keys == ["a-1", "a-2", "a-3"]
    check_attempts(timeline, max=3)

    message = failure(check_attempts, timeline, max=2)
    assert rule(message).startswith("operation key=a-1 made 3 attempts;")
    assert [m[2] for m in marked(message)] == ["1", "2", "3"]


def test_the_same_request_after_a_success_is_a_new_operation() -> None:
    timeline = [exchange(0.0, 200, key="a"), exchange(0.1, 200, key="b")]
    assert len(operations(timeline)) == 2
    check_attempts(timeline, max=1)
    no_retry_to_judge(timeline)


def test_an_identical_request_after_a_failure_without_keys_is_a_retry() -> None:
    timeline = [exchange(0.0, 503), exchange(0.1, None), exchange(0.3, 200)]
    [op] = operations(timeline)
    assert op.label == "#1 POST /charges"
    assert [a.status for a in op.attempts] == [503, None, 200]
    check_attempts(timeline, max=3)
    message = failure(check_attempts, timeline, max=2)
    assert [(r.attempt, r.status) for r in evidence(message)] == [
        ("1", "503"),
        ("2", "no answer"),
        ("3", "200"),
    ]


def test_custom_group_callable_groups_attempts_the_default_cannot_see() -> None:
    """A client that stamps each attempt's body differently is one operation by request id."""
    timeline = [
        exchange(0.0, 503, body={"amount": 5, "sent": 1}, headers=(("X-Request-Id", "r1"),)),
        exchange(0.1, 503, body={"amount": 5, "sent": 2}, headers=(("X-Request-Id", "r1"),)),
        exchange(0.3, 200, body={"amount": 5, "sent": 3}, headers=(("X-Request-Id", "r1"),)),
    ]

    def by_request_id(e: Exchange) -> str | None:
        return e.header("x-request-id")

    check_attempts(timeline, max=1)  # three bodies: three one-attempt operations by default
    check_attempts(timeline, max=3, group=by_request_id)
    message = failure(check_attempts, timeline, max=2, group=by_request_id)
    assert rule(message).startswith("operation r1 made 3 attempts;")
    assert marked(message) == [("0", "r1", "1"), ("100", "r1", "2"), ("300", "r1", "3")]


def test_operations_starting_at_the_same_instant_stay_apart() -> None:
    timeline = [
        exchange(0.0, 503, key="a", body={"order": 1}),
        exchange(0.0, 503, key="b", body={"order": 2}),
        exchange(0.0, 200, body={"order": 3}),
        exchange(0.2, 200, key="a", body={"order": 1}),
        exchange(0.2, 200, key="b", body={"order": 2}),
    ]
    assert [op.label for op in operations(timeline)] == ["key=a", "key=b", "#3 POST /charges"]
    check_attempts(timeline, max=2)
    check_stable_idempotency_key(timeline)


@pytest.mark.parametrize("keys", [("a", "b"), (None, None)], ids=["own-keys", "no-keys"])
@pytest.mark.parametrize("second", [0.0, 0.001], ids=["same-instant", "before-the-503"])
def test_concurrent_identical_requests_are_two_operations(
    keys: tuple[str | None, str | None], second: float
) -> None:
    """Bug: a request that starts before the failure it would retry was answered (here at
    2 ms) cannot be its retry; two customers buying the same thing at once are merged into
    one operation, and with their own keys reported as a retry that changed its key."""
    timeline = [exchange(0.0, 503, key=keys[0]), exchange(second, 503, key=keys[1])]
    assert len(operations(timeline)) == 2
    check_attempts(timeline, max=1)
    no_retry_to_judge(timeline)  # merged, they would be a retry with a changed key, or none


def test_lockstep_clients_with_their_own_keys_and_one_body_stay_apart() -> None:
    """Bug: five customers paying the same amount, each retrying with its own key, were
    chained into one operation of twenty attempts that changed its key."""
    timeline = [
        exchange(start + n * 0.003, 503 if start < 0.35 else 200, key=f"k{n}")
        for start in (0.0, 0.05, 0.15, 0.35)
        for n in range(5)
    ]
    ops = operations(timeline)
    assert [op.label for op in ops] == [f"key=k{n}" for n in range(5)]
    assert [len(op.attempts) for op in ops] == [4] * 5
    check_stable_idempotency_key(timeline)


def test_a_minted_key_chain_stays_one_operation_beside_a_stable_key_client() -> None:
    """A client that mints keys is told from one that keeps its key, on the same body."""
    minted = [
        exchange(0.0, 503, key="m1"),
        exchange(0.1, 503, key="m2"),
        exchange(0.3, 200, key="m3"),
    ]
    stable = [
        exchange(0.001, 503, key="s"),
        exchange(0.101, 503, key="s"),
        exchange(0.301, 200, key="s"),
    ]
    ops = operations(minted + stable)
    assert sorted(op.keys for op in ops) == [["m1", "m2", "m3"], ["s", "s", "s"]]
    message = failure(check_stable_idempotency_key, minted + stable)
    assert rule(message).startswith("the 3 attempts of key=m1 carried 3 different Idempotency-Keys")


# -- Retry-After -------------------------------------------------------------------------


def retry_after_timeline(
    retry_at: float, header: str = "1", delivered: bool = True
) -> list[Exchange]:
    return [
        exchange(0.0, 429, key="a", retry_after=header, delivered=delivered),
        exchange(retry_at, 200, key="a"),
    ]


def test_retry_after_honoured_when_the_retry_waits() -> None:
    check_retry_after_honoured(retry_after_timeline(1.01))
    check_retry_after_honoured(retry_after_timeline(0.002 + 1.0 - 0.04))  # within tolerance


def test_retry_after_broken_by_an_early_retry() -> None:
    message = failure(check_retry_after_honoured, retry_after_timeline(0.5))
    assert rule(message) == (
        "operation key=a retried 498 ms after an answer whose Retry-After asked for 1 s "
        "(1 early attempts; tolerance 50 ms)."
    )
    rows = evidence(message)
    assert [(r.flagged, r.t, r.attempt, r.status, r.gap, r.allowed) for r in rows] == [
        (False, "0", "1", "429", "", ""),
        (True, "500", "2", "200", "500", ">= 1000 ms after the 429"),
    ]


def test_retry_after_is_judged_across_minted_keys() -> None:
    timeline = [
        exchange(0.0, 429, key="k1", retry_after="2"),
        exchange(0.05, 429, key="k2", retry_after="2"),
        exchange(2.2, 200, key="k3"),
    ]
    message = failure(check_retry_after_honoured, timeline)
    assert rule(message).startswith("operation key=k1 retried 48 ms after an answer")
    assert marked(message) == [("50", "key=k1", "2")]

    timeline[1] = exchange(2.1, 429, key="k2", retry_after="2")
    timeline[2] = exchange(4.2, 200, key="k3")
    check_retry_after_honoured(timeline)


def http_date(seconds_from_now: float) -> str:
    when = dt.datetime.fromtimestamp(WALL + seconds_from_now, tz=dt.timezone.utc)
    return email.utils.format_datetime(when, usegmt=True)


def test_retry_after_as_an_http_date_in_the_past_allows_any_retry() -> None:
    """A wait of 0 (or within the tolerance) cannot be broken, so a retry after it shows
    nothing: insufficient, as with no Retry-After at all."""
    past = http_date(-3600)
    assert retry_after_seconds(past, lambda: WALL) == 0.0
    with pytest.raises(
        InsufficientEvidence, match="no retry followed one asking for more than the tol"
    ):
        check_retry_after_honoured(retry_after_timeline(0.003, header=past))


def test_retry_after_as_an_http_date_in_the_future_is_a_wait() -> None:
    future = http_date(2)
    assert retry_after_seconds(future, lambda: WALL) == pytest.approx(2.0)
    check_retry_after_honoured(retry_after_timeline(2.01, header=future))
    message = failure(check_retry_after_honoured, retry_after_timeline(0.003, header=future))
    assert "asked for 2 s" in rule(message)
    assert marked(message) == [("3", "key=a", "2")]


def test_retry_after_seconds_reads_deltas_and_rejects_garbage() -> None:
    assert retry_after_seconds(" 120 ", lambda: WALL) == 120.0
    assert retry_after_seconds(None, lambda: WALL) is None
    assert retry_after_seconds("soon", lambda: WALL) is None
    assert retry_after_seconds("-5", lambda: WALL) is None


def test_retry_after_on_a_lost_answer_asks_nothing() -> None:
    lost = retry_after_timeline(0.01, delivered=False)
    with pytest.raises(InsufficientEvidence, match="no answer that reached the client asked"):
        check_retry_after_honoured(lost)
    message = failure(check_retry_after_honoured, retry_after_timeline(0.01, delivered=True))
    assert marked(message) == [("10", "key=a", "2")]


def test_retry_after_without_a_retry_after_it_is_insufficient_evidence() -> None:
    """The README's evidence need: a retry after an answer that asked to wait.  Without
    one the verdict used to pass, though nothing showed the client waiting as asked."""
    with pytest.raises(
        InsufficientEvidence, match=r"^insufficient evidence: 1 answer that reached"
    ):
        check_retry_after_honoured([exchange(0.0, 429, key="a", retry_after="30")])
    with pytest.raises(InsufficientEvidence, match=r"no answer that reached the client asked"):
        check_retry_after_honoured([exchange(0.0, 503, key="a"), exchange(0.1, 200, key="a")])
    with pytest.raises(InsufficientEvidence, match=r"no answer that reached the client asked"):
        check_retry_after_honoured([])


# -- stable idempotency keys --------------------------------------------------------------


def test_retries_that_reuse_the_key_pass() -> None:
    check_stable_idempotency_key(attempts(0.0, [0.1, 0.2], "a"))


@pytest.mark.parametrize("third", ["k2", None], ids=["new-key", "no-key"])
def test_a_key_kept_then_changed_within_one_call_fails(third: str | None) -> None:
    """Found by an audit: attempts keyed k, k, then k2 (or no key), passed: a strand that
    kept its key was an operation of its own, so the next attempt of the same request
    started another.  One call (``resilience.drive``) that holds all three shows them one
    operation; separate calls show two; with no calls on record it cannot be told."""
    timeline = [
        exchange(0.0, 503, key="k"),
        exchange(0.1, 503, key="k"),
        exchange(0.3, 200, key=third),
    ]
    one_call = [call(0, 0.0, latency=0.31)]
    message = failure(check_stable_idempotency_key, timeline, calls=one_call)
    changed = "with no key" if third is None else "under 'k2'"
    assert rule(message) == (
        f"the retries of key=k changed its key: after 2 attempts under 'k', the same "
        f"request came again in the same call {changed}; a retry must reuse its operation's "
        "key, or a lost answer turns into a second side effect."
    )
    label = "#2 POST /charges" if third is None else "key=k2"
    assert marked(message) == [("300", label, "1")]
    two_calls = [call(0, 0.0, latency=0.11), call(1, 0.29, latency=0.02)]
    check_stable_idempotency_key(timeline, calls=two_calls)
    message = insufficient(check_stable_idempotency_key, timeline)
    assert rule(message) == (
        "insufficient evidence: key=k failed after 2 attempts under 'k', and the same "
        f"request came again {changed}: its retry with a changed key, or a new call; which "
        "is not on record; call the client through resilience.drive or load, so that each "
        "call's attempts are known."
    )


def test_retries_that_mint_a_new_key_fail_with_the_changed_keys_marked() -> None:
    timeline = attempts(0.0, [0.1, 0.2], "a", mint=True) + attempts(0.05, [0.1], "b")
    message = failure(check_stable_idempotency_key, timeline)
    assert rule(message) == (
        "the 3 attempts of key=a-1 carried 3 different Idempotency-Keys ('a-1', 'a-2', 'a-3'); "
        "a retry must reuse its operation's key, or a lost answer turns into a second side effect."
    )
    rows = evidence(message)
    assert [(r.flagged, r.t, r.attempt, r.allowed) for r in rows] == [
        (False, "0", "1", "key a-1"),
        (True, "100", "2", "key a-1"),
        (True, "300", "3", "key a-1"),
    ]


def test_a_new_key_long_after_a_failure_is_still_a_retry() -> None:
    """No window: a client that mints a key per attempt and honours a 600 s Retry-After
    still retries one operation (the old 60 s window split it, a false pass)."""
    timeline = [exchange(0.0, 503, key="a"), exchange(600.0, 200, key="b")]
    failure(check_stable_idempotency_key, timeline)


def test_the_same_order_after_a_success_is_a_new_operation() -> None:
    timeline = [exchange(0.0, 200, key="a"), exchange(1.0, 200, key="b")]
    no_retry_to_judge(timeline)  # as one operation, its key would have changed


def test_a_stable_key_without_a_retry_or_a_retry_without_a_key_is_no_proof() -> None:
    """The README's evidence need: an operation that retried.  Both passed before: a run
    with no retry, and keyless retries (every key None, so "one key")."""
    no_retry_to_judge([])
    no_retry_to_judge([exchange(0.0, 200, key="a")])
    keyless = [exchange(0.0, 503), exchange(0.1, 503), exchange(0.3, 200)]
    message = failure(check_stable_idempotency_key, keyless)
    assert rule(message).startswith("the 3 attempts of #1 POST /charges carried no idempotency key")
    assert len(marked(message)) == 3


def no_retry_to_judge(timeline: list[Exchange]) -> None:
    """The stable-key verdict finds no retry to judge in ``timeline``."""
    with pytest.raises(InsufficientEvidence, match="no operation retried"):
        check_stable_idempotency_key(timeline)


# -- amplification ------------------------------------------------------------------------


def test_amplification_at_or_under_the_ratio_passes() -> None:
    timeline = attempts(0.0, [0.1, 0.2], "a") + attempts(0.5, [0.1, 0.2], "b")
    check_amplification(timeline, calls=2, max=3)
    check_amplification(timeline, calls=3, max=2)


def test_amplification_over_the_ratio_fails() -> None:
    timeline = attempts(0.0, [0.1, 0.2], "a") + attempts(0.5, [0.1, 0.2], "b")
    message = failure(check_amplification, timeline, calls=2, max=2)
    assert rule(message) == (
        "retry amplification 3.00: the service received 6 requests for 2 client calls "
        "(at most 2 per call allowed; 3.0 attempts per operation on average)."
    )
    assert len(evidence(message)) == 6


def test_amplification_failure_marks_the_retries() -> None:
    """Message bug: the amplification failure prints its evidence with no row marked ``>``."""
    timeline = attempts(0.0, [0.1, 0.2], "a") + attempts(0.5, [0.1, 0.2], "b")
    message = failure(check_amplification, timeline, calls=2, max=2)
    assert [m[2] for m in marked(message)] == ["2", "3", "2", "3"]


# -- duplicate side effects ------------------------------------------------------------------


def test_the_same_business_action_applied_twice_fails() -> None:
    effects = [
        effect(0.0, key="a"),
        effect(0.05, key="z", body={"amount": 5, "currency": "eur"}),
        effect(0.2, key="b", body=b'{"currency": "eur", "amount": 1999}'),
    ]
    message = failure(check_no_duplicate_side_effects, effects)
    assert rule(message) == (
        "side effect applied 2 times: POST /charges with the same body "
        '(POST /charges {"amount":1999,"currency":"eur"}) under keys \'a\', \'b\'; '
        "1 business action(s) were duplicated."
    )
    rows = evidence(message)
    assert [(r.flagged, r.t, r.attempt, r.status, r.allowed) for r in rows] == [
        (False, "0", "1", "201", "key a"),
        (True, "200", "2", "201", "key b"),
    ]


def test_distinct_business_actions_pass() -> None:
    check_no_duplicate_side_effects(
        [effect(0.0, key="a"), effect(0.2, key="b", body={"amount": 5, "currency": "eur"})]
    )
    check_no_duplicate_side_effects([effect(0.0)])
    check_no_duplicate_side_effects([])


def test_custom_key_tells_two_purchases_apart() -> None:
    """Two identical purchases under two keys are two actions when the key says so."""
    effects = [effect(0.0, key="a"), effect(0.2, key="b")]
    failure(check_no_duplicate_side_effects, effects)
    check_no_duplicate_side_effects(effects, key=lambda e: e.idempotency_key)


def test_custom_key_finds_a_duplicate_the_body_hides() -> None:
    """A client that stamps each attempt's body charges order 7 twice."""
    effects = [
        effect(0.0, key="a", path="/orders/7/charge", body={"sent": 1}),
        effect(0.3, key="b", path="/orders/7/charge", body={"sent": 2}),
        effect(0.4, key="c", path="/orders/8/charge", body={"sent": 3}),
    ]
    check_no_duplicate_side_effects(effects)
    message = failure(check_no_duplicate_side_effects, effects, key=lambda e: e.path)
    assert rule(message).startswith("side effect applied 2 times: POST /orders/7/charge")
    assert marked(message) == [("300", "POST /orders/7/charge", "2")]


@pytest.mark.parametrize(
    "check",
    [
        lambda: check_attempts([]),
        lambda: check_amplification([], calls=0, max=2),
        lambda: check_no_retry_storm([], min_herd=1),
        lambda: check_breaker_opened(*breaker(HEALTHY), after_failures=0, cooldown=1.0),
    ],
    ids=["attempts-without-bounds", "amplification-no-calls", "storm-limit-0", "breaker-after-0"],
)
def test_verdicts_reject_bad_arguments_with_a_configuration_error(
    check: Callable[[], None],
) -> None:
    """Bug (all four): usage errors are plain ValueError, an IndexError, or a verdict."""
    with pytest.raises(ConfigurationError):
        check()
