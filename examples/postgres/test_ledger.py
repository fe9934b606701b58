"""The orders ledger while connections to PostgreSQL are reset or stop answering.

Each test writes orders through Toxiproxy while a fault is on, then counts what the real
database committed, read around Toxiproxy: every order once, no order lost, and no
customer's total counting an order twice.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator

import psycopg
import pytest

from pytest_resilience import Resilience, ResilienceAssertionError, TcpService

from .conftest import LedgerDatabase, dsn, expected_totals
from .ledger import Ledger, LedgerUnavailable, NaiveLedger, Order

SLACK = 0.35
"""Seconds of scheduling noise a loaded two-core CI machine may add to one step."""

by_id = operator.attrgetter("id")


@pytest.mark.parametrize(
    "answer_lost",
    [
        pytest.param(
            False,
            marks=pytest.mark.reset_peer("postgres", stream="upstream", duration=0.25),
            id="request-reset",
        ),
        pytest.param(
            True,
            marks=pytest.mark.reset_peer("postgres", stream="downstream", duration=0.25),
            id="answer-reset",
        ),
    ],
)
def test_orders_written_through_reset_connections_are_each_recorded_once(
    resilience: Resilience,
    postgres: TcpService,
    ledger: Ledger,
    database: LedgerDatabase,
    orders: list[Order],
    answer_lost: bool,
) -> None:
    """A reset fires on the first data in its direction: upstream, the first write's request
    never reaches the server; downstream, the write commits and the reset eats its answer."""
    pending = iter(orders)
    run = resilience.load(lambda: ledger.record(next(pending)), duration=0.6, rate=20)

    run.assert_availability(min=1.0)
    assert database.orders() == sorted(orders, key=by_id)
    assert database.totals() == expected_totals(orders)
    assert ledger.lost_answers == (1 if answer_lost else 0)
    assert any(c.outcome == "reset" for c in postgres.connections), "no connection was reset"
    postgres.assert_connections(min=3)  # the write caught by the resets was retried


@pytest.mark.parametrize(
    "answer_lost",
    [
        pytest.param(
            False,
            marks=pytest.mark.timeout("postgres", stream="upstream", duration=1.0),
            id="request-lost",
        ),
        pytest.param(
            True,
            marks=pytest.mark.timeout("postgres", stream="downstream", duration=1.0),
            id="answer-lost",
        ),
    ],
)
def test_a_write_left_without_an_answer_is_given_up_at_its_deadline_and_retried_once(
    resilience: Resilience,
    postgres: TcpService,
    ledger: Ledger,
    database: LedgerDatabase,
    orders: list[Order],
    answer_lost: bool,
) -> None:
    """Upstream, the write never reaches the server; downstream, it commits and its answer
    is dropped. Either way the ledger stops waiting at its deadline and the retry leaves
    exactly one order."""
    order = orders[0]

    ledger.record(order)

    assert database.orders() == [order]
    assert database.totals() == expected_totals([order])
    assert ledger.lost_answers == (1 if answer_lost else 0)
    (applied,) = [e.at for e in resilience.timeline.faults("postgres") if e.action == "applied"]
    first = postgres.connections[0]
    assert first.closed_by == "client", "the ledger should have hung up on the silent server"
    assert first.closed_at is not None
    assert first.closed_at - applied < ledger.policy.deadline + SLACK  # not at the heal, 1 s in


def test_a_lasting_outage_ends_after_a_bounded_number_of_attempts_and_can_be_retried(
    postgres: TcpService, ledger: Ledger, database: LedgerDatabase, orders: list[Order]
) -> None:
    order = orders[0]
    attempts = ledger.policy.attempts

    with (
        postgres.reset_peer(),
        pytest.raises(LedgerUnavailable, match=f"after {attempts} attempts"),
    ):
        ledger.record(order)

    postgres.assert_connections(max=attempts)
    # The first attempt committed and the reset ate its answer: "unavailable" is not "not
    # recorded", which is why the caller may only try again with the same id.
    assert database.orders() == [order]
    ledger.record(order)
    assert database.orders() == [order]
    assert database.totals() == expected_totals([order])


@pytest.fixture
def naive(postgres: TcpService) -> Iterator[NaiveLedger]:
    ledger = NaiveLedger(dsn(postgres))
    yield ledger
    ledger.close()


@pytest.mark.reset_peer("postgres", duration=0.25)
def test_a_ledger_without_retries_loses_orders_to_a_reset_and_never_recovers(
    resilience: Resilience, naive: NaiveLedger, database: LedgerDatabase, orders: list[Order]
) -> None:
    pending = iter(orders)
    # The run outlasts the 0.25 s window by far, so that its heal falls inside the run (the
    # evidence assert_recovers needs) even when a busy machine is late to heal it.
    run = resilience.load(lambda: naive.record(next(pending)), duration=1.0, rate=12)

    with pytest.raises(ResilienceAssertionError, match="availability 0% is below 100%"):
        run.assert_availability(min=1.0)
    with pytest.raises(ResilienceAssertionError, match="no recovery"):
        run.assert_recovers(within=0.1)
    assert all(isinstance(error, psycopg.OperationalError) for error in run.errors)
    # Every caller was told its order failed. The first write had committed (the reset ate
    # its answer); the connection is gone, and no write after it reached the server.
    assert database.orders() == [orders[0]]
