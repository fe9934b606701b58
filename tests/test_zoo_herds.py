"""The zoo's herds are sized by simulation: each herd test in ``tests/zoo/`` takes a timing
verdict's "insufficient evidence" (said when the noise measured in the run hides the
herd's timing) as well as the outcome the library's source dictates, so that a loaded
machine does not fail it; these seeded runs prove that its herd is big enough, and its
waits long enough, to be decided as expected on a busy machine, and never the other way.

Each schedule is drawn as the library's source draws it, cited in the zoo test named;
each wait is lengthened by four wake-up delays (``simulated.noisy``), the clients start
one delay apart (four on an overloaded machine: a barrier's release there spread five
clients over 19-23 ms), and the noise is what the probe would measure over the herd's
span.  The delays strike each client apart; one delay holding several lockstep clients
at once is checked on herds recorded under load (``tests/test_recorded_herds.py``).
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from simulated import delay, herd, noisy, outcome, probed, real_time, recorded
from test_timing_verdicts import VIRTUAL_SAMPLES

from pytest_resilience.assertions import check_backoff, check_no_retry_storm
from pytest_resilience.assertions.timing import HOPS
from pytest_resilience.observe.noise import PERIOD

BUSY = 0.001
"""Mean wake-up delay (s) of a busy machine: one wait's noise p50 about 4 ms."""
OVERLOADED = 0.005
"""Of an overloaded one (two CPU hogs beside the suite): 12-34 ms on each wait."""
RUNS = 100
DECIDED = 97
"""Runs of :data:`RUNS` at :data:`BUSY` that each verdict must decide as expected."""

STORM = "retry storm"
FLAT = "retry waits do not grow"
LOCKSTEP = "retry waits carry no jitter"
ZOO = Path(__file__).parent / "zoo"


@dataclass(frozen=True)
class Herd:
    test: str
    """The zoo test it sizes (``file::name``)."""
    size: int
    waits: Callable[[random.Random], list[float]]
    """One client's waits before each retry, drawn as the library draws them."""
    verdicts: tuple[tuple[Callable[..., None], dict[str, object], str], ...]
    """(check, its arguments as the test passes them but ``failure_statuses``, which only
    botocore's tests need for its 400 throttles, expected): ``expected`` is "pass" or the
    claim the check must make."""
    clock: str = "real"
    """"virtual" for a test marked ``virtual_time``: each wait's noise is bounded by the
    real time it took (``Noise.real``), and the probe has few samples."""


def _plus(
    base: tuple[float, ...], jitter: Callable[[random.Random, float], float]
) -> Callable[[random.Random], list[float]]:
    return lambda rng: [b + jitter(rng, b) for b in base]


