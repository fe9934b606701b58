"""Each script step on every client, and routes."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import threading
import time
from typing import Any

import pytest
import requests
from processes import wait_for

from pytest_resilience.services.http import HttpService

from .support import (
    BROKEN_ANSWER,
    CHARGE,
    DELAY,
    FAST,
    INCOMPLETE_READ,
    WAIT,
    call,
    settled,
    via_requests,
)

# -- each script step, on every client ----------------------------------------------------


def test_respond_sets_the_default_answer_for_every_client(
    payments: HttpService, client: str
) -> None:
    payments.respond(201, json={"id": "ch_1"}, headers={"X-Request-Id": "r-1"})

    reply = call(client, "POST", payments.url + "/charges", body=json.dumps(CHARGE).encode())

    assert reply.status == 201
    assert reply.json() == {"id": "ch_1"}
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"] == "r-1"
    [exchange] = settled(payments, 1)
    assert (exchange.status, exchange.step, exchange.scripted) == (201, "respond", False)
    assert exchange.delivered is True


def test_respond_with_a_text_body(payments: HttpService, client: str) -> None:
    payments.respond(200, body="plain words", headers={"Content-Type": "text/plain"})

    reply = call(client, "GET", payments.url + "/words")

    assert (reply.status, reply.body) == (200, b"plain words")
    assert reply.headers["content-type"] == "text/plain"


def test_default_answer_is_an_empty_200(payments: HttpService, client: str) -> None:
    reply = call(client, "GET", payments.url + "/")

    assert (reply.status, reply.body) == (200, b"")


def test_fail_answers_the_first_n_requests_then_the_default(
    payments: HttpService, client: str
) -> None:
    payments.respond(json={"ok": True})
    payments.fail(503, count=2)

    replies = [call(client, "GET", payments.url + "/quote") for _ in range(3)]

    assert [r.status for r in replies] == [503, 503, 200]
    assert replies[2].json() == {"ok": True}
    assert [e.step for e in payments.exchanges] == ["fail", "fail", "respond"]
    assert [e.scripted for e in payments.exchanges] == [True, True, False]


def test_fail_without_count_fails_every_request_until_healed(
    payments: HttpService, client: str
) -> None:
    with payments.fail(500):
        assert [call(client, "GET", payments.url).status for _ in range(3)] == [500] * 3
    assert call(client, "GET", payments.url).status == 200


def test_rate_limit_burst_sends_retry_after_in_seconds(payments: HttpService, client: str) -> None:
    payments.rate_limit(burst=3, retry_after=2)

    replies = [call(client, "GET", payments.url + "/quote") for _ in range(4)]

    assert [r.status for r in replies] == [429, 429, 429, 200]
    assert [r.headers.get("retry-after") for r in replies] == ["2", "2", "2", None]
    assert [e.retry_after for e in payments.exchanges] == ["2", "2", "2", None]


def test_rate_limit_takes_another_status(payments: HttpService, client: str) -> None:
    payments.rate_limit(burst=1, retry_after=1, status=503)

    reply = call(client, "GET", payments.url)

    assert (reply.status, reply.headers["retry-after"]) == (503, "1")


@pytest.mark.parametrize("offset", [30, -3600], ids=["future", "past"])
def test_rate_limit_with_a_datetime_sends_an_http_date(
    payments: HttpService, client: str, offset: int
) -> None:
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset)
    payments.rate_limit(burst=1, retry_after=when)

    reply = call(client, "GET", payments.url)

    assert reply.status == 429
    header = reply.headers["retry-after"]
    # RFC 9110 10.2.3 / 5.6.7: IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
    assert header.endswith(" GMT"), header
    assert email.utils.parsedate_to_datetime(header) == when.replace(microsecond=0)


def test_rate_limit_token_bucket_limits_a_quick_burst_with_an_honest_retry_after(
    payments: HttpService, client: str
) -> None:
    # One token each 5 s: six calls come within one refill even on a loaded machine (at
    # 2 a second, a busy 2-core box spread them out enough to refill twice).
    payments.rate_limit(rate=0.2, burst=2)

    replies = [call(client, "GET", payments.url) for _ in range(6)]

    statuses = [r.status for r in replies]
    assert statuses[:2] == [200, 200], statuses
    limited = [r for r in replies if r.status == 429]
    assert len(limited) >= 3, statuses
    # The next token is at most 5 s away, sent in whole seconds, rounded up.
    assert all(1 <= int(r.headers["retry-after"]) <= 5 for r in limited)


def test_token_bucket_lets_a_request_through_after_its_retry_after(payments: HttpService) -> None:
    payments.rate_limit(rate=5, burst=1)
    assert via_requests("GET", payments.url).status == 200
    limited = via_requests("GET", payments.url)
    assert limited.status == 429
    refused_at = time.monotonic()

    wait_for(lambda: via_requests("GET", payments.url).status == 200, WAIT, what="a token")

    assert time.monotonic() - refused_at <= int(limited.headers["retry-after"]) + FAST


def test_delay_holds_the_answer_for_its_seconds(payments: HttpService, client: str) -> None:
    payments.delay(DELAY)

    started = time.monotonic()
    reply = call(client, "GET", payments.url)
    elapsed = time.monotonic() - started

    assert reply.status == 200
    assert elapsed >= DELAY
    [exchange] = settled(payments, 1)
    assert exchange.ended_at is not None and exchange.ended_at - exchange.started_at >= DELAY


def test_delay_with_count_holds_only_that_many_answers(payments: HttpService) -> None:
    payments.delay(DELAY, count=1)

    timings = []
    for _ in range(2):
        started = time.monotonic()
        via_requests("GET", payments.url)
        timings.append(time.monotonic() - started)

    assert timings[0] >= DELAY and timings[1] < DELAY, timings


def test_cut_breaks_the_answer_midway_and_it_shows_as_not_delivered(
    payments: HttpService, client: str
) -> None:
    payments.respond(json={"id": "ch_1", "padding": "x" * 200})
    payments.cut()

    with pytest.raises(INCOMPLETE_READ[client]):
        call(client, "GET", payments.url + "/charges/ch_1")
    assert call(client, "GET", payments.url + "/charges/ch_1").json()["id"] == "ch_1"

    first, second = settled(payments, 2)
    assert (first.status, first.step, first.scripted, first.delivered) == (200, "cut", True, False)
    assert second.delivered is True
    assert payments.exchanges.lost() == [first]


def test_a_cut_answer_replayed_under_its_key_arrives_whole(payments: HttpService) -> None:
    """Bug: the cut marked the stored answer itself, so every replay of that key was cut
    too, long after the cut's count was spent."""
    payments.respond(201, json={"id": "ch_1", "padding": "x" * 200})
    payments.cut(count=1)
    key = {"Idempotency-Key": "k1"}

    with pytest.raises(INCOMPLETE_READ["requests"]):
        via_requests("POST", payments.url + "/charges", headers=key, body=b"{}")
    replies = [via_requests("POST", payments.url + "/charges", headers=key, body=b"{}")]
    replies.append(via_requests("POST", payments.url + "/charges", headers=key, body=b"{}"))

    assert [json.loads(r.body)["id"] for r in replies] == ["ch_1", "ch_1"]
    cut, *replays = settled(payments, 3)
    assert (cut.step, cut.delivered) == ("cut", False)
    assert [(e.step, e.delivered) for e in replays] == [("replay", True), ("replay", True)]
    assert len(payments.effects) == 1


