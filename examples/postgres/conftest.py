from __future__ import annotations

import os
import pwd
import random
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from faker import Faker
from psycopg.conninfo import make_conninfo

from pytest_resilience import Resilience, TcpService

from ..servers import find_binary, free_port, running
from .ledger import SCHEMA, Ledger, Order, RetryPolicy

USER = "ledger"
DBNAME = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def as_server_user() -> dict[str, Any]:
    """Popen arguments that drop root: initdb and postgres refuse to run as root."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster on a free loopback port, with the ledger's schema.

    Trust authentication, fsync off: nothing here outlives the session.
    """
    initdb = find_binary("initdb", "postgresql", extra=["/usr/lib/postgresql/*/bin"])
    # The server of the same version as initdb (Debian links only some binaries onto PATH).
    postgres = os.path.join(os.path.dirname(os.path.realpath(initdb)), "postgres")
    user = as_server_user()
    server = PostgresServer("127.0.0.1", free_port())
    with tempfile.TemporaryDirectory(prefix="pytest-resilience-pg-") as home:
        if user:
            os.chown(home, user["user"], user["group"])
        data = os.path.join(home, "data")
        init = [initdb, "-D", data, "-U", USER, "--auth=trust", "--no-sync"]
        init += ["-E", "UTF8", "--locale=C"]
        done = subprocess.run(init, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **user)
        if done.returncode:
            raise RuntimeError(f"initdb exited with {done.returncode}:\n{done.stdout.decode()}")
        command = [postgres, "-D", data, "-k", home, "-p", str(server.port)]
        command += ["-c", f"listen_addresses={server.host}"]
        command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        # Log only what stops the server, not each connection the faults break.
        command += ["-c", "log_min_messages=fatal"]

        def ready() -> bool:
            try:
                psycopg.connect(dsn(server), connect_timeout=2).close()
            except psycopg.OperationalError:  # not listening yet, or still starting up
                return False
            return True

        with running(command, ready, "postgres", **user) as process:
            with psycopg.connect(dsn(server), autocommit=True) as conn:
                conn.execute(SCHEMA)
            yield server
            # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
            process.send_signal(signal.SIGINT)
            process.wait(timeout=10)


def dsn(server: PostgresServer | TcpService) -> str:
    return make_conninfo(host=server.host, port=server.port, user=USER, dbname=DBNAME)


class LedgerDatabase:
    """The real database, reached directly rather than through Toxiproxy: what was committed."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def orders(self) -> list[Order]:
        rows = self._conn.execute("SELECT id, customer, amount_cents FROM orders ORDER BY id")
        return [Order(*row) for row in rows]

    def totals(self) -> dict[str, tuple[int, int]]:
        """Each customer's number of orders and their total, in cents."""
        rows = self._conn.execute("SELECT customer, orders, cents FROM customer_totals")
        return {customer: (count, cents) for customer, count, cents in rows}


def expected_totals(orders: list[Order]) -> dict[str, tuple[int, int]]:
    totals: dict[str, tuple[int, int]] = {}
    for order in orders:
        count, cents = totals.get(order.customer, (0, 0))
        totals[order.customer] = (count + 1, cents + order.amount_cents)
    return totals


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[LedgerDatabase]:
    """An empty ledger."""
    with psycopg.connect(dsn(postgres_server), autocommit=True) as conn:
        conn.execute("TRUNCATE orders, customer_totals")
        yield LedgerDatabase(conn)


@pytest.fixture
def postgres(
    resilience: Resilience, postgres_server: PostgresServer, database: LedgerDatabase
) -> TcpService:
    """The database behind Toxiproxy."""
    return resilience.tcp_service("postgres", upstream=postgres_server.address)


@pytest.fixture
def ledger(postgres: TcpService, resilience: Resilience) -> Iterator[Ledger]:
    """The ledger through Toxiproxy, connected; its jitter draws from the run's seed."""
    policy = RetryPolicy(attempts=6, base=0.04, cap=0.5, deadline=0.3)
    with Ledger(dsn(postgres), policy=policy, rng=random.Random(resilience.seed)) as ledger:
        ledger.connect()  # before the test body, where marker faults begin
        yield ledger


@pytest.fixture
def orders(fake: Faker) -> list[Order]:
    """A dozen orders from three customers."""
    customers = [fake.unique.email() for _ in range(3)]
    return [
        Order(uuid.UUID(fake.uuid4()), fake.random_element(customers), fake.pyint(100, 99_999))
        for _ in range(12)
    ]
