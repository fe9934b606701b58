"""Toxiproxy's own clients against the real server and the engine, their outputs diffed.

The official ``toxiproxy-cli`` 2.12 and a program of ours over the official Go client
package (``goclient/main.go``) each run one fixed sequence (create, list, toxics
added, updated and removed, errors of every kind, toggle, populate, reset, delete)
against a real ``toxiproxy-server`` and an embedded engine; what each prints, with the
ports the OS chose masked, must be the same.  ``.ci/install-toxiproxy`` builds both
tools into ``.bin/``.  A difference fails the test unless it is listed in
:data:`EXTENSIONS` with its reason (the README's engine section lists the same).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from .conftest import LOCAL_BINARY, REQUIRE_TOXIPROXY_ENV, _run_embedded, _run_toxiproxy

BIN = LOCAL_BINARY.parent
UPSTREAM = "127.0.0.1:9"
"""The proxies' upstream: never dialled, as no client connects through them."""
EXTENSIONS: dict[str, str] = {}
"""Steps whose output may differ, with why; empty: the tools see no difference."""
CLI_SEQUENCE = [
    "list",
    f"create -l 127.0.0.1:0 -u {UPSTREAM} compat_cli",
    f"create -l 127.0.0.1:0 -u {UPSTREAM} compat_cli",
    "list",
    "toxic add -t latency -a latency=100 -a jitter=5 compat_cli",
    "toxic add -n slow -t bandwidth -a rate=10 -u --tox 0.5 compat_cli",
    "toxic add -t nope compat_cli",
    "inspect compat_cli",
    "toxic update -n slow -a rate=20 compat_cli",
    "toxic update -n nope -a rate=20 compat_cli",
    "toggle compat_cli",
    "inspect compat_cli",
    "toggle compat_cli",
    "toxic remove -n slow compat_cli",
    "toxic remove -n nope compat_cli",
    "inspect nope",
    "delete nope",
    "delete compat_cli",
    "list",
]
PORT = re.compile(r"(127\.0\.0\.1|\[::\]):\d+")


def _tool(name: str) -> str:
    found = shutil.which(name) or (str(BIN / name) if os.access(BIN / name, os.X_OK) else None)
    if found is None:
        reason = (
            f"{name} is neither on PATH nor in {BIN}; build it with `bash .ci/install-toxiproxy`."
        )
        if os.environ.get(REQUIRE_TOXIPROXY_ENV):
            pytest.fail(f"{REQUIRE_TOXIPROXY_ENV} is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, str]]:
    """A real Toxiproxy and an embedded engine, both fresh: name -> API URL."""
    real, engine = _run_toxiproxy(), _run_embedded()
    try:
        yield {"toxiproxy": next(real), "embedded": next(engine)}
    finally:
        for running in (real, engine):
            running.close()


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return PORT.sub(r"\1:PORT", done.stdout + done.stderr) + f"exit {done.returncode}\n"


def _differences(outputs: dict[str, list[tuple[str, str]]]) -> list[str]:
    real, engine = outputs["toxiproxy"], outputs["embedded"]
    return [
        f"{step}\n  toxiproxy: {theirs!r}\n  engine:    {ours!r}"
        for (step, theirs), (_, ours) in zip(real, engine, strict=True)
        if theirs != ours and step not in EXTENSIONS
    ]


def test_toxiproxy_cli_prints_the_same_for_the_engine(backends: dict[str, str]) -> None:
    cli = _tool("toxiproxy-cli")
    outputs = {
        name: [
            (line, _run([cli, "-h", url.removeprefix("http://"), *line.split()]))
            for line in CLI_SEQUENCE
        ]
        for name, url in backends.items()
    }

    assert _differences(outputs) == []
    # The sequence reached what it meant to: a toxic shown, an error answered.
    shown = dict(outputs["toxiproxy"])
    assert "type=latency" in shown["inspect compat_cli"]
    assert "HTTP 409: proxy already exists" in shown[CLI_SEQUENCE[2]]


def test_the_official_go_client_sees_the_same_from_the_engine(backends: dict[str, str]) -> None:
    program = _tool("toxiproxy-goclient")
    outputs = {
        name: [
            (line.split(":", 1)[0], line) for line in _run([program, url, UPSTREAM]).splitlines()
        ]
        for name, url in backends.items()
    }

    assert len(outputs["toxiproxy"]) == len(outputs["embedded"]), outputs
    assert _differences(outputs) == []
    steps = dict(outputs["toxiproxy"])
    assert steps["update lag"].endswith('"toxicity":0.25,"attributes":{"jitter":7,"latency":100}}')
    assert steps["exit 0"] == "exit 0"
