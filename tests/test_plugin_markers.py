"""The plugin's fault markers as users meet them, through inner pytest runs (``pytester``):
help and validation, the heap during a resilience test, and when a marker's fault applies.

The inner runs share the outer session's Toxiproxy (``--toxiproxy=<url>``).
"""

from __future__ import annotations

import pytest
from inner import read_json

from pytest_resilience.options import OPTION_BACKEND

FAST = 0.15
"""Upper bound for a round trip without a fault, with room for a loaded 2-core machine."""
LATENCY = 0.3
"""Latency the timing tests inject, in seconds; well above FAST."""


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
            "a finite number >= 0 and <= 1e+06, got 'soon'.",
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
