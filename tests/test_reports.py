"""What a run reports, as a user's CI shows it: the terminal's resilience section, the JSON
report, JUnit properties, the same under pytest-xdist, and replay by seed."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from importlib.resources import files

import jsonschema
import pytest

from pytest_resilience.options import OPTION_BACKEND, OPTION_REPORT, OPTION_SEED
from pytest_resilience.report.record import ExchangeRecord, TestRecord
from pytest_resilience.report.schema import text as schema_text

CHECKOUT = """
import requests
import pytest


@pytest.fixture
def payments(resilience):
    service = resilience.http_service("payments")
    service.respond(201, json={"id": "ch_1"})
    return service


def charge(url, key):
    return requests.post(url + "/charges", json={"amount": 5}, headers={"Idempotency-Key": key})


def test_retries_with_a_new_key(payments):
    payments.fail(503, count=1)
    assert charge(payments.url, "k1").status_code == 503
    assert charge(payments.url, "k2").status_code == 201
    payments.assert_attempts(max=2)
    payments.assert_stable_idempotency_key()


def test_keeps_its_key(payments):
    payments.fail(503, count=1)
    charge(payments.url, "k1")
    charge(payments.url, "k1")
    payments.assert_stable_idempotency_key()


def test_without_the_plugin():
    assert True
"""


@pytest.fixture
def checkout(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_checkout=CHECKOUT)
    return pytester


def resilience_section(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^=+ resilience =+$", line))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    return lines[start + 1 : end]


def test_terminal_summary_tells_the_failing_test_story_first(
    checkout: pytest.Pytester, url: str
) -> None:
    result = checkout.runpytest(f"{OPTION_BACKEND}={url}", f"{OPTION_SEED}=4242")

    result.assert_outcomes(passed=2, failed=1)
    section = resilience_section(result.stdout.str())
    assert section[0] == "FAILED test_checkout.py::test_retries_with_a_new_key"
    assert re.fullmatch(
        r"  faults:   fail on payments status=503 count=1 \(\d+-\d+ ms\)|"
        r"  faults:   fail on payments status=503 count=1 \(from \d+ ms\)",
        section[1],
    ), section[1]
    assert section[2] == (
        "  payments: 2 requests, 1 operation (at most 2 attempts each, 1 retried), 1 effect, "
        "2 connections"
    )
    # Broken verdicts before those that held.
    assert section[3].startswith(
        "  verdicts: assert_stable_idempotency_key on payments BROKE: the 2 attempts of key=k1 "
        "carried 2 different Idempotency-Keys"
    )
    assert section[4] == "            assert_attempts on payments held"
    assert section[5] == "  replay:   --resilience-seed=4242"
    assert section[6] == "1 more test(s) injected faults: 1 passed (-v lists them)."


def test_a_verdict_without_enough_evidence_is_reported_undecided_not_broken(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makepyfile(
        test_once="""
        import requests

        def test_one_call_cannot_show_jitter(resilience):
            payments = resilience.http_service("payments")
            payments.fail(503, count=2)
            for _ in range(3):
                if requests.post(payments.url + "/charges", json={"a": 1}).status_code < 500:
                    break
            payments.assert_backoff(min_factor=1.0)
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *.InsufficientEvidence: insufficient evidence: *"])
    section = resilience_section(result.stdout.str())
    assert section[3].startswith(
        "  verdicts: assert_backoff on payments UNDECIDED: insufficient evidence: jitter needs "
        "waits at the same retry in at least 2 operations"
    ), section


def test_verbose_summary_lists_the_passing_tests_too(checkout: pytest.Pytester, url: str) -> None:
    result = checkout.runpytest("-v", f"{OPTION_BACKEND}={url}")

    section = resilience_section(result.stdout.str())
    assert "PASSED test_checkout.py::test_keeps_its_key" in section
    assert "            assert_stable_idempotency_key on payments held" not in section
    assert "  verdicts: assert_stable_idempotency_key on payments held" in section
    assert not any("test_without_the_plugin" in line for line in section)


def test_the_shipped_schema_is_the_one_the_record_types_give() -> None:
    """schema.json is written from the types (python -m pytest_resilience.report.schema)."""
    shipped = (files("pytest_resilience") / "report" / "schema.json").read_text()
    assert shipped == schema_text(), "rewrite it: python -m pytest_resilience.report.schema"
    jsonschema.Draft202012Validator.check_schema(json.loads(shipped))


