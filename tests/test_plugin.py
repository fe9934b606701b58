"""The plugin as users meet it: inner pytest runs through ``pytester``.

Most inner runs share the outer session's Toxiproxy (``--toxiproxy=<url>``);
the ones about spawning and reaping a server start their own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from net import free_port

from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED
from pytest_resilience.toxiproxy.backends import Backend

FAST = 0.15
"""Upper bound for a round trip without a fault, with room for a loaded 2-core machine."""
LATENCY = 0.3
"""Latency the timing tests inject, in seconds; well above FAST."""
REPO_BIN = Path(__file__).resolve().parents[1] / ".bin"

# The echo upstream and round-trip timer (tests/echo.py), for inner runs' conftest.
ECHO = Path(__file__).with_name("echo.py")


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the echo upstream in its conftest."""
    pytester.makeconftest(ECHO.read_text())
    return pytester


@pytest.fixture
def binary_on_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """toxiproxy-server on PATH and no TOXIPROXY_URL: what auto and spawn modes look for."""
    search = os.pathsep.join([str(REPO_BIN), os.environ.get("PATH", "")])
    found = shutil.which("toxiproxy-server", path=search)
    if not found:
        reason = (
            f"no toxiproxy-server in {REPO_BIN} or on PATH (bash .ci/install-toxiproxy builds it)"
        )
        if os.environ.get("RESILIENCE_REQUIRE_TOXIPROXY"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(found).parent), os.environ["PATH"]]))
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    return found


def process_exists(pid: int) -> bool:
    """True for a live process and for a zombie nobody reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def refuses_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def read_json(path: Path) -> Any:
    assert path.exists(), f"the inner test did not write {path.name}"
    return json.loads(path.read_text())


# -- markers: help and validation -------------------------------------------------------


MARKER_SIGNATURES = [
    "partition(service, direction='both', mode='blackhole', toxicity=1.0, after=0, duration=None)",
    "latency(service, ms, jitter=0, stream='downstream', toxicity=1.0, after=0, duration=None)",
    "reset_peer(service, timeout=0, stream='downstream', toxicity=1.0, after=0, duration=None)",
    "timeout(service, ms=0, stream='downstream', toxicity=1.0, after=0, duration=None)",
    "bandwidth(service, rate, stream='downstream', toxicity=1.0, after=0, duration=None)",
    "slow_close(service, delay, stream='downstream', toxicity=1.0, after=0, duration=None)",
    "slicer(service, average_size, size_variation=0, delay=0, stream='downstream', "
    "toxicity=1.0, after=0, duration=None)",
    "limit_data(service, bytes, stream='downstream', toxicity=1.0, after=0, duration=None)",
    # **attributes comes last, as in any Python signature.
    "chaos(service, type, stream='downstream', toxicity=1.0, after=0, duration=None, **attributes)",
]


@pytest.mark.parametrize("signature", MARKER_SIGNATURES, ids=lambda s: s.split("(")[0])
def test_markers_help_lists_each_fault_marker_with_its_signature(
    pytester: pytest.Pytester, signature: str
) -> None:
    result = pytester.runpytest("--markers")

    assert result.ret == pytest.ExitCode.OK
    name = signature.split("(")[0]
    shown = [line for line in result.outlines if line.startswith(f"@pytest.mark.{name}(")]
    assert len(shown) == 1, result.outlines
    assert shown[0].startswith(f"@pytest.mark.{signature}: ")
    assert shown[0].endswith("on the named service during the test body.")


def test_fault_markers_are_accepted_under_strict_markers(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.latency("svc", ms=10)
        @pytest.mark.bandwidth("svc", rate=1000)
        @pytest.mark.chaos("svc", type="latency", latency=5)
        def test_marked(resilience, upstream):
            resilience.tcp_service("svc", upstream)
        """
    )
    result = inner.runpytest("--strict-markers", f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=1)


