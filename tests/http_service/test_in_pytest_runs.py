"""HTTP services in whole pytest runs: errors inside the HTTP layer, HTTP markers, and
the seed replaying fault rates."""

from __future__ import annotations

import json

import pytest

from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED

# -- errors inside the HTTP layer -------------------------------------------------------

INNER_PAYMENTS = """
import pytest


@pytest.fixture
def payments(resilience):
    return resilience.http_service("payments")
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(INNER_PAYMENTS)
    return pytester


def test_an_error_inside_the_http_layer_is_raised_in_the_test(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import requests
        from pytest_resilience.faults.plan import FaultPlan
        from pytest_resilience.http.script import Step


        class Broken(Step):
            async def __call__(self, request, next_):
                raise RuntimeError("boom in the stub")


        def test_broken_step(payments):
            payments._apply_step(Broken(None, None), FaultPlan("broken"))
            assert requests.get(payments.url, timeout=2).status_code == 500
            payments.check()
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*ResilienceError: the HTTP layer of service 'payments' failed: RuntimeError('boom*"]
    )


# -- markers ---------------------------------------------------------------------------


MARKER_TESTS = """
import time

import pytest
import requests

SETUP = {}


@pytest.fixture
def warmed(payments):
    SETUP["status"] = requests.get(payments.url, timeout=2).status_code
    yield payments
    SETUP["teardown"] = requests.get(payments.url, timeout=2).status_code
    assert SETUP == {"status": 200, "teardown": 200}, SETUP


def first_time(payments, status, started, deadline=3.0):
    '''Seconds into the body when a request first got ``status``.'''
    while True:
        at = time.monotonic() - started
        if requests.get(payments.url, timeout=2).status_code == status:
            return at
        assert at < deadline, f"no {status} before the deadline"
        time.sleep(0.01)  # poll interval


@pytest.mark.rate_limited("payments", burst=2, retry_after=3)
def test_burst(warmed):
    answers = [requests.get(warmed.url, timeout=2) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "3"


@pytest.mark.rate_limited("payments", 1, 2, 503)
def test_positional(payments):
    answer = requests.get(payments.url, timeout=2)
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "2")


@pytest.mark.http_faults("payments", status=502, count=2)
def test_count(warmed):
    statuses = [requests.get(warmed.url, timeout=2).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]


@pytest.mark.http_faults("payments", status=500, rate=1.0)
def test_rate(payments):
    assert [requests.get(payments.url, timeout=2).status_code for _ in range(3)] == [500] * 3


@pytest.mark.http_faults("payments", status=503, after=0.3)
def test_after(payments):
    started = time.monotonic()
    assert requests.get(payments.url, timeout=2).status_code == 200
    at = first_time(payments, 503, started)
    assert 0.2 <= at < 1.5, at


@pytest.mark.http_faults("payments", status=503, duration=0.3)
def test_duration(payments):
    started = time.monotonic()
    assert requests.get(payments.url, timeout=2).status_code == 503
    at = first_time(payments, 200, started)
    assert 0.2 <= at < 1.5, at


@pytest.mark.rate_limited("payments", burst=100, retry_after=1, after=0.2, duration=0.3)
def test_window(payments):
    started = time.monotonic()
    assert requests.get(payments.url, timeout=2).status_code == 200
    limited_at = first_time(payments, 429, started)
    healed_at = first_time(payments, 200, started)
    assert 0.1 <= limited_at < 1.0 and 0.4 <= healed_at < 1.5, (limited_at, healed_at)


@pytest.mark.latency("payments", ms=300)
def test_tcp_marker(payments):
    started = time.monotonic()
    assert requests.get(payments.url, timeout=2).status_code == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.partition("payments", direction="downstream", duration=0.3)
def test_lost_answer(payments):
    key = {"Idempotency-Key": "k"}
    with pytest.raises(requests.RequestException):
        requests.post(payments.url + "/charges", headers=key, timeout=1)
    deadline = time.monotonic() + 3
    while True:
        try:
            if requests.post(payments.url + "/charges", headers=key, timeout=1).ok:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "the partition never healed"
    assert len(payments.effects) == 1
    assert [e.step for e in payments.exchanges][0] == "respond"
    assert set(e.step for e in payments.exchanges[1:]) == {"replay"}


@pytest.mark.slow_answers("payments", seconds=0.3, count=1)
def test_slow_answer(payments):
    assert requests.get(payments.url, timeout=2).status_code == 200
    first = payments.exchanges[0]
    assert first.ended_at - first.started_at >= 0.3
    assert requests.get(payments.url, timeout=2).status_code == 200
    second = payments.exchanges[1]
    assert second.ended_at - second.started_at < 0.3


@pytest.mark.cut_answers("payments", count=1)
def test_cut_answer(payments):
    with pytest.raises(requests.RequestException):
        requests.get(payments.url, timeout=2)
    assert requests.get(payments.url, timeout=2).status_code == 200
    assert [e.step for e in payments.settled()] == ["cut", "respond"]


