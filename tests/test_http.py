"""HTTP services on real clients: client -> tap -> Toxiproxy -> HTTP layer -> stub or upstream.

Every script step is driven through requests, httpx (sync and async) and aiohttp;
the HTTP/1.1 corners (keep-alive, chunked bodies, 100-continue, HEAD, pipelining,
early closes, garbage) through raw sockets where a library would hide them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import aiohttp
import httpx
import pytest
import requests
from processes import wait_for

from pytest_resilience import ConfigurationError
from pytest_resilience.http.identity import fingerprint
from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED
from pytest_resilience.resilience import Resilience
from pytest_resilience.services.http import HttpService
from pytest_resilience.toxiproxy.backends import Backend

T = TypeVar("T")

FAST = 0.25
"""Upper bound for an answer with no fault, with room for a loaded 2-core machine."""
DELAY = 0.3
"""Delays and latencies the timing tests inject, in seconds; above FAST."""
CHARGE = {"amount": 1999, "currency": "eur"}


def settled(service: HttpService, count: int) -> list[Any]:
    """The service's exchanges once ``count`` of them exist and each knows if it was delivered."""

    def ready() -> list[Any] | None:
        exchanges = service.exchanges
        if len(exchanges) >= count and all(e.delivered is not None for e in exchanges):
            return exchanges
        return None

    return wait_for(ready, what=f"{count} exchanges with a known delivery")


# -- four real clients, one shape of answer ---------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def via_requests(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    r = requests.request(method, url, headers=headers, data=body, timeout=2)
    return Reply(r.status_code, _lower(r.headers), r.content)