def test_a_record_survives_its_json_form(checkout: pytest.Pytester, url: str) -> None:
    """What travels through xdist and into the report rebuilds the same typed record."""
    path = checkout.path / "resilience.json"
    checkout.runpytest(f"{OPTION_BACKEND}={url}", f"{OPTION_REPORT}={path}")
    for test in json.loads(path.read_text())["tests"]:
        data = {k: v for k, v in test.items() if k in TestRecord.__dataclass_fields__}
        record = TestRecord.from_json(data)
        assert record.services and isinstance(record.services[0].exchanges[0], ExchangeRecord)
        assert record.to_json() == data


def test_json_report_holds_every_resilience_test(checkout: pytest.Pytester, url: str) -> None:
    path = checkout.path / "reports" / "resilience.json"
    result = checkout.runpytest(
        f"{OPTION_BACKEND}={url}", f"{OPTION_REPORT}={path}", f"{OPTION_SEED}=7"
    )

    result.stdout.fnmatch_lines([f"resilience report: {path}"])
    document = json.loads(path.read_text())
    # The schema shipped in the package, read as a user would, holds for the document.
    schema = json.loads((files("pytest_resilience") / "report" / "schema.json").read_text())
    jsonschema.validate(document, schema, cls=jsonschema.Draft202012Validator)
    assert (document["schema"], document["seed"], document["replay"]) == (
        1,
        7,
        "--resilience-seed=7",
    )
    assert document["backend"].endswith(")") and "toxiproxy" in document["backend"]
    tests = {t["nodeid"]: t for t in document["tests"]}
    assert set(tests) == {
        "test_checkout.py::test_retries_with_a_new_key",
        "test_checkout.py::test_keeps_its_key",
    }
    failing = tests["test_checkout.py::test_retries_with_a_new_key"]
    assert failing["outcome"] == "failed"
    [fault] = failing["faults"]
    assert (fault["service"], fault["kind"], fault["detail"]) == (
        "payments",
        "fail",
        "status=503 count=1",
    )
    [service] = failing["services"]
    assert (service["type"], service["requests"], service["operations"]) == ("http", 2, 1)
    assert [(e["status"], e["key"], e["operation"]) for e in service["exchanges"]] == [
        (503, "k1", "key=k1"),
        (201, "k2", "key=k1"),
    ]
    assert [(v["name"], v["passed"]) for v in failing["verdicts"]] == [
        ("assert_attempts", True),
        ("assert_stable_idempotency_key", False),
    ]
    assert tests["test_checkout.py::test_keeps_its_key"]["outcome"] == "passed"
    # A picture of the failing test only, named in the report and in the terminal.
    picture = failing["timeline_svg"]
    folder = path.parent / "resilience-timelines"
    assert re.fullmatch(
        re.escape(str(folder / "test_checkout.py_test_retries_with_a_new_key-"))
        + r"[0-9a-f]{8}\.svg",
        picture,
    ), picture
    svg = ET.parse(picture).getroot()
    assert svg.tag.endswith("svg")
    assert "--resilience-seed=7" in "".join(svg.itertext())
    assert tests["test_checkout.py::test_keeps_its_key"]["timeline_svg"] is None
    result.stdout.fnmatch_lines(["FAILED test_checkout.py::test_retries_with_a_new_key", "*"])
    result.stdout.fnmatch_lines([f"  timeline: {picture}"])


def test_junit_xml_carries_the_key_figures(checkout: pytest.Pytester, url: str) -> None:
    junit = checkout.path / "junit.xml"
    checkout.runpytest(f"{OPTION_BACKEND}={url}", f"--junitxml={junit}", f"{OPTION_SEED}=99")

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    properties = {
        p.get("name"): p.get("value") for p in cases["test_retries_with_a_new_key"].iter("property")
    }
    assert properties["resilience.seed"] == "99"
    assert properties["resilience.faults"] == "1"
    assert properties["resilience.requests"] == "2"
    assert properties["resilience.max_attempts"] == "2"
    assert properties["resilience.verdicts_broken"] == "1"
    assert properties["resilience.broken"].startswith("assert_stable_idempotency_key: the 2")
    assert list(cases["test_without_the_plugin"].iter("property")) == []