GROWING_IN_LOCKSTEP = (
    (check_backoff, {"jitter": False}, "pass"),
    (check_no_retry_storm, {}, STORM),
    (check_backoff, {"jitter": True}, LOCKSTEP),
)
"""The verdicts of the herds whose waits grow without jitter, each test's calls as it makes them."""
SPREAD_OUT = (
    (check_no_retry_storm, {}, "pass"),
    (check_backoff, {"jitter": True, "min_factor": 1}, "pass"),
)
"""The verdicts of the jittered herds judged on jitter alone (growth waived)."""
HERDS = [
    Herd(
        "test_urllib3.py::test_a_herd_without_backoff_jitter_retries_in_lockstep",
        8,
        lambda rng: [0.0, 0.3, 0.6],
        GROWING_IN_LOCKSTEP,
    ),
    Herd(
        "test_urllib3.py::test_a_herd_with_backoff_jitter_spreads_out",
        8,
        lambda rng: [0.0, 0.3 + rng.uniform(0, 0.6), 0.6 + rng.uniform(0, 0.6)],
        SPREAD_OUT,
    ),
    Herd(
        "test_urllib3.py::test_backoff_max_below_the_backoff_erases_the_jitter",
        8,
        lambda rng: [0.0, 0.6, 0.6],
        ((check_no_retry_storm, {}, STORM), (check_backoff, {"jitter": True}, LOCKSTEP)),
    ),
    Herd(
        "test_aiohttp_retry.py::test_list_retry_with_equal_timeouts_is_a_fixed_interval",
        5,
        lambda rng: [0.3, 0.3, 0.3],
        ((check_backoff, {"jitter": False}, FLAT), (check_no_retry_storm, {}, STORM)),
    ),
    Herd(
        "test_aiohttp_retry.py::test_a_herd_with_exponential_retry_retries_in_lockstep",
        5,
        lambda rng: [0.3, 0.6, 1.2],
        GROWING_IN_LOCKSTEP,
    ),
    Herd(
        "test_aiohttp_retry.py::test_a_herd_with_jitter_retry_spreads_out",
        8,
        lambda rng: [0.1 * 2**n + rng.uniform(0, 0.6) ** 2 for n in (1, 2, 3)],
        SPREAD_OUT,
    ),
    Herd(
        "test_opnieuw.py::test_a_herd_with_full_jitter_spreads_out",
        5,
        lambda rng: [rng.uniform(0, 3 * 2**n / 7) for n in (0, 1, 2)],
        SPREAD_OUT,
    ),
    Herd(
        "test_httpx_retries.py::test_a_herd_with_the_default_full_jitter_spreads_out",
        5,
        lambda rng: [0.15 * 2**n * rng.random() for n in (1, 2, 3)],
        (
            (check_no_retry_storm, {}, "pass"),
            (check_backoff, {"jitter": True, "min_factor": 1, "max_delay": 1.2}, "pass"),
        ),
    ),
    Herd(
        "test_httpx_retries.py::test_a_herd_without_jitter_retries_in_lockstep",
        5,
        lambda rng: [0.3, 0.6, 1.2],
        GROWING_IN_LOCKSTEP,
    ),
    Herd(
        "test_httpx_retries.py::test_max_backoff_wait_below_the_jittered_range_erases_the_jitter",
        8,
        lambda rng: [1.0, 1.0, 1.0],
        (
            (check_no_retry_storm, {}, STORM),
            (check_backoff, {"jitter": False}, FLAT),
            (check_backoff, {"jitter": True, "min_factor": 0.5}, LOCKSTEP),
        ),
    ),
    Herd(
        "test_redo.py::test_a_herd_with_the_default_jitter_proportion_retries_in_lockstep",
        5,
        _plus((0.3, 0.45, 0.675), lambda rng, b: rng.uniform(-b / 60, b / 60)),
        ((check_no_retry_storm, {}, STORM), (check_backoff, {"jitter": True}, LOCKSTEP)),
    ),
    Herd(
        "test_redo.py::test_a_herd_with_jitter_of_half_the_wait_spreads_out",
        5,
        _plus((0.2, 0.4, 0.8), lambda rng, b: rng.uniform(-b / 2, b / 2)),
        SPREAD_OUT,
    ),
    Herd(
        "test_retrying.py::test_a_fixed_interval_neither_backs_off_nor_waits_the_retry_after",
        5,
        lambda rng: [0.3] * 5,
        ((check_backoff, {"jitter": False}, FLAT), (check_no_retry_storm, {}, STORM)),
    ),
    Herd(
        "test_retrying.py::test_a_herd_with_exponential_waits_and_no_jitter_retries_in_lockstep",
        5,
        lambda rng: [0.3, 0.6, 1.2],
        GROWING_IN_LOCKSTEP,
    ),
    Herd(
        "test_retrying.py::test_a_herd_with_wait_jitter_max_spreads_out_even_at_the_cap",
        8,
        _plus((0.2, 0.4, 0.8), lambda rng, b: rng.uniform(0, 0.3)),
        (
            (check_no_retry_storm, {}, "pass"),
            (check_backoff, {"jitter": True, "min_factor": 1, "max_delay": 1.1}, "pass"),
        ),
    ),
    Herd(
        "test_botocore.py::test_standard_mode_fleet_is_bounded_grouped_by_invocation_and_fully_jittered",
        8,
        lambda rng: [rng.random(), 2 * rng.random()],
        (
            (check_no_retry_storm, {}, "pass"),
            (check_backoff, {"jitter": True, "min_factor": 1, "max_delay": 20}, "pass"),
        ),
    ),
    Herd(
        "test_botocore.py::test_legacy_dynamodb_retries_in_lockstep_and_is_called_a_storm",
        5,
        lambda rng: [0.05, 0.1, 0.2, 0.4, 0.8],
        (
            (check_backoff, {"jitter": False, "min_factor": 1.5}, "pass"),
            (check_backoff, {"jitter": True}, LOCKSTEP),
            (check_no_retry_storm, {}, STORM),
        ),
    ),
    Herd(
        "test_opentelemetry.py::test_a_fleet_with_the_default_jitter_is_not_called_a_storm",
        5,
        lambda rng: [rng.uniform(0.8, 1.2)],
        (
            (check_no_retry_storm, {}, "pass"),
            (check_backoff, {"jitter": True, "min_factor": 1, "max_delay": 1.5}, "pass"),
        ),
        clock="virtual",
    ),
    Herd(
        "test_opentelemetry.py::test_a_fleet_without_jitter_retries_in_lockstep",
        5,
        lambda rng: [1.0],
        (
            (check_no_retry_storm, {}, STORM),
            (check_backoff, {"jitter": True, "min_factor": 1}, LOCKSTEP),
        ),
    ),
    Herd(
        "test_sdk_fleets.py::test_a_fleet_with_the_sdks_jitter_is_neither_a_storm_nor_jitter_free",
        12,
        lambda rng: [0.5 * 2**n * (1 - 0.25 * rng.random()) for n in range(3)],
        (
            (check_no_retry_storm, {}, "pass"),
            (check_backoff, {"jitter": True, "min_factor": 1}, "pass"),
        ),
    ),
]
"""Every herd test of the zoo, with the verdicts it takes as judged, then the herds of
``test_verdicts_on_real_clients.py`` (named from the zoo's folder: ``../``)."""

