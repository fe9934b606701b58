"""The extension hooks (``pytest_resilience.hookspecs``), implemented from a ``conftest.py``.

Inner runs share the outer session's Toxiproxy (``--toxiproxy=<url>``) unless the
hook under test chooses the backend itself.
"""

from __future__ import annotations

import json
import re
import socket
import textwrap
from pathlib import Path

import pytest

from pytest_resilience.options import OPTION_BACKEND

README = Path(__file__).resolve().parents[1] / "README.md"

# The README's example: another plugin adds a fault kind (under 30 lines).
PACKET_LOSS = '''\
import pytest

from pytest_resilience import ConfigurationError, FaultKind, FaultPlan, ToxicSpec


def packet_loss(rate, retransmit_ms=200, *, stream="downstream"):
    """A share `rate` of connections go silent; the others wait for retransmits."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ConfigurationError(f"packet_loss: rate must be from 0 to 1, got {rate!r}.")
    if isinstance(retransmit_ms, bool) or not isinstance(retransmit_ms, int) or retransmit_ms < 0:
        raise ConfigurationError(
            f"packet_loss: retransmit_ms must be a whole number >= 0, got {retransmit_ms!r}."
        )
    lost = ToxicSpec("timeout", stream, (("timeout", 0),), toxicity=rate)
    slow = ToxicSpec("latency", stream, (("latency", retransmit_ms), ("jitter", 0)))
    return FaultPlan("packet_loss", (lost, slow), detail=f"rate={rate} stream={stream}")


@pytest.hookimpl
def pytest_resilience_fault_kinds():
    help = "lose a share rate of connections, delay the others by retransmit_ms"
    return [FaultKind("packet_loss", packet_loss, help)]
'''

# The echo upstream and round trip (tests/echo.py), and a service in front of it, as a
# plugin inner runs load with ``-p echo``.
ECHO_PLUGIN = (
    Path(__file__).with_name("echo.py").read_text()
    + """

@pytest.fixture
def svc(resilience, upstream):
    return resilience.tcp_service("svc", upstream)
"""
)


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project whose conftest adds the ``packet_loss`` kind; ``-p echo`` gives an
    upstream."""
    pytester.makeconftest(PACKET_LOSS)
    pytester.makepyfile(echo=ECHO_PLUGIN)
    pytester.syspathinsert()
    return pytester


def refuses_connections(address: str) -> bool:
    host, _, port = address.removeprefix("http://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


# -- pytest_resilience_fault_kinds ------------------------------------------------------------


def test_the_fault_kind_example_is_under_30_lines_and_is_the_readme_s() -> None:
    assert len(PACKET_LOSS.splitlines()) < 30
    assert PACKET_LOSS in README.read_text(), "README's Extending example drifted from this one"


def test_added_kind_works_as_a_method_and_through_resilience_fault_on_real_sockets(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import pytest

        def test_method_delays_by_retransmit(resilience, svc, round_trip):
            with svc.fault("packet_loss", rate=0, retransmit_ms=300):
                assert round_trip(svc) >= 0.28
            assert round_trip(svc) < 0.28
            faults = [(e.kind, e.action, e.detail) for e in resilience.timeline.faults()]
            assert faults == [
                ("packet_loss", "applied", "rate=0 stream=downstream"),
                ("packet_loss", "healed", "rate=0 stream=downstream"),
            ]

        def test_resilience_fault_loses_every_connection_at_rate_1(resilience, svc, round_trip):
            fault = resilience.fault("svc", "packet_loss", rate=1.0, retransmit_ms=0)
            with pytest.raises(TimeoutError):
                round_trip(svc, timeout=0.5)
            fault.heal()
            round_trip(svc)

        def test_bad_argument_says_what_is_wrong(svc):
            with pytest.raises(ValueError, match=r"packet_loss: rate must be from 0 to 1, got 2"):
                svc.fault("packet_loss", rate=2)
            with pytest.raises(ValueError, match=r"packet_loss: unknown argument 'wobble'; "
                               r"it takes \\(rate, retransmit_ms=200, stream='downstream'\\)"):
                svc.fault("packet_loss", rate=0.5, wobble=1)
            with pytest.raises(ValueError, match=r"unknown fault kind 'packet_los'; use one of "
                               r".*limit_data, packet_loss, partition"):
                svc.fault("packet_los", rate=0.5)
        """
    )
    result = inner.runpytest("-p", "echo", f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=3)