def test_cut_of_an_empty_answer_still_breaks_it(payments: HttpService, client: str) -> None:
    """The default answer has no body: "close mid-response" must then cut the head.

    POST, because aiohttp silently retries an idempotent request whose connection
    closed before an answer.
    """
    payments.cut()

    with pytest.raises(BROKEN_ANSWER[client]):
        call(client, "POST", payments.url)
    [exchange] = settled(payments, 1)
    assert exchange.delivered is False


def test_script_steps_compose_in_order(payments: HttpService) -> None:
    payments.respond(json={"ok": True})
    payments.rate_limit(burst=1, retry_after=1)
    payments.fail(502, count=1)
    payments.delay(DELAY, count=1)

    statuses = [via_requests("GET", payments.url).status for _ in range(2)]
    started = time.monotonic()
    last = via_requests("GET", payments.url)

    assert statuses == [429, 502]
    assert last.status == 200 and time.monotonic() - started >= DELAY


def test_a_healed_step_stops_answering(payments: HttpService) -> None:
    fault = payments.fail(503)
    assert via_requests("GET", payments.url).status == 503
    fault.heal()
    assert via_requests("GET", payments.url).status == 200
    assert [f.kind for f in payments.faults] == ["fail"]


def test_reset_script_forgets_steps_and_the_default(payments: HttpService) -> None:
    payments.respond(418)
    payments.fail(503, count=5)
    payments.reset_script()

    reply = via_requests("GET", payments.url)

    assert (reply.status, reply.body) == (200, b"")


