"""The engine as the plugin's backend: faults through it, ``auto`` falling back to it, replay."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_resilience.options import OPTION_BACKEND, OPTION_SEED

from .support import EchoUpstream, echo_round_trip

INNER_LATENCY_TEST = """
import socket
import time

UPSTREAM = {upstream!r}


def round_trip(service, payload=b"ping"):
    with socket.create_connection((service.host, service.port), timeout=10) as conn:
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = conn.recv(65536)
            assert chunk, "the service closed before echoing"
            received += chunk
    return received


def test_latency_through_the_engine(resilience, toxiproxy):
    assert toxiproxy.kind == "embedded"
    echo = resilience.tcp_service("echo", upstream=UPSTREAM)
    with echo.latency(300):
        started = time.monotonic()
        assert round_trip(echo) == b"ping"
        assert time.monotonic() - started >= 0.25
    assert round_trip(echo) == b"ping"
"""


def test_plugin_with_embedded_runs_latency_faults_on_the_engine(
    pytester: pytest.Pytester, echo_server: Any
) -> None:
    pytester.makepyfile(INNER_LATENCY_TEST.format(upstream=echo_server.address))

    result = pytester.runpytest(f"{OPTION_BACKEND}=embedded")

    result.stdout.fnmatch_lines(["resilience: embedded toxiproxy 2.* (in-process engine)"])
    result.assert_outcomes(passed=1)


def test_plugin_in_auto_mode_without_toxiproxy_falls_back_to_the_engine(
    pytester: pytest.Pytester, echo_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Auto mode on a machine without Toxiproxy: no toxiproxy-server on PATH, no TOXIPROXY_URL."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    pytester.makepyfile(INNER_LATENCY_TEST.format(upstream=echo_server.address))

    result = pytester.runpytest(f"{OPTION_BACKEND}=auto")

    result.stdout.fnmatch_lines(["resilience: embedded toxiproxy 2.* (in-process engine)"])
    result.assert_outcomes(passed=1)


INNER_REPLAY_TEST = """
import json
import socket

UPSTREAM = {upstream!r}
RECORD = {record!r}


def outcome(service):
    with socket.create_connection((service.host, service.port), timeout=10) as conn:
        conn.sendall(b"hello")
        received = b""
        while len(received) < 5:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
    return received.decode()


def test_record_which_connections_the_fault_hit(resilience):
    echo = resilience.tcp_service("echo", upstream=UPSTREAM)
    echo.limit_data(2, toxicity=0.5)
    seen = [outcome(echo) for _ in range(24)]
    assert set(seen) <= {{"he", "hello"}}, seen
    with open(RECORD, "a") as record:
        record.write(json.dumps(seen) + "\\n")
"""


def test_resilience_seed_replays_which_connections_a_partial_fault_hits(
    pytester: pytest.Pytester, echo_server: Any, tmp_path: Path
) -> None:
    record = tmp_path / "seen.jsonl"
    pytester.makepyfile(INNER_REPLAY_TEST.format(upstream=echo_server.address, record=str(record)))

    for seed in (7, 7, 8):
        result = pytester.runpytest(f"{OPTION_BACKEND}=embedded", f"{OPTION_SEED}={seed}")
        result.stdout.fnmatch_lines([f"*seed={seed} *"])
        result.assert_outcomes(passed=1)

    first, replay, other = (json.loads(line) for line in record.read_text().splitlines())
    assert 0 < first.count("he") < len(first), f"toxicity 0.5 hit all or none: {first}"
    assert replay == first
    assert other != first


def test_the_plugins_engine_relays_on_the_sessions_loop_without_an_express_lane(
    upstream: EchoUpstream,
) -> None:
    """In the test's process a lane thread would contend for the GIL with the code under
    test (``toxiproxy/backends.py:_embedded``): the plugin's engine relays on its loop."""
    from pytest_resilience.session import ResilienceSession

    def lanes() -> set[threading.Thread]:  # other engines of this process may have theirs
        return {t for t in threading.enumerate() if t.name == "pytest-resilience-engine-lane"}

    before = lanes()
    with ResilienceSession(choice="embedded", seed=1) as session:
        test = session.new_test("tests::lane")
        echo = test.tcp_service("echo", upstream=upstream.address)
        assert echo_round_trip(echo.port) == b"ping"
        assert lanes() - before == set()
        test.close()