def test_timeout_marker_without_a_service_name_is_left_to_pytest_timeout(
    inner: pytest.Pytester, url: str
) -> None:
    """``@pytest.mark.timeout(5)`` is pytest-timeout's marker; the plugin must not reject it."""
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.timeout(5)
        def test_plain(resilience):
            pass

        @pytest.mark.timeout(timeout=5, method="thread")
        def test_keywords():
            pass
        """
    )
    inner.runpytest(f"{OPTION_BACKEND}={url}").assert_outcomes(passed=2)


def test_bad_marker_argument_fails_that_test_naming_node_marker_and_argument(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        test_markers="""
        import pytest

        @pytest.mark.latency("svc", ms=-5)
        def test_negative_latency(resilience):
            pass

        @pytest.mark.latency("svc", ms=100, wobble=3)
        def test_unknown_kwarg(resilience):
            pass

        @pytest.mark.reset_peer("svc", after="soon")
        def test_text_duration():
            pass

        @pytest.mark.latency("svc", ms=10)
        def test_good_marker(resilience, upstream):
            resilience.tcp_service("svc", upstream)

        def test_unmarked():
            pass
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=2, errors=3)
    result.stdout.fnmatch_lines(
        [
            "test_markers.py::test_negative_latency: @pytest.mark.latency: *ms must be a whole number "
            ">= 0, got -5.",
            "test_markers.py::test_unknown_kwarg: @pytest.mark.latency: *'wobble'*",
            "test_markers.py::test_text_duration: @pytest.mark.reset_peer: after (seconds) must be "
            "a finite number >= 0, got 'soon'.",
        ],
        consecutive=False,
    )


def test_marker_naming_a_missing_service_fails_naming_it_and_the_existing_ones(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.latency("cache", ms=100)
        def test_other_service(resilience, upstream):
            resilience.tcp_service("db", upstream)
            resilience.tcp_service("queue", upstream)

        @pytest.mark.partition("cache")
        def test_no_service(resilience):
            pass
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.latency('cache') names a service this test never created "
            "(services: 'db', 'queue'); create it with "
            "resilience.tcp_service('cache', upstream=...)*",
            "@pytest.mark.partition('cache') names a service this test never created "
            "(services: none)*",
        ]
    )


# -- the garbage collector during a resilience test ----------------------------------------


def test_a_resilience_tests_body_runs_with_the_heap_alive_before_it_frozen(
    inner: pytest.Pytester, url: str
) -> None:
    """runtime/heap.py: a collection during the body walks only what the body made, and
    nothing stays frozen once it ends (so nothing is kept that would have been freed)."""
    inner.makepyfile(
        """
        import gc
        import pytest

        class Cycle:
            def __init__(self):
                self.me = self

        @pytest.fixture
        def made_in_setup():
            return Cycle()

        def collected(obj):  # whether a collection now would walk obj (generation 0-2)
            return any(o is obj for generation in (0, 1, 2) for o in gc.get_objects(generation))

        def test_frozen_in_the_body(resilience, made_in_setup):
            assert gc.get_freeze_count() > 1000
            made_now = Cycle()
            assert not collected(made_in_setup)
            assert collected(made_now)

        @pytest.mark.latency("svc", ms=1)
        def test_frozen_under_a_marker(resilience, upstream):
            resilience.tcp_service("svc", upstream)
            assert gc.get_freeze_count() > 1000

        def test_not_frozen_without_resilience():
            assert gc.get_freeze_count() == 0

        def test_thawed_in_teardown(resilience, request):
            request.addfinalizer(lambda: print("TEARDOWN_FROZEN", gc.get_freeze_count()))
        """
    )
    result = inner.runpytest_inprocess(f"{OPTION_BACKEND}={url}", "-s")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*TEARDOWN_FROZEN 0*"])


# -- markers: when faults apply ----------------------------------------------------------