HERE = "../test_verdicts_on_real_clients.py::"
HERDS += [
    Herd(
        HERE + "test_exponential_backoff_without_jitter_after_a_shared_outage_retries_in_lockstep",
        5,
        lambda rng: [0.2, 0.4, 0.8],
        (
            (check_no_retry_storm, {}, STORM),
            (check_backoff, {"jitter": True}, LOCKSTEP),
            (check_backoff, {"jitter": False}, "pass"),
        ),
    ),
    Herd(
        HERE + "test_lockstep_clients_charging_the_same_body_are_told_apart_by_their_stable_keys",
        5,
        lambda rng: [0.2, 0.4, 0.8],
        ((check_backoff, {"jitter": False}, "pass"), (check_no_retry_storm, {}, STORM)),
    ),
    Herd(
        HERE + "test_full_jitter_after_a_shared_outage_spreads_the_retries",
        5,
        lambda rng: [rng.uniform(0, 0.2), rng.uniform(0, 0.4), rng.uniform(0, 0.8)],
        SPREAD_OUT,
    ),
]


def judge(herd_: Herd, scale: float, rng: random.Random) -> list[str]:
    """One simulated run of ``herd_`` on a machine waking threads ``scale`` s late: each
    verdict's outcome, in the order of ``herd_.verdicts``."""
    spread = scale if scale < OVERLOADED else 4 * scale
    if herd_.clock == "virtual":
        asked = [herd_.waits(rng) for _ in range(herd_.size)]
        noises = [[sum(delay(rng, scale) for _ in range(HOPS)) for _ in row] for row in asked]
        rows = [
            [w + e for w, e in zip(a, n, strict=True)] for a, n in zip(asked, noises, strict=True)
        ]
        timeline = herd(rows, spread=spread)
        noise = probed(VIRTUAL_SAMPLES * PERIOD, scale, rng)
        noise.bound = max(map(max, noises))
        noise.real = real_time(timeline, noises)
    else:
        rows = [noisy(herd_.waits(rng), scale, rng) for _ in range(herd_.size)]
        timeline, noise = recorded(rows, scale, rng, spread=spread)
    return [outcome(check, timeline, noise=noise, **kwargs) for check, kwargs, _ in herd_.verdicts]


@pytest.mark.parametrize("herd_", HERDS, ids=lambda h: h.test.split("::")[1])
def test_each_zoo_herd_is_decided_as_its_test_expects_and_never_the_other_way(herd_: Herd) -> None:
    """On a busy machine each verdict decides as the library's source dictates in at least
    :data:`DECIDED` of :data:`RUNS` runs; on an overloaded one it may say the evidence is
    insufficient more often, but neither machine ever gets the other side."""
    rng = random.Random(20261203)
    expected = [e for _, _, e in herd_.verdicts]
    busy = [judge(herd_, BUSY, rng) for _ in range(RUNS)]
    overloaded = [judge(herd_, OVERLOADED, rng) for _ in range(RUNS // 2)]
    for k, want in enumerate(expected):
        seen = [run[k] for run in busy + overloaded]
        assert set(seen) <= {want, "insufficient"}, (k, sorted(set(seen)))
        assert [run[k] for run in busy].count(want) >= DECIDED, (k, seen[:RUNS].count(want))


def _function(test: str) -> ast.FunctionDef:
    """The zoo test's function, parsed from its source."""
    file, name = test.split("::")
    tree = ast.parse((ZOO / file).read_text())
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def _judged_calls(test: str) -> list[tuple[str, dict[str, object], str]]:
    """The ``judged(...)`` calls of a zoo test, read from its source: (verdict method,
    literal keyword arguments but ``failure_statuses``, expected outcome)."""
    function = _function(test)
    calls = []
    for node in ast.walk(function):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "judged":
            kwargs = {
                k.arg: ast.literal_eval(k.value)
                for k in node.keywords
                if k.arg and k.arg != "failure_statuses"
            }
            claim = kwargs.pop("claim", "pass")
            calls.append((node.args[0].attr, kwargs, claim))  # type: ignore[attr-defined]
    return calls


def _on_virtual_time(test: str) -> bool:
    """Whether the zoo test is marked ``virtual_time`` (read from its source)."""
    return any("virtual_time" in ast.unparse(mark) for mark in _function(test).decorator_list)


def test_each_simulated_herd_is_judged_as_its_zoo_test_judges_it() -> None:
    """The table above is read off the zoo's sources: a herd test whose size or verdicts
    change must change its simulation too, and every herd test has one."""
    methods = {check_backoff: "assert_backoff", check_no_retry_storm: "assert_no_retry_storm"}
    for herd_ in HERDS:
        simulated = [(methods[c], kwargs, want) for c, kwargs, want in herd_.verdicts]
        assert _judged_calls(herd_.test) == simulated, herd_.test
        assert _on_virtual_time(herd_.test) == (herd_.clock == "virtual"), herd_.test
    herd_tests = {
        f"{path.name}::{node.name}"
        for path in ZOO.glob("test_*.py")
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef)
        and node.name.startswith("test_")
        and "assert_no_retry_storm" in ast.unparse(node)
    }
    assert herd_tests == {h.test for h in HERDS if not h.test.startswith("../")}
