"""explore (issue 14): clients whose bugs only some fault schedules reveal are found and
shrunk to a schedule that reproduces the bug when pasted as markers; their correct twins
explore clean.  The clients are in ``clients.py`` beside this file."""

from __future__ import annotations

import html
import json
import re

import pytest
from cases import CASES, CLIENTS, SERVICES, project

from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED

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
    result.stdout.re_match_lines(
        [r"  explore:  \d+ schedules run in [\d.]+ s.*, faults in the first \d+ ms"]
    )


# -- how explore runs ---------------------------------------------------------------------


def test_every_example_starts_afresh(pytester: pytest.Pytester, url: str) -> None:
    """Between examples: idempotency store emptied (the same key applies again), effects
    and timeline restarted, a service made in the body made again, faults healed."""
    pytester.makeconftest(SERVICES)
    pytester.makepyfile(
        """
        import pytest
        import requests

        # slow_close delays closes only: every request is answered, in every example.
        @pytest.mark.explore(examples=6, kinds=["slow_close"])
        def test_fresh(payments, resilience):
            late = resilience.http_service("late")
            for _ in range(2):
                requests.post(payments.url + "/charges", headers={"Idempotency-Key": "k"},
                              timeout=2)
            # The key is new to the store in each example: applied once, then replayed.
            assert [e.step for e in payments.exchanges] == ["respond", "replay"]
            assert len(payments.effects) == 1
            assert all(e.at >= resilience.timeline.started_at for e in resilience.timeline.events)
            # The service's faults are this example's, each applied on this timeline.
            applied = {e.fault for e in resilience.timeline.faults()}
            assert {f.id for f in payments.faults} <= applied
            assert requests.get(late.url, timeout=2).status_code == 200
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}", "-v")

    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"  explore:  7 schedules run in "])


def test_the_same_seed_explores_the_same_schedules(pytester: pytest.Pytester, url: str) -> None:
    pytester.makeconftest(SERVICES)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.explore(examples=5)
        def test_quiet(payments):
            pass
        """
    )

    def tried(*args: str) -> list[str]:
        result = pytester.runpytest(
            f"{OPTION_BACKEND}={url}", "-s", "--hypothesis-verbosity=verbose", *args
        )
        result.assert_outcomes(passed=1)
        return [line for line in result.outlines if "schedule=Schedule(" in line]

    first = tried(f"{OPTION_SEED}=11")
    assert len(first) == 5
    assert tried(f"{OPTION_SEED}=11") == first
    assert tried(f"{OPTION_SEED}=12") != first
    # --hypothesis-seed, when given, decides instead, whatever the run's seed.
    forced = tried(f"{OPTION_SEED}=11", "--hypothesis-seed=3")
    assert tried(f"{OPTION_SEED}=12", "--hypothesis-seed=3") == forced != first


def test_the_json_report_carries_the_exploration(pytester: pytest.Pytester, url: str) -> None:
    case = CASES["key_after_reset"]
    project(pytester, case, False, f"@pytest.mark.explore({case.marker})\n")

    result = pytester.runpytest(f"{OPTION_BACKEND}={url}", "--resilience-report=r.json")

    result.assert_outcomes(failed=1)
    (test,) = json.loads((pytester.path / "r.json").read_text())["tests"]
    explored = test["explored"]
    assert explored["examples"] > 1 and explored["span_ms"] > 0
    assert len(explored["failing"]) == 1
    assert explored["failing"][0].startswith("@pytest.mark.")
    svg = (pytester.path / test["timeline_svg"]).read_text()
    assert html.escape(explored["failing"][0], quote=False) in svg


