"""Bad script arguments, and the service object itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from pytest_resilience import ConfigurationError
from pytest_resilience.resilience import Resilience
from pytest_resilience.services.http import HttpService
from pytest_resilience.toxiproxy.backends import Backend

# -- bad script arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_", "message"),
    [
        (lambda s: s.fail(503, count=-1), r"count must be a whole number >= 1, got -1"),
        (lambda s: s.fail(503, count=0), r"count must be a whole number >= 1, got 0"),
        (lambda s: s.fail(700), r"status must be a whole number >= 100 and <= 599, got 700"),
        (lambda s: s.respond(99), r"status must be a whole number >= 100 and <= 599, got 99"),
        (
            lambda s: s.fail(rate=1.5),
            r"rate \(the share of requests to fail\) must be a number from 0 to 1, got 1.5",
        ),
        (lambda s: s.fail(count=2, rate=0.5), r"fail takes count= or rate=, not both"),
        (lambda s: s.route("FETCH", "/x"), r"unknown HTTP method 'FETCH'; use one of DELETE"),
        (lambda s: s.route("GET", "charges"), r"a route path must start with '/'"),
        (
            lambda s: s.rate_limit(rate=0),
            r"rate \(requests per second\) must be a finite number > 0, got 0",
        ),
        (lambda s: s.rate_limit(burst=-1), r"burst must be a whole number >= 1, got -1"),
        (lambda s: s.rate_limit(), r"rate_limit needs burst="),
        (
            lambda s: s.rate_limit(burst=1, retry_after=-1),
            r"retry_after must be a whole number >= 0, got -1",
        ),
        (
            lambda s: s.rate_limit(burst=1, status=600),
            r"status must be a whole number >= 100 and <= 599, got 600",
        ),
        (lambda s: s.rate_limit(rate=1, retry_after=1), r"drop retry_after="),
        (lambda s: s.delay(-0.5), r"delay must be a finite number of seconds >= 0, got -0.5"),
        (lambda s: s.cut(count=0), r"count must be a whole number >= 1, got 0"),
        (lambda s: s.respond(json={}, body="x"), r"pass json= or body=, not both"),
        (
            lambda s: s.rate_limit(burst=1, retry_after=dt.datetime(2030, 1, 1)),
            r"retry_after datetime must be timezone-aware",
        ),
        # A final answer cannot be informational, and 204/304 answers carry no body.
        (lambda s: s.respond(101), r"status.*101"),
        (lambda s: s.fail(100), r"status.*100"),
        (lambda s: s.respond(204, body="x"), r"204.*body|body.*204"),
        (lambda s: s.respond(304, json={"a": 1}), r"304.*body|body.*304"),
        (lambda s: s.respond(headers={"Bad Name": "x"}), r"header.*'Bad Name'"),
    ],
    ids=[
        "negative-count",
        "zero-count",
        "status-700",
        "respond-status-99",
        "rate-above-1",
        "count-and-rate",
        "unknown-method",
        "path-without-slash",
        "rate-0",
        "negative-burst",
        "no-burst-or-rate",
        "negative-retry-after",
        "rate-limit-status-600",
        "rate-with-retry-after",
        "negative-delay",
        "cut-zero",
        "json-and-body",
        "naive-datetime",
        "respond-informational-101",
        "fail-informational-100",
        "respond-204-with-body",
        "respond-304-with-body",
        "bad-header-name",
    ],
)
def test_bad_script_arguments_raise_at_once_with_a_clear_message(
    payments: HttpService, call_: Callable[[HttpService], Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        call_(payments)
    assert payments.faults == []


def test_bad_route_script_arguments_raise_too(payments: HttpService) -> None:
    with pytest.raises(ConfigurationError, match=r"count must be a whole number >= 1, got -2"):
        payments.route("POST", "/charges").fail(count=-2)


# -- the service object ----------------------------------------------------------------


def test_http_service_describes_itself_and_its_name_is_unique(
    resilience: Resilience, toxiproxy: Backend
) -> None:
    payments = resilience.http_service("payments")

    assert payments.url == f"http://127.0.0.1:{payments.port}"
    assert repr(payments) == f"<HttpService 'payments' at {payments.url} (stub)>"
    assert payments.forward_to is None
    assert toxiproxy.client.get_proxy(payments.proxy)["enabled"] is True
    with pytest.raises(ConfigurationError, match="a service named 'payments' already exists"):
        resilience.http_service("payments")
