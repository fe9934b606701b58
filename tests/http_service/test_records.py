"""The record of each exchange, and its queries."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
from processes import wait_for

from pytest_resilience import Effect, ExchangeEvent, Resilience
from pytest_resilience.http.identity import fingerprint
from pytest_resilience.services.http import HttpService

from .support import (
    CHARGE,
    WAIT,
    settled,
    via_requests,
)

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


# -- on the timeline ------------------------------------------------------------------------


def test_each_exchange_and_effect_is_on_the_timeline_step_by_step(
    resilience: Resilience, payments: HttpService
) -> None:
    """One timeline holds the exchanges: received, answered, ended, then delivered or lost
    once the tap shows it; the records a verdict reads are joined from those steps."""
    payments.respond(201, json={"id": "ch_1", "padding": "x" * 200})
    via_requests("POST", payments.url + "/charges", headers={"Idempotency-Key": "k1"})
    payments.cut(count=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(payments.url + "/charges/ch_1", timeout=2)
    with payments.partition(direction="downstream"), pytest.raises(requests.Timeout):
        requests.get(payments.url + "/charges/ch_1", timeout=0.3)

    evidence = resilience.evidence("payments")
    steps = [
        (e.step, e.exchange.method, e.exchange.delivered)
        if isinstance(e, ExchangeEvent)
        else ("effect", e.method, None)
        for e in evidence.events
        if isinstance(e, (ExchangeEvent, Effect))
    ]
    # The cut is known lost as it ends; the other two are learnt by reading the records
    # (the first at the latest here, the partitioned one once the tap saw its end).
    assert steps[:9] == [
        ("received", "POST", None),
        ("effect", "POST", None),
        ("answered", "POST", None),
        ("ended", "POST", None),
        ("received", "GET", None),
        ("answered", "GET", False),
        ("ended", "GET", False),
        ("received", "GET", None),
        ("answered", "GET", None),
    ]
    assert sorted(steps[9:]) == [
        ("delivered", "POST", True),
        ("ended", "GET", None),
        ("lost", "GET", False),
    ]
    assert [e.delivered for e in evidence.exchanges["payments"]] == [True, False, False]
    assert evidence.exchanges["payments"] == evidence.events.exchanges("payments")
    assert list(evidence.effects["payments"]) == evidence.events.effects("payments")
    # Read again, nothing is learnt twice.
    again = resilience.evidence("payments").events
    assert len([e for e in again if isinstance(e, ExchangeEvent)]) == 11


def test_an_answer_still_being_written_to_a_slow_reader_has_its_status_on_the_record(
    payments: HttpService,
) -> None:
    """The record says what was answered as soon as the answer is handed to the connection
    (step ``answered``), not only once a client slower than the answer has taken it all."""
    payments.respond(200, body=b"x" * (32 << 20))
    with socket.create_connection((payments.host, payments.port), timeout=WAIT) as client:
        client.sendall(b"GET /export HTTP/1.1\r\nHost: payments\r\n\r\n")  # never read

        [exchange] = wait_for(
            lambda: [e for e in payments.exchanges if e.status is not None],
            WAIT,
            what="the answer's status on the record",
        )
        assert (exchange.status, exchange.step, exchange.ended_at) == (200, "respond", None)