TIMING_TESTS = f"""
import json
import pathlib
import time

import pytest

HERE = pathlib.Path(__file__).parent
LATENCY_MS = {int(LATENCY * 1000)}
FAST = {FAST}


@pytest.fixture
def svc(resilience, upstream):
    return resilience.tcp_service("svc", upstream)


def first_round_trip_where(condition, round_trip, svc, started, deadline=4.0):
    '''Round trips until one meets condition; when it started, from ``started``.'''
    while True:
        at = time.monotonic() - started
        if condition(round_trip(svc)):
            return at
        assert at < deadline, "no round trip met the condition before the deadline"
        time.sleep(0.02)  # poll interval


@pytest.fixture
def measured(request, resilience, upstream, round_trip):
    service = resilience.tcp_service("svc", upstream)
    times = {{"setup": round_trip(service)}}
    yield service, times
    times["teardown"] = round_trip(service)
    (HERE / "body_only.json").write_text(json.dumps(times))


@pytest.mark.latency("svc", ms=LATENCY_MS)
def test_body_only(measured, round_trip):
    service, times = measured
    times["body"] = round_trip(service)


@pytest.mark.latency("svc", ms=LATENCY_MS, after=0.4)
def test_after(svc, round_trip):
    started = time.monotonic()
    first = round_trip(svc)
    slow_from = first_round_trip_where(lambda t: t >= FAST, round_trip, svc, started)
    (HERE / "after.json").write_text(json.dumps({{"first": first, "slow_from": slow_from}}))


@pytest.fixture
def svc_before_the_window(svc):
    # Set up before the body, so before the marker's window opens: the heal, due when the
    # window has been open 0.5 s, comes at least 0.5 s after this.
    return svc, time.monotonic()


@pytest.mark.latency("svc", ms=LATENCY_MS, duration=0.5)
def test_duration(svc_before_the_window, round_trip):
    svc, started = svc_before_the_window
    first = round_trip(svc)
    fast_from = first_round_trip_where(lambda t: t < FAST, round_trip, svc, started)
    (HERE / "duration.json").write_text(json.dumps({{"first": first, "fast_from": fast_from}}))
"""