def test_summary_and_report_survive_xdist(checkout: pytest.Pytester, url: str) -> None:
    path = checkout.path / "resilience.json"
    result = checkout.runpytest("-n", "2", f"{OPTION_BACKEND}={url}", f"{OPTION_REPORT}={path}")

    result.assert_outcomes(passed=2, failed=1)
    section = resilience_section(result.stdout.str())
    assert section[0] == "FAILED test_checkout.py::test_retries_with_a_new_key"
    assert any(line.startswith("  verdicts: assert_stable_idempotency_key") for line in section)
    document = json.loads(path.read_text())
    assert sorted(t["outcome"] for t in document["tests"]) == ["failed", "passed"]
    assert "toxiproxy" in document["backend"]  # named by a worker's record


REPLAY = """
def test_flaky_upstream(resilience, fake):
    import requests

    payments = resilience.http_service("payments")
    payments.fail(503, rate=0.5)
    statuses = [requests.get(payments.url + "/quote").status_code for _ in range(24)]
    print("STATUSES", "".join("x" if s == 503 else "." for s in statuses))
    print("FAKE", fake.name(), fake.iban())
    assert 503 not in statuses
"""


def test_a_failure_prints_its_seed_and_the_seed_replays_faults_and_data(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makepyfile(test_replay=REPLAY)

    def run(*args: str) -> tuple[str, str, str]:
        result = pytester.runpytest("-s", f"{OPTION_BACKEND}={url}", *args)
        result.assert_outcomes(failed=1)
        out = result.stdout.str()
        seed = re.search(r"replay:   --resilience-seed=(\d+)", out)
        assert seed is not None, out
        statuses = re.search(r"STATUSES (\S+)", out)
        fake = re.search(r"FAKE (.+)", out)
        assert statuses and fake
        return seed.group(1), statuses.group(1), fake.group(1)

    seed, statuses, fake = run()
    assert "x" in statuses and "." in statuses
    assert run(f"{OPTION_SEED}={seed}") == (seed, statuses, fake)
    other = run(f"{OPTION_SEED}={int(seed) + 1}")
    assert other[1:] != (statuses, fake)


def test_a_plugin_adds_a_section_to_the_summary_and_the_report(
    checkout: pytest.Pytester, url: str
) -> None:
    checkout.makeconftest(
        """
        def pytest_resilience_report_sections(item, record):
            requests = sum(s.requests for s in record.http_services)
            return [("budget", f"{requests} requests of a budget of 10")]
        """
    )
    path = checkout.path / "resilience.json"
    result = checkout.runpytest(f"{OPTION_BACKEND}={url}", f"{OPTION_REPORT}={path}")

    section = resilience_section(result.stdout.str())
    at = section.index("  budget:")
    assert section[at + 1] == "    2 requests of a budget of 10"
    tests = {t["nodeid"]: t for t in json.loads(path.read_text())["tests"]}
    assert tests["test_checkout.py::test_keeps_its_key"]["sections"] == [
        ["budget", "2 requests of a budget of 10"]
    ]


OUTCOMES = """
import pytest


@pytest.fixture
def payments(resilience):
    return resilience.http_service("payments")


@pytest.mark.xfail(reason="known: retries without a key")
def test_expected_to_break(payments):
    payments.fail(503, count=1)
    payments.assert_attempts(min=1)


def test_skipped_midway(payments):
    pytest.skip("not today")


@pytest.mark.latency("payments", ms=-5)
def test_bad_marker(payments):
    pass


def test_sections_hook_breaks(payments):
    pass
"""


def test_report_outcomes_tell_xfail_skip_and_errors_apart(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makepyfile(test_outcomes=OUTCOMES)
    pytester.makeconftest(
        """
        def pytest_resilience_report_sections(item, record):
            if item.name == "test_sections_hook_breaks":
                return ("not", "a list")
            return []
        """
    )
    path = pytester.path / "resilience.json"
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}", f"{OPTION_REPORT}={path}")

    result.assert_outcomes(passed=1, skipped=1, xfailed=1, errors=1)
    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(path.read_text())["tests"]}
    assert {name: t["outcome"] for name, t in tests.items()} == {
        "test_expected_to_break": "xfailed",
        "test_skipped_midway": "skipped",
        "test_bad_marker": "error",
        "test_sections_hook_breaks": "passed",
    }
    assert tests["test_bad_marker"]["services"] == []  # it never got to make them
    [[title, text]] = tests["test_sections_hook_breaks"]["sections"]
    assert title == "report sections"
    assert text.startswith("a pytest_resilience_report_sections implementation failed (")
    section = resilience_section(result.stdout.str())
    assert section[0] == "ERROR test_outcomes.py::test_bad_marker"
    assert section[-2] == "1 more test(s) injected faults: 1 xfailed (-v lists them)."
