"""The plugin as users meet it: inner pytest runs through ``pytester``.

Most inner runs share the outer session's Toxiproxy (``--toxiproxy=<url>``);
the ones about spawning and reaping a server start their own.  The markers' inner runs
are in ``test_plugin_markers.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from inner import read_json
from net import refused_port

from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED
from pytest_resilience.toxiproxy.backends import Backend

REPO_BIN = Path(__file__).resolve().parents[1] / ".bin"


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
            f"ERROR: {OPTION_SEED} must be a whole number >= 0, got 'abc'; pass e.g. "
            f"{OPTION_SEED}=1234.",
        ),
        (
            f"{OPTION_SEED}=-1",
            f"ERROR: {OPTION_SEED} must be a whole number >= 0, got -1; pass e.g. "
            f"{OPTION_SEED}=1234.",
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
    with refused_port() as port:
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
        ["ERROR: ini option resilience_seed: * must be a whole number >= 0, got 'abc'*"]
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