def test_marker_fault_applies_during_the_body_only_not_setup_or_teardown(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(test_timing=TIMING_TESTS)
    result = inner.runpytest(f"{OPTION_BACKEND}={url}", "-k", "test_body_only")
    result.assert_outcomes(passed=1)

    times = read_json(inner.path / "body_only.json")
    assert times["setup"] < FAST, times
    assert times["body"] >= LATENCY * 0.95, times
    assert times["teardown"] < FAST, times


def test_marker_with_after_applies_the_fault_that_far_into_the_body(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(test_timing=TIMING_TESTS)
    result = inner.runpytest(f"{OPTION_BACKEND}={url}", "-k", "test_after")
    result.assert_outcomes(passed=1)

    times = read_json(inner.path / "after.json")
    assert times["first"] < FAST, times
    # A round trip that started just before 0.4 s may still catch the fault mid-flight.
    assert 0.4 - FAST <= times["slow_from"] < 0.4 + 1.5, times


def test_marker_with_duration_heals_the_fault_after_that_long(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(test_timing=TIMING_TESTS)
    result = inner.runpytest(f"{OPTION_BACKEND}={url}", "-k", "test_duration")
    result.assert_outcomes(passed=1)

    times = read_json(inner.path / "duration.json")
    assert times["first"] >= LATENCY * 0.95, times
    # Healing releases held data at once, so a round trip begun shortly before 0.5 s is fast
    # (times from before the window opened: the heal is never early, often late).
    assert 0.5 - FAST <= times["fast_from"] < 0.5 + 1.5, times


def test_marker_applies_to_a_service_created_in_the_body(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(
        f"""
        import pytest

        @pytest.mark.latency("svc", ms={int(LATENCY * 1000)})
        def test_created_late(resilience, toxiproxy, upstream, round_trip):
            svc = resilience.tcp_service("svc", upstream)
            assert [t["type"] for t in toxiproxy.client.toxics(svc.proxy)] == ["latency"]
            assert round_trip(svc) >= {LATENCY * 0.95}
        """
    )
    result = inner.runpytest(f"{OPTION_BACKEND}={url}")
    result.assert_outcomes(passed=1)


# -- cleanup -------------------------------------------------------------------------------


FAULTY = """
import pathlib

import pytest

NAMES = pathlib.Path(__file__).with_name("proxies.txt")


def break_things(resilience, toxiproxy, upstream):
    svc = resilience.tcp_service("svc", upstream)
    other = resilience.tcp_service("other", upstream)
    NAMES.write_text(svc.proxy + "\\n" + other.proxy + "\\n")
    # Plain calls, no `with`: only the end of the test heals these.
    svc.latency(100)
    svc.slicer(8, delay=10)
    resilience.partition(svc)
    resilience.fault(other, "bandwidth", 64)
    other.down()
    assert len(toxiproxy.client.toxics(svc.proxy)) >= 4
    assert toxiproxy.client.get_proxy(other.proxy)["enabled"] is False


@pytest.fixture
def broken_fixture(resilience, toxiproxy, upstream):
    break_things(resilience, toxiproxy, upstream)
    raise RuntimeError("setup broke")


@pytest.mark.latency("svc", ms=50)
{test}

def test_next(toxiproxy):
    # Runs while the session lives: the previous test's proxies must be gone already.
    proxies = toxiproxy.client.proxies()
    assert [name for name in NAMES.read_text().split() if name in proxies] == []
    assert {{name: p["toxics"] for name, p in proxies.items() if p["toxics"]}} == {{}}
"""

ENDINGS = {
    "passes": (
        "def test_it(resilience, toxiproxy, upstream):\n"
        "    break_things(resilience, toxiproxy, upstream)\n"
    ),
    "fails": (
        "def test_it(resilience, toxiproxy, upstream):\n"
        "    break_things(resilience, toxiproxy, upstream)\n"
        "    assert False, 'the body failed'\n"
    ),
    "errors_in_setup": "def test_it(broken_fixture):\n    pass\n",
    "interrupted": (
        "def test_it(resilience, toxiproxy, upstream):\n"
        "    break_things(resilience, toxiproxy, upstream)\n"
        "    raise KeyboardInterrupt\n"
    ),
}


OUTCOMES: dict[str, dict[str, int]] = {
    "passes": {"passed": 2},
    "fails": {"failed": 1, "passed": 1},
    "errors_in_setup": {"errors": 1, "passed": 1},
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_no_proxy_or_toxic_outlives_its_test(
    inner: pytest.Pytester, toxiproxy: Backend, ending: str
) -> None:
    before = toxiproxy.client.proxies()
    inner.makepyfile(FAULTY.format(test=ENDINGS[ending]))

    result = inner.runpytest(f"{OPTION_BACKEND}={toxiproxy.client.url}", no_reraise_ctrlc=True)

    if ending == "interrupted":
        assert result.ret == pytest.ExitCode.INTERRUPTED
    else:
        # test_next passes too: the first test's proxies were gone before the session ended.
        result.assert_outcomes(**OUTCOMES[ending])
    created = (inner.path / "proxies.txt").read_text().split()
    assert len(created) == 2
    after = toxiproxy.client.proxies()
    assert not set(created) & set(after), f"left behind: {sorted(set(created) & set(after))}"
    assert set(after) <= set(before)
    assert {name: p["toxics"] for name, p in after.items() if p["toxics"]} == {}
    assert all(p["enabled"] for p in after.values())


# -- xdist ---------------------------------------------------------------------------------


def test_xdist_workers_get_distinct_proxy_names_and_share_the_seed(
    inner: pytest.Pytester, toxiproxy: Backend
) -> None:
    inner.makepyfile(
        """
        import json
        import os
        import pathlib

        import pytest

        @pytest.mark.parametrize("i", range(6))
        @pytest.mark.latency("svc", ms=10)
        def test_svc(i, resilience, toxiproxy, upstream):
            svc = resilience.tcp_service("svc", upstream)
            record = {
                "proxy": svc.proxy,
                "worker": os.environ["PYTEST_XDIST_WORKER"],
                "seed": resilience.seed,
                "toxics": [t["type"] for t in toxiproxy.client.toxics(svc.proxy)],
            }
            pathlib.Path(__file__).with_name(f"out-{i}.json").write_text(json.dumps(record))
        """
    )
    result = inner.runpytest("-n", "2", f"{OPTION_BACKEND}={toxiproxy.client.url}")

    result.assert_outcomes(passed=6)
    records = [read_json(inner.path / f"out-{i}.json") for i in range(6)]
    proxies = [r["proxy"] for r in records]
    assert len(set(proxies)) == 6, proxies
    assert {r["worker"] for r in records} == {"gw0", "gw1"}
    assert all(r["toxics"] == ["latency"] for r in records), records
    header_seed = re.search(r"seed=(\d+)", result.stdout.str())
    assert header_seed, result.stdout.str()
    assert {r["seed"] for r in records} == {int(header_seed.group(1))}
    assert not set(proxies) & set(toxiproxy.client.proxies())


# -- header ----------------------------------------------------------------------------------


USES_TOXIPROXY = """
def test_uses_toxiproxy(toxiproxy):
    assert toxiproxy.version
"""


def test_header_names_seed_and_after_collection_the_backend(
    pytester: pytest.Pytester, url: str
) -> None:
    pytester.makepyfile(USES_TOXIPROXY)
    result = pytester.runpytest(f"{OPTION_BACKEND}={url}")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            f"resilience: toxiproxy={url}, seed=* (replay with {OPTION_SEED}=*)",
            "collected 1 item",
            f"resilience: remote toxiproxy 2.12.0 at {url} (remote)",
        ]
    )
    seeds = re.search(rf"seed=(\d+) \(replay with {OPTION_SEED}=(\d+)\)", result.stdout.str())
    assert seeds and seeds.group(1) == seeds.group(2)


@pytest.mark.usefixtures("binary_on_path")
def test_header_says_spawned_when_toxiproxy_server_is_on_path(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_TOXIPROXY)
    result = pytester.runpytest()

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "resilience: toxiproxy=auto, seed=*",
            "collected 1 item",
            "resilience: spawned toxiproxy 2.12.0 at http://127.0.0.1:* (*toxiproxy-server, pid *)",
        ]
    )


@pytest.mark.usefixtures("binary_on_path")
def test_no_toxiproxy_is_started_when_no_test_uses_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["resilience: toxiproxy=auto, seed=*"])
    result.stdout.no_fnmatch_line("*toxiproxy 2.*")


