"""Virtual time's speed: virtual seconds asserted per real second, side by side on the
embedded engine and the real Toxiproxy, in one run.

Each workload is a test on ``@pytest.mark.virtual_time`` in a fresh pytest process; its
record's ``clock`` (``virtual_s``, ``real_s``: the body only) gives the ratio.  The figure
is the median over ``--runs`` processes.

- one client: a charge answered 429 with a Retry-After of 60 s, then 201, ten times;
- a herd: 20 threads through a two-minute outage, retrying with exponential backoff
  and full jitter (capped at 60 s), then every charge succeeds.

- an async client: the one client's workload on httpx's ``AsyncClient`` under anyio;
- slow answers: ten calls against answers held two minutes (an HTTP ``delay``), each
  retried after its 60 s read timeout until one comes in time;
- the suite where the clock applies (:data:`SUITE`: the examples, the zoo of real
  clients and the verdicts on real clients), its wall time on real time and with
  ``--resilience-clock=virtual``, each in one pytest process (``-n 2``), on each backend.

    python -m benchmarks.virtual_time            # 3 runs and the suite, about 5 minutes
    python -m benchmarks.virtual_time --runs 1 --no-suite

Needs ``.bin/toxiproxy-server`` (``bash .ci/install-toxiproxy``) for the Toxiproxy column.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"engine": "--toxiproxy=embedded", "toxiproxy 2.12": "--toxiproxy=spawn"}

WORKLOADS = '''
import random
import threading
import time
import uuid

import anyio
import httpx
import pytest
import requests


@pytest.fixture
def anyio_backend():
    return "asyncio"


def charge(url, rng, cap, base):
    """A client with full-jitter backoff that honours Retry-After, one key per charge."""
    key = str(uuid.UUID(int=rng.getrandbits(128)))
    for attempt in range(1, 20):
        answer = requests.post(
            url + "/charges", json={"amount": 1}, headers={"Idempotency-Key": key}, timeout=5
        )
        if answer.status_code < 400:
            return answer
        asked = answer.headers.get("Retry-After")
        time.sleep(float(asked) if asked else rng.uniform(0, min(cap, base * 2**attempt)))
    raise AssertionError("no success in 19 attempts")


@pytest.mark.virtual_time
def test_one_client(resilience):
    api = resilience.http_service("api")
    api.respond(201, json={"id": "ch_1"})
    rng = random.Random(resilience.seed)
    for _ in range(10):
        api.route("POST", "/charges").fail(429, count=1, headers={"Retry-After": "60"})
        charge(api.url, rng, cap=60, base=5)
    api.assert_retry_after_honoured()


@pytest.mark.virtual_time
@pytest.mark.http_faults("api", status=503, duration=120)
def test_a_herd_of_20(resilience):
    api = resilience.http_service("api")
    api.respond(201, json={"id": "ch_1"})
    rng = random.Random(resilience.seed)
    herd = [
        threading.Thread(target=charge, args=(api.url, random.Random(rng.random()), 60, 5))
        for _ in range(20)
    ]
    for thread in herd:
        thread.start()
    for thread in herd:
        thread.join()
    api.assert_attempts(max=19)
    resilience.assert_no_retry_storm(api)


async def charge_async(client, rng, cap, base):
    """charge() on httpx's AsyncClient."""
    key = str(uuid.UUID(int=rng.getrandbits(128)))
    for attempt in range(1, 20):
        answer = await client.post(
            "/charges", json={"amount": 1}, headers={"Idempotency-Key": key}, timeout=5
        )
        if answer.status_code < 400:
            return answer
        asked = answer.headers.get("Retry-After")
        await anyio.sleep(float(asked) if asked else rng.uniform(0, min(cap, base * 2**attempt)))
    raise AssertionError("no success in 19 attempts")