@pytest.mark.http_faults("late", status=504)
def test_service_created_in_the_body(resilience):
    late = resilience.http_service("late")
    assert requests.get(late.url, timeout=2).status_code == 504
"""


def test_http_markers_apply_their_faults_in_their_windows(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(test_markers=MARKER_TESTS)

    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=12)


def test_http_markers_are_accepted_under_strict_markers_and_listed(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--markers")

    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.rate_limited(service, burst=None, retry_after=None, status=429, *, "
            "rate=None, retry_after_ms=None, json=None, body=None, content_type=None, "
            "headers=None, after=0, duration=None)*",
            "*@pytest.mark.http_faults(service, status=503, count=None, *, rate=None, "
            "json=None, body=None, content_type=None, headers=None, after=0, duration=None)*",
            "*@pytest.mark.slow_answers(service, seconds, count=None, *, status=None, json=None, "
            "body=None, content_type=None, headers=None, after=0, duration=None)*",
            "*@pytest.mark.cut_answers(service, count=1, *, status=None, json=None, body=None, "
            "content_type=None, headers=None, after=0, duration=None)*",
        ]
    )


def test_bad_http_marker_arguments_fail_the_test_naming_the_argument(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.rate_limited("payments", burst=-1)
        def test_negative_burst(payments):
            pass

        @pytest.mark.http_faults("payments", status=700)
        def test_status_700(payments):
            pass

        @pytest.mark.http_faults("payments", count=2, rate=0.5)
        def test_count_and_rate(payments):
            pass

        @pytest.mark.rate_limited("payments", burst=1, retry_afer=1)
        def test_typo(payments):
            pass

        @pytest.mark.http_faults("payments", after=-1)
        def test_negative_after(payments):
            pass

        @pytest.mark.rate_limited(burst=1)
        def test_no_service(payments):
            pass

        @pytest.mark.slow_answers("payments", seconds=float("nan"))
        def test_nan_delay(payments):
            pass

        @pytest.mark.cut_answers("payments", count=0)
        def test_cut_none(payments):
            pass

        def test_unmarked(payments):
            pass
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=1, errors=8)
    result.stdout.fnmatch_lines_random(
        [
            "*test_negative_burst: @pytest.mark.rate_limited: burst must be a whole number >= 1, got -1.",
            "*test_status_700: @pytest.mark.http_faults: status must be a whole number >= 100 and <= 599, got 700.",
            "*test_count_and_rate: @pytest.mark.http_faults: fail takes count= or rate=, not both.",
            "*test_typo: @pytest.mark.rate_limited: unknown argument 'retry_afer'; it takes burst=None, retry_after=None, status=429, *, rate=None, retry_after_ms=None, json=None, body=None, content_type=None, headers=None.",
            "*test_negative_after: @pytest.mark.http_faults: after (seconds) must be a finite number >= 0 and <= 1e+06, got -1.",
            "*test_no_service: @pytest.mark.rate_limited: the first argument must be the service name*",
            "*test_nan_delay: @pytest.mark.slow_answers: delay must be a finite number*nan.",
            "*test_cut_none: @pytest.mark.cut_answers: count must be a whole number >= 1, got 0.",
        ]
    )


def test_http_marker_on_a_tcp_service_fails_clearly(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.http_faults("db", status=503)
        def test_on_tcp(resilience):
            resilience.tcp_service("db", upstream="127.0.0.1:9")
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.http_faults('db') needs an HTTP service, but 'db' is a TCP service; "
            "create it with resilience.http_service().*"
        ]
    )


def test_http_marker_naming_a_missing_service_suggests_an_http_service(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.rate_limited("payment", burst=1)
        def test_typo(payments):
            pass
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*rate_limited('payment') names a service this test never created (services: 'payments')*"]
    )
    result.stdout.fnmatch_lines(["*resilience.http_service('payment')*"])


# -- the seed -------------------------------------------------------------------------------


SHARE_TEST = """
import json
import pathlib

import requests


def test_pattern(payments):
    payments.fail(503, rate=0.5)
    statuses = [requests.get(payments.url, timeout=2).status_code for _ in range(24)]
    pathlib.Path(__file__).with_name("pattern.json").write_text(json.dumps(statuses))
"""


@pytest.mark.parametrize("backend", ["embedded", "shared"])
def test_fail_rate_replays_the_same_failures_with_the_same_seed(
    inner: pytest.Pytester, url: str, backend: str
) -> None:
    """Two separate runs (processes) with one --resilience-seed fail the same requests."""
    inner.makepyfile(test_share=SHARE_TEST)
    choice = "embedded" if backend == "embedded" else url

    def pattern(seed: int) -> list[int]:
        result = inner.runpytest_subprocess(f"{OPTION_BACKEND}={choice}", f"{OPTION_SEED}={seed}")
        result.assert_outcomes(passed=1)
        return list(json.loads((inner.path / "pattern.json").read_text()))

    first = pattern(1234)
    assert set(first) == {200, 503}, first
    assert pattern(1234) == first
    if backend == "embedded":  # once is enough to show the seed matters
        assert pattern(4321) != first
