"""explore (issue 14): clients whose bugs only some fault schedules reveal are found and
shrunk to a schedule that reproduces the bug when pasted as markers; their correct twins
explore clean.  The clients are in ``clients.py`` beside this file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED

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
        'examples=15, kinds=["http_faults", "rate_limited", "cut_answers"], span=0.2',
        """
def test_breaker(quotes, resilience):
    breaker = clients.Breaker(quotes.url, reopens_after_a_lost_probe=CORRECT)
    run = resilience.load(breaker.call, duration=0.7, rate=100)
    run.assert_recovers(within=0.15)
""",
        "no recovery",
    ),
    "stale_as_fresh": Case(
        'examples=15, kinds=["http_faults", "cut_answers", "slow_answers", "latency", "partition"]',
        """
def test_prices(prices):
    cache = clients.Prices(prices.url, mark_stale_on_read_timeout=CORRECT)
    cache.price()
    prices.respond(200, json={"price": 200})
    for _ in range(3):
        value, fresh = cache.price()
        assert value == 200 or not fresh, f"a stale price {value} was served as fresh"
""",
        "a stale price",
    ),
}


def project(pytester: pytest.Pytester, case: Case, correct: bool, markers: str) -> None:
    pytester.makeconftest(SERVICES)
    pytester.makepyfile(clients=CLIENTS)
    pytester.makepyfile(
        test_client=f"import clients\nimport pytest\n\nCORRECT = {correct}\n\n{markers}"
        + case.body.strip()
        + "\n"
    )


DECORATOR = re.compile(r"^E?\s+(@pytest\.mark\.\w+\(.*\))$")


@pytest.mark.parametrize("name", sorted(CASES))
def test_explore_finds_the_bug_and_its_shrunk_schedule_reproduces_it(
    pytester: pytest.Pytester, url: str, name: str
) -> None:
    case = CASES[name]
    project(pytester, case, False, f"@pytest.mark.explore({case.marker})\n")

    found = pytester.runpytest(f"{OPTION_BACKEND}={url}", f"{OPTION_SEED}=7")

    found.assert_outcomes(failed=1)
    text = found.stdout.str()
    assert case.rule in text
    assert "explore: this schedule fails, shrunk from" in text
    start = text.index("paste it above the test to reproduce it:")
    schedule = [
        m.group(1) for line in text[start:].splitlines()[1:4] if (m := DECORATOR.match(line))
    ]
    assert len(schedule) == 1, text  # one fault is enough for each of these bugs
    # The summary and the JSON record carry the same schedule.
    assert f"  failing:  {schedule[0]}" in text

    # Pasted above the plain test (no explore), the schedule reproduces the failure ...
    project(pytester, case, False, "\n".join(schedule) + "\n")
    replayed = pytester.runpytest(f"{OPTION_BACKEND}={url}")
    replayed.assert_outcomes(failed=1)
    assert case.rule in replayed.stdout.str()
    # ... and the correct twin passes under it.
    project(pytester, case, True, "\n".join(schedule) + "\n")
    pytester.runpytest(f"{OPTION_BACKEND}={url}").assert_outcomes(passed=1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_correct_twin_explores_without_a_false_failure(
    pytester: pytest.Pytester, url: str, name: str
) -> None:
    case = CASES[name]
    project(pytester, case, True, f"@pytest.mark.explore({case.marker})\n")

    result = pytester.runpytest(f"{OPTION_BACKEND}={url}", f"{OPTION_SEED}=7", "-v")

    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"  explore:  \d+ schedules run.*, faults in the first \d+ ms"])