def test_adding_a_step_while_a_request_is_held_keeps_the_steps_after_the_delay(
    payments: HttpService,
) -> None:
    """A step added mid-request (a marker window opening) must not make it skip a step."""
    payments.respond(json={"padding": "x" * 200})
    payments.fail(503, count=1)
    payments.delay(DELAY, count=1)
    payments.cut(count=1)
    assert via_requests("GET", payments.url).status == 503  # the fail step is now spent

    outcome: dict[str, Any] = {}

    def held() -> None:
        try:
            outcome["status"] = via_requests("GET", payments.url).status
        except requests.exceptions.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=held)
    thread.start()
    wait_for(lambda: len(payments.exchanges) == 2, WAIT, what="the held request to arrive")
    payments.route("GET", "/elsewhere").fail(500)
    thread.join(timeout=5)

    assert "error" in outcome, f"the cut step was skipped: {outcome}"


# -- routes ------------------------------------------------------------------------------


def test_route_faults_apply_only_to_that_method_and_path(payments: HttpService) -> None:
    payments.route("POST", "/charges").fail(503)

    assert via_requests("POST", payments.url + "/charges").status == 503
    assert via_requests("POST", payments.url + "/charges?expand=customer").status == 503
    assert via_requests("GET", payments.url + "/charges").status == 200
    assert via_requests("POST", payments.url + "/refunds").status == 200


def test_a_route_step_is_not_used_up_by_other_requests(payments: HttpService) -> None:
    payments.route("POST", "/charges").rate_limit(burst=1, retry_after=1)

    others = [via_requests("GET", payments.url + "/charges").status for _ in range(2)]
    charges = [via_requests("POST", payments.url + "/charges").status for _ in range(2)]

    assert others == [200, 200]
    assert charges == [429, 200]


def test_route_method_is_case_insensitive(payments: HttpService) -> None:
    payments.route("post", "/charges").fail(502, count=1)

    assert via_requests("POST", payments.url + "/charges").status == 502


def test_route_respond_overrides_the_default_for_that_route(payments: HttpService) -> None:
    payments.respond(json={"where": "default"})
    payments.route("GET", "/health").respond(204)

    assert via_requests("GET", payments.url + "/health").status == 204
    assert via_requests("GET", payments.url + "/other").json() == {"where": "default"}


def test_route_delay_and_cut_apply_only_to_that_route(payments: HttpService) -> None:
    payments.respond(json={"padding": "x" * 200})
    payments.route("GET", "/slow").delay(DELAY)
    payments.route("GET", "/broken").cut()

    started = time.monotonic()
    assert via_requests("GET", payments.url + "/fast").status == 200
    assert time.monotonic() - started < DELAY
    started = time.monotonic()
    assert via_requests("GET", payments.url + "/slow").status == 200
    assert time.monotonic() - started >= DELAY
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        via_requests("GET", payments.url + "/broken")