# -- seed ----------------------------------------------------------------------------------


def test_seed_replays_fake_data_and_another_seed_changes_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import json
        import pathlib

        def test_data(fake):
            values = [fake.name(), fake.email(), fake.pyint()]
            pathlib.Path(__file__).with_name("fake.json").write_text(json.dumps(values))
        """
    )

    def values_with(seed: int) -> list[Any]:
        result = pytester.runpytest(f"{OPTION_SEED}={seed}")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines([f"*seed={seed} (replay with {OPTION_SEED}={seed})"])
        return list(read_json(pytester.path / "fake.json"))

    first = values_with(123)
    assert values_with(123) == first
    assert values_with(124) != first


# -- spawned server ----------------------------------------------------------------------


@pytest.mark.usefixtures("binary_on_path")
@pytest.mark.parametrize("body_end", ["returns", "raises KeyboardInterrupt"])
def test_spawned_toxiproxy_is_reaped_when_the_run_ends(
    pytester: pytest.Pytester, body_end: str
) -> None:
    end = "raise KeyboardInterrupt" if body_end.startswith("raises") else "pass"
    pytester.makepyfile(
        f"""
        import json
        import pathlib
        import re

        def test_server(toxiproxy):
            assert toxiproxy.kind == "spawned"
            pid = int(re.search(r"pid (\\d+)", toxiproxy.detail).group(1))
            record = {{"pid": pid, "url": toxiproxy.client.url}}
            pathlib.Path(__file__).with_name("server.json").write_text(json.dumps(record))
            {end}
        """
    )
    result = pytester.runpytest(f"{OPTION_BACKEND}=spawn", no_reraise_ctrlc=True)

    if end == "pass":
        result.assert_outcomes(passed=1)
    else:
        assert result.ret == pytest.ExitCode.INTERRUPTED
    server = read_json(pytester.path / "server.json")
    assert not process_exists(server["pid"]), f"toxiproxy-server pid {server['pid']} is left"
    host, port = server["url"].removeprefix("http://").rsplit(":", 1)
    assert refuses_connections(host, int(port))


# -- import cost -----------------------------------------------------------------------------


def test_loading_the_plugin_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        HEAVY = [
            "faker",
            "requests",
            "toxiproxy",
            "pytest_resilience.tap",
            "pytest_resilience.engine",
            "pytest_resilience.runtime.loop",
            "pytest_resilience.toxiproxy.client",
            "pytest_resilience.services",
            "pytest_resilience.http.server",
            "pytest_resilience.assertions",
            "h11",
            "hypothesis",
            "pytest_resilience.explore",
        ]

        def test_imports():
            assert "pytest_resilience.plugin" in sys.modules
            assert [name for name in HEAVY if name in sys.modules] == []
        """
    )
    # Hypothesis's own plugin is off: what is measured is ours.
    result = pytester.runpytest_subprocess(
        "-p", "no:faker", "-p", "no:xdist", "-p", "no:hypothesispytest"
    )
    result.assert_outcomes(passed=1)


