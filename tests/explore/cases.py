"""The seeded bugs explore must find, as inner pytest projects: the services, and for each
bug the explore marker's arguments, the test body and what its failure says.

Shared by ``test_explore.py`` and ``benchmarks/explore.py``; the clients are in
``clients.py`` beside this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

CLIENTS = Path(__file__).with_name("clients.py").read_text()
SERVICES = """
import pytest


@pytest.fixture
def payments(resilience):
    service = resilience.http_service("payments")
    service.respond(201, json={"id": "ch_1"})
    return service


@pytest.fixture
def quotes(resilience):
    service = resilience.http_service("quotes")
    service.respond(200, json={"quote": 1})
    return service


@pytest.fixture
def prices(resilience):
    service = resilience.http_service("prices")
    service.respond(200, json={"price": 100})
    return service
"""


class Case(NamedTuple):
    marker: str
    """The explore marker's arguments."""
    body: str
    """The test body; ``CORRECT`` is the client's switch (False: the buggy twin)."""
    rule: str
    """What the buggy twin's failure says."""


CASES = {
    "key_after_reset": Case(
        'examples=15, kinds=["http_faults", "rate_limited", "cut_answers", "partition"]',
        """
def test_charge(payments):
    clients.charge(payments.url, keep_key_after_reset=CORRECT)
    payments.assert_no_duplicate_side_effects()
""",
        "side effect applied 2 times",
    ),
    "breaker_probe_lost": Case(
        # HTTP faults, which end once they answered their count: the load runs on past
        # them to show recovery (a TCP fault may outlast it, leaving nothing to judge).
        'examples=25, kinds=["http_faults", "rate_limited", "cut_answers"], span=0.2',
        """
def test_breaker(quotes, resilience):
    breaker = clients.Breaker(quotes.url, reopens_after_a_lost_probe=CORRECT)
    run = resilience.load(breaker.call, duration=0.6, rate=100)
    run.assert_recovers(within=0.15)
""",
        "no recovery",
    ),
    "stale_as_fresh": Case(
        # Answers held past the read timeout reveal it, if the hold starts within the few
        # milliseconds the body lasts; with partitions and latencies too, 30 schedules
        # missed it in about 1 run in 3 (see benchmarks/explore.py).
        'examples=30, kinds=["slow_answers"]',
        """
def test_prices(prices):
    cache = clients.Prices(prices.url, mark_stale_on_read_timeout=CORRECT)
    for price in (100, 200, 300, 400, 500):
        prices.respond(200, json={"price": price})
        value, fresh = cache.price()
        assert value == price or not fresh, f"a stale price {value} was served as fresh"
""",
        "a stale price",
    ),
}


def files(case: Case, correct: bool, markers: str) -> dict[str, str]:
    """The project of ``case``: its services, the clients and its test (the buggy or the
    correct twin) under ``markers``, as file name -> text."""
    test = f"import clients\nimport pytest\n\nCORRECT = {correct}\n\n{markers}"
    return {
        "conftest.py": SERVICES,
        "clients.py": CLIENTS,
        "test_client.py": test + case.body.strip() + "\n",
    }


def project(pytester: pytest.Pytester, case: Case, correct: bool, markers: str) -> None:
    """Write :func:`files` into ``pytester``'s project."""
    for name, text in files(case, correct, markers).items():
        (pytester.path / name).write_text(text)