def test_added_kind_is_a_marker_listed_by_markers_and_accepted_by_strict_markers(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.packet_loss("svc", rate=1, retransmit_ms=0)
        def test_marker_applies_during_the_body(svc, round_trip):
            with pytest.raises(TimeoutError):
                round_trip(svc, timeout=0.5)
            assert [e.kind for e in svc.faults] == ["packet_loss"]

        @pytest.mark.packet_loss("svc", rate=0, retransmit_ms=300, after=0, duration=0.5)
        def test_marker_window(svc, round_trip):
            assert round_trip(svc) >= 0.28
        """
    )
    result = inner.runpytest("-p", "echo", "--strict-markers", f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=2)

    listed = inner.runpytest("--markers")
    listed.stdout.fnmatch_lines(
        [
            "@pytest.mark.packet_loss(service, rate, retransmit_ms=200, stream='downstream', "
            "after=0, duration=None): lose a share rate of connections, delay the others by "
            "retransmit_ms, on the named service during the test body.",
        ]
    )


def test_bad_marker_of_an_added_kind_fails_at_collection_like_a_built_in_one(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        test_markers="""
        import pytest

        @pytest.mark.packet_loss("svc", rate=2)
        def test_rate_too_high(resilience):
            pass

        @pytest.mark.packet_loss("svc", rate=0.5, wobble=3)
        def test_unknown_kwarg(resilience):
            pass

        @pytest.mark.packet_loss("svc", rate=0.5, after="soon")
        def test_text_after(resilience):
            pass

        @pytest.mark.packet_loss(rate=0.5)
        def test_no_service(resilience):
            pass
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(errors=4)
    result.stdout.fnmatch_lines(
        [
            "test_markers.py::test_rate_too_high: @pytest.mark.packet_loss: packet_loss: rate "
            "must be from 0 to 1, got 2.",
            "test_markers.py::test_unknown_kwarg: @pytest.mark.packet_loss: packet_loss: unknown "
            "argument 'wobble'; it takes (rate, retransmit_ms=200, stream='downstream').",
            "test_markers.py::test_text_after: @pytest.mark.packet_loss: after (seconds) must be "
            "a finite number >= 0 and <= 1e+06, got 'soon'.",
            "test_markers.py::test_no_service: @pytest.mark.packet_loss: the first argument must "
            'be the service name, e.g. @pytest.mark.packet_loss("redis", ...).',
        ],
        consecutive=False,
    )


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            'FaultKind("latency", lambda ms: None, "mine")',
            "ERROR: pytest_resilience_fault_kinds: fault kind 'latency' is built in; give yours "
            "another name (e.g. 'my_latency').",
        ),
        (
            'FaultKind("skip", lambda: None, "mine")',
            "ERROR: pytest_resilience_fault_kinds: fault kind 'skip' would be a marker, but "
            "@pytest.mark.skip is already registered (by pytest, a plugin or the ini file); "
            "give the kind another name.",
        ),
        (
            '("packet_loss", lambda rate: None, "help")',
            "ERROR: pytest_resilience_fault_kinds returned a list holding ('packet_loss', "
            "<function *<lambda> at *>, 'help') (tuple); each item must be a "
            # fnmatch reads [...] as a character class; [[] is a literal bracket.
            'pytest_resilience.FaultKind, e.g. [[]FaultKind("packet_loss", packet_loss, '
            '"lose a share of connections")].',
        ),
    ],
    ids=["built-in-name", "marker-name", "not-a-fault-kind"],
)
def test_bad_fault_kind_is_a_usage_error_saying_what_to_do(
    pytester: pytest.Pytester, returned: str, message: str
) -> None:
    pytester.makeconftest(
        f"""
        from pytest_resilience import FaultKind

        def pytest_resilience_fault_kinds():
            return [{returned}]
        """
    )
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_fault_kinds_returning_a_dict_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_resilience_fault_kinds():
            return {"packet_loss": print}
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest_resilience_fault_kinds returned {'packet_loss': <built-in function "
            "print>} (dict); return a list of pytest_resilience.FaultKind, e.g. *"
        ]
    )


