"""Side effects: one per idempotency key, none for faults, and answers lost after them."""

from __future__ import annotations

import json

import pytest
import requests

from pytest_resilience.http.identity import fingerprint
from pytest_resilience.resilience import Resilience
from pytest_resilience.services.http import HttpService

from .support import (
    CHARGE,
    settled,
    via_requests,
)

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