# -- options and ini -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            f"{OPTION_BACKEND}=bogus",
            f"ERROR: {OPTION_BACKEND}='bogus' is not one of auto, embedded, spawn or an "
            f"http://host:port URL; e.g. {OPTION_BACKEND}=http://127.0.0.1:8474.",
        ),
        (
            f"{OPTION_BACKEND}=http://127.0.0.1",
            f"ERROR: {OPTION_BACKEND}='http://127.0.0.1' *http://host:port*; "
            f"*{OPTION_BACKEND}=http://127.0.0.1:8474.",
        ),
        (
            f"{OPTION_SEED}=abc",
            f"ERROR: {OPTION_SEED}='abc' is not a whole number; pass e.g. {OPTION_SEED}=1234.",
        ),
        (
            f"{OPTION_SEED}=-1",
            f"ERROR: {OPTION_SEED}='-1' is negative; pass a number >= 0.",
        ),
    ],
    ids=["backend-bogus", "backend-url-without-port", "seed-not-a-number", "seed-negative"],
)
def test_bad_option_is_a_usage_error_saying_what_to_do(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    pytester.makepyfile(USES_TOXIPROXY)
    result = pytester.runpytest(option)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    result.stderr.fnmatch_lines([message])


def test_unreachable_toxiproxy_errors_the_tests_that_use_it(pytester: pytest.Pytester) -> None:
    port = free_port()
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
    result = pytester.runpytest(f"{OPTION_BACKEND}=http://127.0.0.1:{port}")

    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [f"Toxiproxy at http://127.0.0.1:{port} did not answer GET /version*"]
    )


def test_ini_seed_shows_in_header(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nresilience_seed = 77\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"resilience: *seed=77 (replay with {OPTION_SEED}=77)"])


def test_command_line_seed_overrides_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nresilience_seed = 77\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest(f"{OPTION_SEED}=5")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"resilience: *seed=5 (replay with {OPTION_SEED}=5)"])


def test_bad_ini_seed_is_a_usage_error_naming_the_ini_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nresilience_seed = abc\n")
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest()

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ini option resilience_seed: *'abc' is not a whole number*"]
    )


def test_ini_toxiproxy_url_selects_that_server(pytester: pytest.Pytester, url: str) -> None:
    pytester.makeini(f"[pytest]\ntoxiproxy = {url}\n")
    pytester.makepyfile(USES_TOXIPROXY)
    result = pytester.runpytest()

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"resilience: remote toxiproxy 2.12.0 at {url} (remote)"])


def test_the_package_exports_what_the_readme_documents_and_nothing_else() -> None:
    import pytest_resilience

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What the package exports", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", section)) - {"pytest_resilience", "__all__"}
    documented -= {"resilience", "toxiproxy", "drive", "load"}  # fixtures and methods named
    assert set(pytest_resilience.__all__) == documented
    for name in pytest_resilience.__all__:
        assert getattr(pytest_resilience, name) is not None
