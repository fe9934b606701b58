"""Records lockstep herds (clients retrying without jitter) for ``data/lockstep_herds.json.gz``.

The clear side of the timing verdicts' jitter test is checked against these recordings
(``tests/test_recorded_herds.py``).  To record afresh, from the repository's root (so that
``examples`` is importable), under the load the verdicts must hold on (two CPU hogs, two
workers), once per backend::

    rm -f /tmp/herds.jsonl
    python3 -c "while True: pass" & python3 -c "while True: pass" &
    HERDS=/tmp/herds.jsonl python3 -m pytest -p no:cacheprovider -n 2 --toxiproxy=embedded \\
        tests/record_lockstep_herds.py
    HERDS=/tmp/herds.jsonl python3 -m pytest -p no:cacheprovider -n 2 --toxiproxy=spawn \\
        tests/record_lockstep_herds.py
    kill %1 %2
    PYTHONPATH=. python3 tests/record_lockstep_herds.py /tmp/herds.jsonl

Each run appends one line a herd to ``$HERDS`` (40 herds of each of 6 kinds); the last
command writes the archive.

``data/lockstep_herds_harsh.json.gz`` was recorded the same way but with ``-p no:xdist``,
while ``.ci/stress-verdicts`` ran on both backends at once with one hog each (two suites
and two hogs beside the recorder: the load under which the incident's lockstep burst once
passed as jittered); write it with ``python3 tests/record_lockstep_herds.py /tmp/herds.jsonl
harsh``.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import sys
from pathlib import Path

import pytest
import urllib3
from real_clients import released_together
from urllib3.util.retry import Retry

from examples.payments.incident import NaivePaymentsClient
from pytest_resilience.assertions.operations import FailureSet, answered_at, operations

REPEATS = 40
ARCHIVE = Path(__file__).parent / "data" / "lockstep_herds.json.gz"


@pytest.fixture(autouse=True)
def _herds_file() -> None:
    if "HERDS" not in os.environ:
        pytest.skip("set HERDS to the file that recorded herds are appended to")


def _record(resilience, service, client: str) -> None:
    exchanges = service.settled()
    ops = operations(exchanges, None, FailureSet(None))
    line = {
        "client": client,
        "backend": f"{resilience.session.backend.kind} {resilience.session.backend.version}",
        "operations": [[(answered_at(a), a.started_at) for a in op.attempts] for op in ops],
        "probe": resilience._noise.samples_during(exchanges),
    }
    with open(os.environ["HERDS"], "a") as f:
        f.write(json.dumps(line) + "\n")


@pytest.mark.parametrize("repeat", range(REPEATS))
@pytest.mark.parametrize(("size", "interval"), [(6, 0.05), (4, 0.15), (8, 0.1)])
def test_fixed_interval_herd(resilience, size: int, interval: float, repeat: int) -> None:
    service = resilience.http_service("payments")
    service.respond(201, json={"id": "ch_1", "amount": 1, "currency": "eur", "status": "ok"})
    service.fail(503, count=3 * size)
    clients = [NaivePaymentsClient(service.url, attempts=5, interval=interval) for _ in range(size)]

    def call(i: int) -> None:
        with contextlib.suppress(Exception):  # a client that gave up is still in the herd
            clients[i].charge(100 + i, "eur", "x@example.org")

    released_together(size, call)
    for client in clients:
        client.close()
    _record(resilience, service, f"requests, {size} clients, fixed {interval} s")


@pytest.mark.parametrize("repeat", range(REPEATS))
def test_fixed_interval_clients_under_load(resilience, repeat: int) -> None:
    service = resilience.http_service("payments")
    service.respond(201, json={"id": "ch_1", "amount": 1, "currency": "eur", "status": "ok"})
    with NaivePaymentsClient(service.url, attempts=10, interval=0.05, timeout=0.5) as client:
        service.fail(503, count=18)
        amounts = itertools.count(1000)
        resilience.load(
            lambda: client.charge(next(amounts), "eur", "x@example.org"),
            duration=0.06,
            rate=100,
            concurrency=6,
        )
    _record(resilience, service, "requests, 6 clients under load, fixed 0.05 s")


@pytest.mark.parametrize("repeat", range(REPEATS))
@pytest.mark.parametrize("size", [3, 5])
def test_urllib3_herd(resilience, size: int, repeat: int) -> None:
    service = resilience.http_service("api")
    service.respond(200, json={"ok": True})
    service.fail(503, count=3 * size)

    def call(i: int) -> None:
        retry = Retry(total=3, status_forcelist={503}, backoff_factor=0.1)
        with urllib3.PoolManager(retries=retry) as pool, contextlib.suppress(Exception):
            pool.request("GET", f"{service.url}/x/{i}")

    released_together(size, call)
    _record(resilience, service, f"urllib3, {size} clients, backoff_factor 0.1")


def build(lines: Path, archive: Path = ARCHIVE, load: str = "two CPU hogs with -n 2") -> None:
    """Writes the archive from recorded lines: times in microseconds from the first answer."""
    herds = []
    for line in lines.read_text().splitlines():
        herd = json.loads(line)
        t0 = min(answered for op in herd["operations"] for answered, _ in op)
        herd["operations"] = [
            [[round((a - t0) * 1e6), round((b - t0) * 1e6)] for a, b in op]
            for op in herd["operations"]
        ]
        herd["probe"] = [round(d * 1e6) for d in herd["probe"]]
        herds.append(herd)
    about = (
        f"Lockstep herds recorded under {load} on a 2-core machine by "
        "record_lockstep_herds.py: per operation, its attempts as [answered at, arrived at] "
        "in microseconds from the herd's first answer; probe: the noise probe's delays "
        "(microseconds) from the herd's first request on."
    )
    doc = {"about": about, "herds": herds}
    with gzip.open(archive, "wt") as f:
        json.dump(doc, f, separators=(",", ":"))


if __name__ == "__main__":
    if sys.argv[2:] == ["harsh"]:
        build(
            Path(sys.argv[1]),
            ARCHIVE.with_name("lockstep_herds_harsh.json.gz"),
            "two stress-verdicts suites and two CPU hogs",
        )
    else:
        build(Path(sys.argv[1]))
