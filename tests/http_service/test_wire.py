"""HTTP/1.1 on the wire (keep-alive, chunked bodies, 100-continue, HEAD, pipelining,
early closes, garbage), and TCP faults on an HTTP service."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import httpx
import pytest
import requests
from processes import wait_for

from pytest_resilience.http.identity import fingerprint
from pytest_resilience.services.http import HttpService

from .support import (
    CHARGE,
    DELAY,
    WAIT,
    call,
    connect,
    read_until,
    read_until_closed,
    settled,
    via_httpx,
    via_requests,
)

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
        wait_for(lambda: payments.exchanges, WAIT, what="the request to arrive")
    with connect(payments) as sock:  # half a request head, then gone
        sock.sendall(b"GET /half HTTP/1.1\r\nHo")
    with connect(payments) as sock:  # half a body, then gone
        sock.sendall(b"POST /charges HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")

    assert via_requests("GET", payments.url + "/next").status == 200
    wait_for(lambda: payments.exchanges[0].delivered is False, WAIT, what="the early close")
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
    """The answer reaches the client ``DELAY`` after the layer wrote it while the latency
    is on, and sooner once it heals.  Timed from the layer's last byte (``ended_at``), not
    from the call: a loaded machine stretches a client's set-up and connect past DELAY
    (0.30-0.39 s for httpx in 4 of 40 stress runs), never the latency it no longer has."""
    with payments.latency(int(DELAY * 1000)):
        started = time.monotonic()
        assert call(client, "GET", payments.url).status == 200
        received = time.monotonic()
        assert received - started >= DELAY
    (faulted,) = settled(payments, 1)
    assert faulted.ended_at is not None and received - faulted.ended_at >= DELAY - 0.01
    assert call(client, "GET", payments.url).status == 200
    received = time.monotonic()
    healed = settled(payments, 2)[1]
    assert healed.ended_at is not None and received - healed.ended_at < DELAY


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