def via_httpx(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    with httpx.Client(timeout=2) as client:
        r = client.request(method, url, headers=headers, content=body)
    return Reply(r.status_code, _lower(r.headers), r.content)


def via_httpx_async(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    async def go() -> Reply:
        async with httpx.AsyncClient(timeout=2) as client:
            r = await client.request(method, url, headers=headers, content=body)
        return Reply(r.status_code, _lower(r.headers), r.content)

    return asyncio.run(go())


def via_aiohttp(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    async def go() -> Reply:
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:  # noqa: SIM117
            async with session.request(method, url, headers=headers, data=body) as r:
                return Reply(r.status, _lower(r.headers), await r.read())

    return asyncio.run(go())


CLIENTS: dict[str, Callable[..., Reply]] = {
    "requests": via_requests,
    "httpx": via_httpx,
    "httpx_async": via_httpx_async,
    "aiohttp": via_aiohttp,
}
# What each client raises when the connection closes partway through a body.
INCOMPLETE_READ: dict[str, tuple[type[BaseException], ...]] = {
    "requests": (requests.exceptions.ChunkedEncodingError,),
    "httpx": (httpx.RemoteProtocolError,),
    "httpx_async": (httpx.RemoteProtocolError,),
    "aiohttp": (aiohttp.ClientPayloadError,),
}
# ... and when it closes before a whole answer head (any broken answer).
BROKEN_ANSWER: dict[str, tuple[type[BaseException], ...]] = {
    "requests": (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError),
    "httpx": (httpx.RemoteProtocolError, httpx.ReadError),
    "httpx_async": (httpx.RemoteProtocolError, httpx.ReadError),
    "aiohttp": (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError),
}


@pytest.fixture(params=list(CLIENTS))
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(client: str, method: str, url: str, **kwargs: Any) -> Reply:
    return CLIENTS[client](method, url, **kwargs)


@pytest.fixture
def payments(resilience: Resilience) -> HttpService:
    return resilience.http_service("payments")


# -- raw sockets, for what libraries hide -------------------------------------------------


def connect(service: HttpService, timeout: float = 2.0) -> socket.socket:
    return socket.create_connection((service.host, service.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before {marker!r}; got {data!r}")
        data += chunk
    return data


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

    wait_for(lambda: via_requests("GET", payments.url).status == 200, what="a token")

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
    wait_for(lambda: len(payments.exchanges) == 2, what="the held request to arrive")
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


# -- side effects ---------------------------------------------------------------------


def test_unsafe_requests_apply_one_effect_each_and_safe_ones_none(payments: HttpService) -> None:
    for method in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"):
        via_requests(method, payments.url + "/charges/1")

    assert [e.method for e in payments.effects] == ["POST", "PUT", "PATCH", "DELETE"]
    assert all(e.path == "/charges/1" and e.status == 200 for e in payments.effects)


def test_repeated_idempotency_key_replays_the_stored_answer_without_a_new_effect(
    payments: HttpService,
) -> None:
    payments.respond(201, json={"id": "ch_1"})
    first = via_requests("POST", payments.url + "/charges", headers={"Idempotency-Key": "k1"})
    payments.respond(201, json={"id": "ch_2"})
    again = via_requests("POST", payments.url + "/charges", headers={"Idempotency-Key": "k1"})
    other = via_requests("POST", payments.url + "/charges", headers={"Idempotency-Key": "k2"})

    assert first.json() == again.json() == {"id": "ch_1"}
    assert other.json() == {"id": "ch_2"}
    assert [e.step for e in payments.exchanges] == ["respond", "replay", "respond"]
    assert [e.idempotency_key for e in payments.effects] == ["k1", "k2"]


def test_requests_without_a_key_always_apply(payments: HttpService) -> None:
    for _ in range(3):
        via_requests("POST", payments.url + "/charges", body=json.dumps(CHARGE).encode())

    assert len(payments.effects) == 3
    assert {e.fingerprint for e in payments.effects} == {
        fingerprint("POST", "/charges", json.dumps(CHARGE).encode())
    }


def test_rate_limited_and_failed_answers_apply_nothing(payments: HttpService) -> None:
    payments.rate_limit(burst=1, retry_after=1)
    payments.fail(503, count=1)
    key = {"Idempotency-Key": "k1"}

    statuses = [
        via_requests("POST", payments.url + "/charges", headers=key).status for _ in range(3)
    ]

    assert statuses == [429, 503, 200]
    [effect] = payments.effects
    assert effect.idempotency_key == "k1"
    assert effect.exchange == (payments.exchanges[2].connection, payments.exchanges[2].index)


def test_idempotency_header_name_is_configurable(resilience: Resilience) -> None:
    orders = resilience.http_service("orders", idempotency_header="X-Request-Id")
    for _ in range(2):
        via_requests("POST", orders.url + "/orders", headers={"X-Request-Id": "r1"})

    assert [e.idempotency_key for e in orders.exchanges] == ["r1", "r1"]
    assert len(orders.effects) == 1


def test_downstream_partition_loses_a_processed_answer_and_a_retry_replays_it(
    payments: HttpService,
) -> None:
    payments.respond(201, json={"id": "ch_1"})
    key = {"Idempotency-Key": "charge-1"}
    body = json.dumps(CHARGE)

    with payments.partition(direction="downstream"), pytest.raises(requests.Timeout):
        requests.post(payments.url + "/charges", data=body, headers=key, timeout=0.5)

    [lost] = settled(payments, 1)
    assert (lost.status, lost.step, lost.delivered) == (201, "respond", False)
    assert len(payments.effects) == 1

    retry = requests.post(payments.url + "/charges", data=body, headers=key, timeout=2)

    assert (retry.status_code, retry.json()) == (201, {"id": "ch_1"})
    first, second = settled(payments, 2)
    assert (second.step, second.delivered) == ("replay", True)
    assert second.connection != first.connection
    assert len(payments.effects) == 1
    assert payments.exchanges.lost() == [first]


def test_a_request_lost_upstream_does_not_mark_its_identical_retry_as_lost(
    payments: HttpService,
) -> None:
    """The retry has the same head as the attempt that never arrived; its answer did arrive."""
    key = {"Idempotency-Key": "charge-1"}
    body = json.dumps(CHARGE)
    with payments.partition(direction="upstream"), pytest.raises(requests.Timeout):
        requests.post(payments.url + "/charges", data=body, headers=key, timeout=0.3)

    retry = requests.post(payments.url + "/charges", data=body, headers=key, timeout=2)

    assert retry.status_code == 200
    [exchange] = settled(payments, 1)
    assert exchange.delivered is True
    assert payments.exchanges.lost() == []


# -- the record ---------------------------------------------------------------------------


def test_exchange_records_what_the_service_saw_and_answered(payments: HttpService) -> None:
    body = json.dumps(CHARGE).encode()
    before = time.monotonic()
    via_requests(
        "POST",
        payments.url + "/charges?expand=customer",
        headers={"Idempotency-Key": "k1", "X-Trace": "t-1"},
        body=body,
    )
    after = time.monotonic()

    [e] = settled(payments, 1)
    assert e.service == "payments"
    assert (e.method, e.path, e.index) == ("POST", "/charges?expand=customer", 0)
    assert e.ended_at is not None and before <= e.started_at <= e.ended_at <= after
    assert e.header("x-trace") == "t-1" and e.idempotency_key == "k1"
    assert e.fingerprint == fingerprint("POST", "/charges", body)
    assert (e.status, e.scripted, e.step, e.retry_after, e.delivered) == (
        200,
        False,
        "respond",
        None,
        True,
    )


def test_json_bodies_have_the_same_fingerprint_however_serialised(payments: HttpService) -> None:
    via_requests("POST", payments.url + "/c", body=b'{"a": 1, "b": [1, 2]}')
    via_requests("POST", payments.url + "/c", body=b'{"b":[1,2],"a":1}')
    via_requests("POST", payments.url + "/c", body=b'{"b":[2,1],"a":1}')

    prints = [e.fingerprint for e in payments.exchanges]
    assert prints[0] == prints[1] != prints[2]


def test_exchanges_can_be_queried_by_key_path_status_time_and_loss(payments: HttpService) -> None:
    payments.route("POST", "/charges").fail(503, count=1)
    key = {"Idempotency-Key": "a"}
    start = time.monotonic()
    via_requests("POST", payments.url + "/charges", headers=key)
    via_requests("POST", payments.url + "/charges", headers=key)
    middle = time.monotonic()
    via_requests("GET", payments.url + "/charges/1?expand=customer")
    via_requests("POST", payments.url + "/refunds", headers={"Idempotency-Key": "b"})
    end = time.monotonic()

    exchanges = payments.exchanges
    assert [e.status for e in exchanges.with_key("a")] == [503, 200]
    assert [e.path for e in exchanges.with_key(None)] == ["/charges/1?expand=customer"]
    assert len(exchanges.with_path("/charges")) == 2
    assert len(exchanges.with_path("/charges", method="GET")) == 0
    assert [e.method for e in exchanges.with_path("/charges/1")] == ["GET"]
    assert [e.idempotency_key for e in exchanges.with_status(503)] == ["a"]
    assert len(exchanges.with_status(200, 503)) == 4
    assert exchanges.between(start, middle) == exchanges[:2]
    assert exchanges.between(middle, end) == exchanges[2:]
    assert exchanges.keys() == ["a", "a", None, "b"]
    assert settled(payments, 4) and payments.exchanges.lost() == []


# -- HTTP/1.1 on the wire --------------------------------------------------------------


def test_keep_alive_requests_share_one_connection(payments: HttpService) -> None:
    with requests.Session() as session:
        statuses = [session.get(payments.url + f"/n/{i}", timeout=2).status_code for i in range(3)]

    assert statuses == [200, 200, 200]
    exchanges = settled(payments, 3)
    assert len({e.connection for e in exchanges}) == 1
    assert [e.index for e in exchanges] == [0, 1, 2]
    assert all(e.delivered for e in exchanges)
    assert len(payments.connections) == 1


def test_keep_alive_with_httpx_and_aiohttp(payments: HttpService) -> None:
    async def go() -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(2):
                (await client.get(payments.url)).raise_for_status()
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                async with session.get(payments.url) as r:
                    r.raise_for_status()

    asyncio.run(go())

    connections = [e.connection for e in payments.exchanges]
    assert connections[0] == connections[1] != connections[2] == connections[3]


def test_chunked_request_body_arrives_whole(payments: HttpService) -> None:
    pieces = [b'{"amount": ', b"1999, ", b'"currency": "eur"}']

    r = requests.post(payments.url + "/charges", data=iter(pieces), timeout=2)

    assert r.status_code == 200
    [e] = payments.exchanges
    assert e.header("transfer-encoding") == "chunked"
    assert e.fingerprint == fingerprint("POST", "/charges", b"".join(pieces))


def test_chunked_request_body_from_httpx_async(payments: HttpService) -> None:
    async def pieces() -> Any:
        for piece in (b'{"amount": 1999, ', b'"currency": "eur"}'):
            yield piece

    async def go() -> int:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.post(payments.url + "/charges", content=pieces())).status_code

    assert asyncio.run(go()) == 200
    assert payments.exchanges[0].fingerprint == fingerprint(
        "POST", "/charges", json.dumps(CHARGE).encode()
    )


def test_expect_100_continue_gets_a_100_before_the_body(payments: HttpService) -> None:
    payments.respond(201, body="made")
    with connect(payments) as sock:
        sock.sendall(
            b"POST /charges HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = read_until(sock, b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 "), interim
        sock.sendall(b"body")
        answer = read_until(sock, b"made")

    assert answer.startswith(b"HTTP/1.1 201 "), answer
    [e] = payments.exchanges
    assert e.fingerprint == fingerprint("POST", "/charges", b"body")


def test_expect_100_continue_with_http_client(payments: HttpService) -> None:
    import http.client

    conn = http.client.HTTPConnection(payments.host, payments.port, timeout=2)
    try:
        conn.request("PUT", "/doc", body=b"data", headers={"Expect": "100-continue"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"")
    finally:
        conn.close()
    assert payments.exchanges[0].fingerprint == fingerprint("PUT", "/doc", b"data")


def test_head_answers_headers_without_a_body_and_keeps_the_connection(
    payments: HttpService,
) -> None:
    payments.respond(json={"id": "ch_1"})

    with requests.Session() as session:
        head = session.head(payments.url + "/charges/ch_1", timeout=2)
        get = session.get(payments.url + "/charges/ch_1", timeout=2)

    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(b'{"id":"ch_1"}'))
    assert get.json() == {"id": "ch_1"}
    first, second = settled(payments, 2)
    assert first.connection == second.connection
    assert first.delivered and second.delivered


def test_pipelined_requests_on_one_socket_are_answered_in_order(payments: HttpService) -> None:
    payments.route("GET", "/first").respond(body="one")
    payments.route("GET", "/second").respond(body="two")
    payments.route("GET", "/second").delay(0.1)  # a slow second must still come second

    with connect(payments) as sock:
        sock.sendall(
            b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        data = read_until_closed(sock)

    assert data.count(b"HTTP/1.1 200 ") == 2, data
    assert data.endswith(b"two") and data.index(b"one") < data.index(b"HTTP/1.1 200", 1)
    first, second = settled(payments, 2)
    assert (first.path, first.index, second.path, second.index) == ("/first", 0, "/second", 1)
    assert first.connection == second.connection
    assert first.delivered and second.delivered


def test_a_client_that_closes_early_does_not_break_the_service(payments: HttpService) -> None:
    payments.route("GET", "/slow").delay(0.2)
    with connect(payments) as sock:  # closes before the delayed answer is written
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: payments.exchanges, what="the request to arrive")
    with connect(payments) as sock:  # half a request head, then gone
        sock.sendall(b"GET /half HTTP/1.1\r\nHo")
    with connect(payments) as sock:  # half a body, then gone
        sock.sendall(b"POST /charges HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")

    assert via_requests("GET", payments.url + "/next").status == 200
    wait_for(lambda: payments.exchanges[0].delivered is False, what="the early close")
    payments.check()
    assert [e.path for e in payments.exchanges] == ["/slow", "/next"]
    assert payments.effects == []


def test_garbage_gets_a_400_and_the_next_client_is_served(payments: HttpService) -> None:
    with connect(payments) as sock:
        sock.sendall(b"\x00\x01\x02 this is not HTTP \xff\r\n\r\n")
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert via_requests("GET", payments.url).status == 200
    payments.check()
    assert [e.path for e in payments.exchanges] == ["/"]


def test_a_bad_header_gets_a_400(payments: HttpService) -> None:
    with connect(payments) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n")
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert via_httpx("GET", payments.url).status == 200


def test_an_oversized_request_head_gets_a_431_and_the_next_client_is_served(
    payments: HttpService,
) -> None:
    with connect(payments) as sock:  # a head that never ends
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000)
        answer = read_until_closed(sock)

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert via_requests("GET", payments.url).status == 200
    payments.check()


# -- TCP faults on an HTTP service --------------------------------------------------------


def test_latency_delays_http_answers(payments: HttpService, client: str) -> None:
    with payments.latency(int(DELAY * 1000)):
        started = time.monotonic()
        assert call(client, "GET", payments.url).status == 200
        assert time.monotonic() - started >= DELAY
    started = time.monotonic()
    call(client, "GET", payments.url)
    assert time.monotonic() - started < DELAY


def test_refused_http_service_refuses_connections(payments: HttpService) -> None:
    with payments.partition(mode="refuse"), pytest.raises(requests.exceptions.ConnectionError):
        requests.get(payments.url, timeout=1)
    assert via_requests("GET", payments.url).status == 200


def test_reset_peer_on_an_http_service_resets_the_client(payments: HttpService) -> None:
    with payments.reset_peer(), pytest.raises(requests.exceptions.ConnectionError):
        requests.get(payments.url, timeout=1)
    assert via_requests("GET", payments.url).status == 200


def test_upstream_partition_means_the_service_never_sees_the_request(payments: HttpService) -> None:
    with payments.partition(direction="upstream"), pytest.raises(requests.Timeout):
        requests.post(payments.url + "/charges", timeout=0.3)

    assert payments.exchanges == [] and payments.effects == []


# -- forward mode ------------------------------------------------------------------------


UPSTREAM_STATUSES = {"/api/charges": 201, "/api/declined": 402, "/api/broken": 500}
"""What the forward-mode upstream answers per path (200 otherwise)."""


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))  # type: ignore[attr-defined]
        status = UPSTREAM_STATUSES.get(self.path.split("?")[0], 200)
        payload = json.dumps(
            {"method": self.command, "path": self.path, "body": body.decode()}
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "yes")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def forwarded(resilience: Resilience, upstream: ThreadingHTTPServer) -> HttpService:
    port = upstream.server_address[1]
    return resilience.http_service("payments", forward_to=f"http://127.0.0.1:{port}/api")


def test_forward_mode_relays_requests_and_answers(
    forwarded: HttpService, upstream: ThreadingHTTPServer, client: str
) -> None:
    reply = call(
        client,
        "POST",
        forwarded.url + "/charges?expand=customer",
        headers={"Idempotency-Key": "k1"},
        body=b'{"amount": 1}',
    )

    assert reply.status == 201
    assert reply.headers["x-upstream"] == "yes"
    assert reply.json() == {
        "method": "POST",
        "path": "/api/charges?expand=customer",
        "body": '{"amount": 1}',
    }
    assert upstream.seen == [("POST", "/api/charges?expand=customer", b'{"amount": 1}')]  # type: ignore[attr-defined]
    [e] = settled(forwarded, 1)
    assert (e.status, e.step, e.scripted, e.delivered) == (201, "forward", False, True)
    assert forwarded.forward_to == f"http://127.0.0.1:{upstream.server_address[1]}/api"


def test_forward_mode_effects_are_only_2xx_answers_to_unsafe_methods(
    forwarded: HttpService, upstream: ThreadingHTTPServer
) -> None:
    for method, path in [
        ("POST", "/charges"),  # 201
        ("POST", "/declined"),  # 402
        ("POST", "/broken"),  # 500
        ("GET", "/charges/1"),  # 200, safe
        ("HEAD", "/charges/1"),  # 200, safe
        ("PUT", "/charges/1"),  # 200
        ("DELETE", "/charges/1"),  # 200
    ]:
        via_requests(method, forwarded.url + path)

    assert [(e.method, e.path, e.status) for e in forwarded.effects] == [
        ("POST", "/charges", 201),
        ("PUT", "/charges/1", 200),
        ("DELETE", "/charges/1", 200),
    ]
    assert len(upstream.seen) == 7  # type: ignore[attr-defined]


def test_forward_mode_faults_answer_before_the_upstream_is_reached(
    forwarded: HttpService, upstream: ThreadingHTTPServer
) -> None:
    forwarded.rate_limit(burst=1, retry_after=1)
    forwarded.route("POST", "/charges").fail(503, count=1)

    statuses = [via_requests("POST", forwarded.url + "/charges").status for _ in range(3)]

    assert statuses == [429, 503, 201]
    assert len(upstream.seen) == 1  # type: ignore[attr-defined]
    assert len(forwarded.effects) == 1


def test_forward_mode_with_a_down_upstream_answers_502(resilience: Resilience) -> None:
    # Bound but not listening: the port stays ours (no listener of this test can get it)
    # and connecting to it is refused.
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        service = resilience.http_service("gone", forward_to=f"http://127.0.0.1:{port}")

        reply = via_requests("POST", service.url + "/charges")

    assert reply.status == 502
    assert service.effects == []


def test_forward_to_must_be_an_http_url(resilience: Resilience) -> None:
    with pytest.raises(ConfigurationError, match=r"forward_to must be an http://host:port URL"):
        resilience.http_service("payments", forward_to="https://example.com")


# -- bad script arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_", "message"),
    [
        (lambda s: s.fail(503, count=-1), r"count must be a whole number >= 1, got -1"),
        (lambda s: s.fail(503, count=0), r"count must be a whole number >= 1, got 0"),
        (lambda s: s.fail(700), r"status must be an HTTP status from 100 to 599, got 700"),
        (lambda s: s.respond(99), r"status must be an HTTP status from 100 to 599, got 99"),
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
        (lambda s: s.rate_limit(burst=1, status=600), r"status must be an HTTP status"),
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


# -- errors inside the HTTP layer -------------------------------------------------------

INNER_PAYMENTS = """
import pytest


@pytest.fixture
def payments(resilience):
    return resilience.http_service("payments")
"""


@pytest.fixture
def url(toxiproxy: Backend) -> str:
    """The outer session's Toxiproxy API, shared by the inner runs."""
    return toxiproxy.client.url


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


@pytest.mark.http_faults("late", status=504)
def test_service_created_in_the_body(resilience):
    late = resilience.http_service("late")
    assert requests.get(late.url, timeout=2).status_code == 504
"""


def test_http_markers_apply_their_faults_in_their_windows(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(test_markers=MARKER_TESTS)

    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=10)


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

        def test_unmarked(payments):
            pass
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=1, errors=6)
    result.stdout.fnmatch_lines_random(
        [
            "*test_negative_burst: @pytest.mark.rate_limited: burst must be a whole number >= 1, got -1.",
            "*test_status_700: @pytest.mark.http_faults: status must be an HTTP status from 100 to 599, got 700.",
            "*test_count_and_rate: @pytest.mark.http_faults: fail takes count= or rate=, not both.",
            "*test_typo: @pytest.mark.rate_limited: unknown argument 'retry_afer'; it takes burst=None, retry_after=None, status=429, *, rate=None, retry_after_ms=None, json=None, body=None, content_type=None, headers=None.",
            "*test_negative_after: @pytest.mark.http_faults: after (seconds) must be a finite number >= 0, got -1.",
            "*test_no_service: @pytest.mark.rate_limited: the first argument must be the service name*",
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
