"""An orders ledger on PostgreSQL that records every order exactly once, however the
network behaves.

``record`` may be retried after any connection failure because the order's id is minted
by the client, before the first attempt:

- the order and its customer's running total are written by one statement, so they
  commit together or not at all, and ``ON CONFLICT (id) DO NOTHING`` makes a repeat a
  no-op: retrying a write whose commit succeeded but whose answer was lost changes nothing;
- on ``OperationalError`` (connection reset, closed, no answer) the connection is
  dropped, a new one opened and the write tried again, a bounded number of times, with
  exponential backoff and jitter;
- every attempt has a deadline. psycopg has no client-side read timeout, and neither TCP
  keepalives nor ``tcp_user_timeout`` notice a server that stopped answering behind a
  proxy (pgbouncer, a load balancer, Toxiproxy): the proxy acknowledges every packet.
  ``statement_timeout`` is the server's: it cannot see an answer lost on the way back.
  So a timer shuts the socket down when an attempt outlives its deadline, and psycopg
  fails as it does for a lost connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id uuid PRIMARY KEY,
    customer text NOT NULL,
    amount_cents integer NOT NULL CHECK (amount_cents > 0),
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS customer_totals (
    customer text PRIMARY KEY,
    orders integer NOT NULL,
    cents bigint NOT NULL
);
"""

RECORD = """
WITH new_order AS (
    INSERT INTO orders (id, customer, amount_cents)
    VALUES (%(id)s, %(customer)s, %(amount_cents)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING customer, amount_cents
)
INSERT INTO customer_totals AS total (customer, orders, cents)
SELECT customer, 1, amount_cents FROM new_order
ON CONFLICT (customer) DO UPDATE
SET orders = total.orders + 1, cents = total.cents + excluded.cents
"""


@dataclass(frozen=True)
class Order:
    id: uuid.UUID
    """Minted by the client before the first attempt: what makes a retry safe."""
    customer: str
    amount_cents: int

    def params(self) -> dict[str, Any]:
        return {"id": self.id, "customer": self.customer, "amount_cents": self.amount_cents}


class LedgerUnavailable(Exception):
    """No attempt was confirmed. The order may still have been recorded (by an attempt whose
    answer was lost): recording it again later, with the same id, is safe either way."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base: float = 0.1
    """Seconds: the first backoff is drawn from [base/2, base], then [base, 2 x base], ..."""
    cap: float = 2.0
    """Seconds: no backoff is longer."""
    deadline: float = 5.0
    """Seconds an attempt may wait for its answer."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Equal jitter: half the capped exponential for retry 1, 2, ..., plus a random share
        of the other half, so the waits add up to a known least and never line up."""
        step = min(self.cap, self.base * 2.0 ** (retry - 1))
        return step / 2 + rng.uniform(0, step / 2)


class _Deadline:
    """Shuts the connection's socket down if the block outlives ``seconds``."""

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        # A duplicate of the descriptor: libpq closes its own when the connection breaks,
        # and the number may belong to another socket by the time the timer fires.
        self._socket = socket.socket(fileno=os.dup(conn.pgconn.socket))
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self.seconds = seconds
        self.expired = False

    def _expire(self) -> None:
        self.expired = True
        with contextlib.suppress(OSError):  # already closed by the peer
            self._socket.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        self._timer.join()
        self._socket.close()


class Ledger:
    """Orders and per-customer totals, written through ``conninfo``."""

    def __init__(
        self,
        conninfo: str,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._conninfo = conninfo
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        self._conn: psycopg.Connection[Any] | None = None
        self.lost_answers = 0
        """Retries that found their order already recorded: an earlier attempt had
        committed, and its answer was lost on the way back."""

    def connect(self) -> None:
        """Open the connection now rather than on the first ``record``."""
        self._connection()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, order: Order) -> None:
        """Record ``order`` and add it to its customer's total, once, however often tried.

        Raises :class:`LedgerUnavailable` when no attempt was confirmed.
        """
        policy = self.policy
        for attempt in range(1, policy.attempts + 1):
            try:
                inserted = self._write(order)
            except (psycopg.OperationalError, TimeoutError) as exc:
                self.close()
                problem = exc
                log.warning("order %s, attempt %d: %s", order.id, attempt, exc)
            else:
                if not inserted and attempt > 1:
                    self.lost_answers += 1
                    log.info("order %s was recorded by an attempt whose answer was lost", order.id)
                return
            if attempt < policy.attempts:
                time.sleep(policy.backoff(attempt, self._rng))  # the backoff itself
        raise LedgerUnavailable(
            f"order {order.id} unconfirmed after {policy.attempts} attempts: {problem}"
        ) from problem

    def _write(self, order: Order) -> bool:
        """One attempt; True if it inserted the order, False if it was already there."""
        conn = self._connection()
        with _Deadline(conn, self.policy.deadline) as deadline:
            try:
                return conn.execute(RECORD, order.params()).rowcount == 1
            except psycopg.OperationalError as exc:
                if deadline.expired:
                    raise TimeoutError(f"no answer within {deadline.seconds:g} s") from exc
                raise

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._conninfo,
                autocommit=True,
                # psycopg's floor: a connect_timeout under 2 s counts as 2 s.
                connect_timeout=max(2, math.ceil(self.policy.deadline)),
                # The server gives up too, rather than finish a write nobody waits for.
                options=f"-c statement_timeout={math.ceil(self.policy.deadline * 1000)}",
            )
        return self._conn


class NaiveLedger:
    """The ledger as first written: one connection, opened once, no retry.

    Kept as the counter-example the tests catch: a connection broken during an order fails
    it, whether or not it committed, and every order after it, since nothing reconnects.
    """

    def __init__(self, conninfo: str) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True)

    def close(self) -> None:
        self._conn.close()

    def record(self, order: Order) -> None:
        self._conn.execute(RECORD, order.params())