@pytest.mark.virtual_time
def test_slow_answers(resilience):
    api = resilience.http_service("api")
    api.respond(201, json={"id": "ch_1"})
    for _ in range(10):
        api.route("POST", "/charges").delay(120, count=2)
        for attempt in range(3):
            try:
                requests.post(api.url + "/charges", json={"amount": 1}, timeout=60)
                break
            except requests.ReadTimeout:
                time.sleep(2**attempt)


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_an_async_client(resilience):
    api = resilience.http_service("api")
    api.respond(201, json={"id": "ch_1"})
    rng = random.Random(resilience.seed)
    async with httpx.AsyncClient(base_url=api.url) as client:
        for _ in range(10):
            api.route("POST", "/charges").fail(429, count=1, headers={"Retry-After": "60"})
            await charge_async(client, rng, cap=60, base=5)
    api.assert_retry_after_honoured()
'''


SUITE = ("examples", "tests/zoo", "tests/test_verdicts_on_real_clients.py")
"""The tests that run on both clocks (``.ci/run`` runs them on virtual time too)."""


def suite_seconds(backend: str, clock: str) -> float:
    """Wall seconds of :data:`SUITE` on ``clock``, as pytest reports them."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.bin'}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", backend,
         f"--resilience-clock={clock}", *SUITE],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the suite failed on {backend}, {clock} time:\n{done.stdout[-3000:]}")
    return float(done.stdout.rsplit(" in ", 1)[1].split("s", 1)[0])


def clocks(backend: str, seed: int) -> dict[str, dict[str, float]]:
    """Run the workloads in a fresh pytest process; each test's clock record, by name."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "test_workloads.py").write_text(WORKLOADS)
        env = dict(os.environ)
        env["PATH"] = f"{ROOT / '.bin'}{os.pathsep}{env.get('PATH', '')}"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", backend,
             f"--resilience-seed={seed}", "--resilience-report=r.json"],
            cwd=folder, env=env, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"the workloads failed on {backend}:\n{done.stdout[-3000:]}")
        tests = json.loads((Path(folder) / "r.json").read_text())["tests"]
        return {t["nodeid"].rsplit("::", 1)[1]: t["clock"] for t in tests}


def measure(runs: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per backend, per workload: median virtual s, real s and their ratio."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, backend in BACKENDS.items():
        seen: dict[str, list[dict[str, float]]] = {}
        for seed in range(1, runs + 1):
            for test, clock in clocks(backend, seed).items():
                seen.setdefault(test, []).append(clock)
        table[name] = {
            test: {
                "virtual_s": statistics.median(c["virtual_s"] for c in records),
                "real_s": statistics.median(c["real_s"] for c in records),
                "ratio": statistics.median(c["virtual_s"] / c["real_s"] for c in records),
            }
            for test, records in seen.items()
        }
    return table


def report(table: dict[str, Any], runs: int, suite: dict[str, tuple[float, float]]) -> str:
    names = {"test_one_client": "one client, ten Retry-After: 60", "test_a_herd_of_20": (
        "20-client herd through a 2-minute outage"), "test_an_async_client": (
        "an async client (httpx), ten Retry-After: 60"), "test_slow_answers": (
        "ten calls against two-minute answers, 60 s read timeouts")}  # fmt: skip
    lines = [
        f"virtual time, median of {runs} run(s): virtual s / real s of the test body",
        "",
        "| workload | " + " | ".join(table) + " |",
        "|---|" + "---|" * len(table),
    ]
    for test, label in names.items():
        cells = [
            f"{row[test]['virtual_s']:.0f} s in {row[test]['real_s']:.2f} s: "
            f"{row[test]['ratio']:,.0f}x"
            for row in table.values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [
        f"{real:.0f} s real, {virtual:.0f} s virtual: {real / virtual:.1f}x faster"
        for real, virtual in suite.values()
    ]
    label = "the suite where the clock applies (" + ", ".join(SUITE) + ")"
    lines.append(f"| {label} | " + " | ".join(cells or ["not measured"] * len(table)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-suite", action="store_true", help="leave out the suite's row")
    args = parser.parse_args()
    suite = {}
    if not args.no_suite:
        suite = {
            name: (suite_seconds(backend, "real"), suite_seconds(backend, "virtual"))
            for name, backend in BACKENDS.items()
        }
    print(report(measure(args.runs), args.runs, suite))


if __name__ == "__main__":
    main()