def test_resilience_explore_runs_a_function_under_schedules(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makeconftest(SERVICES)
    pytester.makepyfile(clients=CLIENTS)
    pytester.makepyfile(
        """
        import clients
        from pytest_resilience import Exploration

        KINDS = ["http_faults", "cut_answers"]

        def test_correct(payments, resilience):
            def charge():
                clients.charge(payments.url, keep_key_after_reset=True)
                payments.assert_no_duplicate_side_effects()

            explored = resilience.explore(charge, examples=4, kinds=KINDS)
            assert isinstance(explored, Exploration) and explored.examples == 5
            assert explored.failing is None and resilience.explored == explored

        def test_buggy(payments, resilience):
            def charge():
                clients.charge(payments.url, keep_key_after_reset=False)
                payments.assert_no_duplicate_side_effects()

            resilience.explore(charge, examples=15, kinds=KINDS)
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(['*@pytest.mark.cut_answers("payments", count=1)'])


def test_bad_explore_markers_fail_their_test_in_one_sentence(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makeconftest(SERVICES)
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, strategies as st

        @pytest.mark.explore(examples=0)
        def test_no_examples(payments):
            pass

        @pytest.mark.explore(3)
        def test_positional(payments):
            pass

        @pytest.mark.explore()
        async def test_async(payments):
            pass

        @pytest.mark.explore()
        @given(st.integers())
        def test_given(payments, n):
            pass

        @pytest.mark.explore(services=["nope"])
        def test_unknown_service(payments):
            pass

        @pytest.mark.explore()
        def test_without_fault_fails_first(payments):
            assert False, "broken even without a fault"
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}", "-p", "no:asyncio")

    result.assert_outcomes(errors=4, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "*test_no_examples: @pytest.mark.explore: examples must be a whole number >= 1, got 0.",
            "*test_positional: @pytest.mark.explore: it takes keyword arguments only, e.g. "
            "@pytest.mark.explore(examples=50).",
            "*test_async: @pytest.mark.explore: it runs plain (sync) test functions; call "
            "async code from a sync test.",
            "*test_given: @pytest.mark.explore: the test is already a Hypothesis test (@given)*",
            "*explore names 'nope', a service the test has not made before its body "
            "(services: 'payments'); make the services in a fixture, or name existing ones "
            "in services=.",
            "*explore: the test fails with no fault at all; make it pass as it is first.",
        ]
    )


def test_faults_made_before_the_body_are_put_back_for_every_example(
    pytester: pytest.Pytester, url: str
) -> None:
    """A fixture's counted HTTP fault answers its count in every example, even healed by
    the body; a fixture's Toxiproxy fault healed by the body cannot be put back, and says
    so in one sentence, as does an error around the body: neither is a failing schedule."""
    pytester.makeconftest(
        SERVICES
        + """

@pytest.fixture
def busy(payments):
    payments.fail(503, count=1)
    return payments


@pytest.fixture
def slow(payments):
    payments.latency(60)
    return payments
"""
    )
    pytester.makepyfile(
        """
        import pytest
        import requests

        @pytest.mark.explore(examples=5, kinds=["slow_close"])
        def test_put_back(busy):
            assert requests.get(busy.url, timeout=2).status_code == 503
            busy.faults[0].heal()
            assert requests.get(busy.url, timeout=2).status_code == 201

        @pytest.mark.explore(examples=5, kinds=["slow_close"])
        def test_tcp_healed(slow):
            slow.faults[0].heal()

        @pytest.mark.explore(examples=5, kinds=["slow_close"])
        @pytest.mark.latency("ghost", ms=60)
        def test_marker_without_service(payments):
            pass

        @pytest.mark.explore(examples=5, kinds=["slow_close"])
        def test_pytest_fail_counts(payments):
            pytest.fail("pytest.fail from the body")
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=1, failed=3)
    text = result.stdout.str()
    result.stdout.fnmatch_lines_random(
        [
            "*explore cannot put back <Fault #* latency on 'payments' * (healed)>, applied "
            "before the body and healed during it; apply it in the body, or as a marker.",
            "*@pytest.mark.latency('ghost') names a service this test never created*",
            "*pytest.fail from the body*",
            "*explore: the test fails with no fault at all*",
        ]
    )
    assert text.count("paste it above the test") == 0