def test_kind_whose_function_returns_no_plan_or_crashes_fails_saying_so(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makeconftest(
        """
        from pytest_resilience import FaultKind

        def pytest_resilience_fault_kinds():
            return [
                FaultKind("noop", lambda level=1: level, "does nothing"),
                FaultKind("crashy", lambda level: 10 // level, "divides"),
            ]
        """
    )
    pytester.makepyfile(
        test_bad_kinds="""
        import pytest

        @pytest.mark.noop("svc")
        def test_no_plan(resilience):
            pass

        @pytest.mark.crashy("svc", level=0)
        def test_crash(resilience):
            pass
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "test_bad_kinds.py::test_no_plan: @pytest.mark.noop: fault kind 'noop' returned 1 "
            "(int), not a FaultPlan; its plan function must return FaultPlan(kind, "
            "toxics=(ToxicSpec(...),)).",
            "test_bad_kinds.py::test_crash: @pytest.mark.crashy: fault kind 'crashy' failed on "
            "its arguments (ZeroDivisionError('integer division or modulo by zero')); make its "
            "plan function raise ConfigurationError saying what to pass instead.",
        ],
        consecutive=False,
    )


def test_kind_from_a_conftest_in_a_subdirectory_applies_there(
    pytester: pytest.Pytester, url: str
) -> None:
    """The hook is historic: a conftest.py loaded during collection adds its kinds too."""
    sub = pytester.mkdir("sub")
    (sub / "conftest.py").write_text(PACKET_LOSS)
    (sub / "test_sub.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.packet_loss("svc", rate=0.5)
            def test_marked(resilience):
                pass
            """
        )
    )
    result = pytester.runpytest("--strict-markers", f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.packet_loss('svc') names a service this test*"])


# -- pytest_resilience_event ------------------------------------------------------------------


EVENT_RECORDER = """
import json
import threading

from pytest_resilience import ConnectionEvent, Effect, ExchangeEvent, FaultEvent, VerdictEvent

SEEN = []


def pytest_resilience_event(event, item):
    thread = threading.current_thread().name
    if isinstance(event, FaultEvent):
        SEEN.append([item.name, thread, "fault", event.service, event.kind, event.action])
    elif isinstance(event, ConnectionEvent):
        SEEN.append([item.name, thread, "connection", event.service, event.kind])
    elif isinstance(event, ExchangeEvent):
        ex = event.exchange
        SEEN.append([item.name, thread, "exchange", event.service, event.step, ex.method,
                     ex.path, ex.status, ex.delivered])
    elif isinstance(event, Effect):
        SEEN.append([item.name, thread, "effect", event.service, event.method, event.path])
    elif isinstance(event, VerdictEvent):
        SEEN.append([item.name, thread, "verdict", event.service, event.name, event.passed])


def pytest_sessionfinish(session):
    with open("events.json", "w") as out:
        json.dump(SEEN, out)
"""


def test_event_hook_sees_faults_connections_exchanges_and_verdicts_in_order(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makeconftest(EVENT_RECORDER)
    pytester.makepyfile(
        """
        import urllib.request

        from processes import wait_for  # tests/processes.py: the inner run shares sys.path

        def test_events(resilience):
            api = resilience.http_service("api")
            api.respond(200, json={"ok": True})
            with api.latency(20):
                charge = urllib.request.Request(api.url + "/charges", b"{}", method="POST")
                with urllib.request.urlopen(charge, timeout=10) as answer:
                    assert answer.status == 200
                    answer.read()
                wait_for(lambda: api.connections.closed())
            api.assert_connections(max=1)
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=1)

    seen = json.loads((pytester.path / "events.json").read_text())
    assert {thread for _, thread, *_ in seen} == {"pytest-resilience-events"}
    assert [event for _, _, *event in seen] == [
        ["fault", "api", "latency", "applied"],
        ["connection", "api", "opened"],
        ["exchange", "api", "received", "POST", "/charges", None, None],
        ["effect", "api", "POST", "/charges"],
        ["exchange", "api", "answered", "POST", "/charges", 200, None],
        ["exchange", "api", "ended", "POST", "/charges", 200, None],
        ["connection", "api", "closed"],
        ["fault", "api", "latency", "healed"],
        # Learnt when the verdict read the records: the tap saw the answer's last byte out.
        ["exchange", "api", "delivered", "POST", "/charges", 200, True],
        ["verdict", "api", "assert_connections", True],
    ]


def test_event_hook_error_is_raised_in_the_test_and_the_engine_keeps_going(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makeconftest(
        PACKET_LOSS
        + """

from pytest_resilience import ConnectionEvent


def pytest_resilience_event(event, item):
    if isinstance(event, ConnectionEvent) and event.kind == "opened":
        raise ValueError("observer bug")
"""
    )
    inner.makepyfile(
        """
        import time

        def test_first(svc, round_trip):
            round_trip(svc)
            round_trip(svc)  # the tap (on the loop thread that raised) still relays
            deadline = time.monotonic() + 10
            while len(svc.connections.closed()) < 2:
                assert time.monotonic() < deadline
                time.sleep(0.005)

        def test_second(svc, round_trip):
            svc.latency(1)
            round_trip(svc)
        """
    )
    result = inner.runpytest("-p", "echo", f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ValueError: observer bug",
            "*The above exception was the direct cause of the following exception:*",
            "E *pytest_resilience.errors.ResilienceError: a pytest_resilience_event "
            "implementation raised ValueError('observer bug') on ConnectionEvent(*kind='opened'*"
            "); fix it (its traceback is above): events arrive on a plugin thread, so what it "
            "raises fails the test at teardown.",
        ]
    )
    assert "ERROR at teardown of test_first" in result.stdout.str()


def test_event_hook_is_not_called_without_an_implementation_and_costs_no_thread(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import threading

        def test_quiet(svc, round_trip):
            round_trip(svc)
            names = [t.name for t in threading.enumerate()]
            assert "pytest-resilience-events" not in names
        """
    )
    inner.runpytest("-p", "echo", f"{OPTION_BACKEND}={url}").assert_outcomes(passed=1)


# -- pytest_resilience_backend ----------------------------------------------------------------


USES_BACKEND = """
import json

def test_backend(toxiproxy):
    with open("backend.json", "w") as out:
        json.dump({"kind": toxiproxy.kind, "url": toxiproxy.client.url,
                   "detail": toxiproxy.detail}, out)
"""


def test_backend_hook_chooses_the_embedded_engine(pytester: pytest.Pytester, url: str) -> None:
    pytester.makeconftest(
        """
        def pytest_resilience_backend(config):
            return "embedded"
        """
    )
    pytester.makepyfile(USES_BACKEND)
    # The command line names a server; the hook overrides it.
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["resilience: embedded toxiproxy * at http://127.0.0.1:*"])
    chosen = json.loads((pytester.path / "backend.json").read_text())
    assert chosen["kind"] == "embedded"
    assert chosen["url"] != url


def test_backend_hook_chooses_a_url(
    pytester: pytest.Pytester, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEAM_TOXIPROXY", url)
    pytester.makeconftest(
        """
        import os

        def pytest_resilience_backend(config):
            return os.environ["TEAM_TOXIPROXY"]
        """
    )
    pytester.makepyfile(USES_BACKEND)
    result = pytester.runpytest(f"{OPTION_BACKEND}=embedded")
    result.assert_outcomes(passed=1)
    chosen = json.loads((pytester.path / "backend.json").read_text())
    assert (chosen["kind"], chosen["url"]) == ("remote", url)


def test_backend_hook_returning_none_keeps_the_option(pytester: pytest.Pytester, url: str) -> None:
    pytester.makeconftest(
        """
        def pytest_resilience_backend(config):
            return None
        """
    )
    pytester.makepyfile(USES_BACKEND)
    pytester.runpytest(f"{OPTION_BACKEND}={url}").assert_outcomes(passed=1)
    chosen = json.loads((pytester.path / "backend.json").read_text())
    assert (chosen["kind"], chosen["url"]) == ("remote", url)


def test_backend_hook_returns_a_backend_that_the_session_uses_and_closes(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makeconftest(
        """
        import dataclasses

        from pytest_resilience.toxiproxy.backends import start_backend

        def pytest_resilience_backend(config):
            backend = start_backend("embedded", seed=7)
            return dataclasses.replace(backend, detail="the team's engine")
        """
    )
    pytester.makepyfile(USES_BACKEND)
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["resilience: embedded toxiproxy * (the team's engine)"])
    chosen = json.loads((pytester.path / "backend.json").read_text())
    assert chosen["detail"] == "the team's engine"
    assert refuses_connections(chosen["url"]), "the session did not close the hook's backend"


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            "42",
            "*pytest_resilience_backend returned 42 (int); return a Backend, a "
            "choice (auto, embedded, spawn or an http://host:port URL), or None to keep "
            "--toxiproxy.",
        ),
        (
            "'bogus'",
            "*pytest_resilience_backend returned 'bogus', which is not auto, "
            "embedded, spawn or an http://host:port URL; return one of those, a Backend, or "
            "None to keep --toxiproxy.",
        ),
    ],
    ids=["not-a-backend", "not-a-choice"],
)
def test_bad_backend_hook_answer_errors_the_tests_that_need_it(
    pytester: pytest.Pytester, returned: str, message: str
) -> None:
    pytester.makeconftest(f"def pytest_resilience_backend(config):\n    return {returned}\n")
    pytester.makepyfile(
        """
        def test_one(resilience):
            pass

        def test_two(toxiproxy):
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines([message])


def test_report_sections_hook_is_registered(pytester: pytest.Pytester) -> None:
    """A typo in an implementation's argument names is caught, as for any pytest hook."""
    pytester.makeconftest("def pytest_resilience_report_sections(item, recrod):\n    return []\n")
    result = pytester.runpytest()
    assert result.ret != pytest.ExitCode.OK
    assert re.search(r"recrod", result.stdout.str() + result.stderr.str())
