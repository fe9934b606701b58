"""Measures what spreads lockstep waits under load (``docs/wait-noise-research.md``).

Ten clients retrying every 50 ms after a 503 (the incident's ``NaivePaymentsClient``),
while a second probe, every 5 ms after its timer woke, echoes one byte through a proxy of
the same backend to an echo server in this process.  Each run appends one line to
``$WAIT_NOISE``: the waits by retry index, the noise probe's samples over the burst, and
the echo probe's (timer delay, round trip) pairs over it.  From the repository's root,
under the load to study (here: ``.ci/stress-verdicts`` on both backends at once, one hog
each)::

    for i in $(seq 20); do WAIT_NOISE=/tmp/wait-noise.jsonl python3 -m pytest -q \\
        -p no:cacheprovider -p no:xdist --toxiproxy=spawn tests/record_wait_noise.py; done
    PYTHONPATH=. python3 tests/record_wait_noise.py /tmp/wait-noise.jsonl

The last command prints the waits above their burst's least against what each noise
model draws from the same run's samples.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from examples.payments.incident import NaivePaymentsClient
from pytest_resilience.assertions.operations import FailureSet, operations
from pytest_resilience.assertions.timing import HOPS, Noise
from pytest_resilience.assertions.waits import wait_columns
from pytest_resilience.clock import CLOCK
from pytest_resilience.observe.noise import PERIOD, overlapped, span


@pytest.fixture(autouse=True)
def _noise_file() -> None:
    if "WAIT_NOISE" not in os.environ:
        pytest.skip("set WAIT_NOISE to the file that measurements are appended to")


def test_incident_burst_beside_an_echo_probe(resilience, echo_server) -> None:
    echo = resilience.tcp_service("echo", echo_server.address)
    payments = resilience.http_service("payments")
    payments.respond(201, json={"id": "ch_1", "amount": 1, "currency": "eur", "status": "ok"})
    payments.fail(503, count=30)
    host, port = echo.address.rsplit(":", 1)
    stop = threading.Event()
    pairs: list[tuple[float, float, float]] = []

    def probe(sock: socket.socket) -> None:
        while True:
            began = time.monotonic()
            if stop.wait(PERIOD):
                return
            woke = time.monotonic()
            sock.sendall(b"x")
            sock.recv(1)
            pairs.append((CLOCK.now(), woke - began - PERIOD, time.monotonic() - woke))

    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=probe, args=(sock,))
        thread.start()
        try:
            with NaivePaymentsClient(payments.url, attempts=10, interval=0.05) as client:
                amounts = itertools.count(1000)
                run = resilience.load(
                    lambda: client.charge(next(amounts), "eur", "x@example.org"),
                    duration=0.1,
                    rate=100,
                    concurrency=10,
                )
        finally:
            stop.set()
            thread.join()
    exchanges = payments.settled()
    since, until = span(exchanges) or (0.0, 0.0)  # the span a verdict reads the probe over
    ops = operations(exchanges, None, FailureSet(None))
    firsts = sorted(op.attempts[0].started_at for op in ops)
    line = {
        "backend": resilience.session.backend.kind,
        "waits": wait_columns(ops, None),  # by retry index, as the jitter verdict reads them
        "probe": resilience._noise.samples(since, until),
        # A call's start (on its load thread) to its first request's arrival: the client's
        # own work on the way out, and every hop after it (calls and operations in order).
        "outbound": [f - c.started_at for c, f in zip(run.calls, firsts, strict=False)],
        "echo": [(t, trip) for at, t, trip in pairs if overlapped(at, t, since, until)],
    }
    with open(os.environ["WAIT_NOISE"], "a") as f:
        f.write(json.dumps(line) + "\n")


def _quantiles(values: list[float]) -> str:
    ordered = sorted(values)
    at = [ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000 for q in (0.5, 0.9, 0.99)]
    return " | ".join(f"{v:.1f}" for v in at)


def summary(lines: Path) -> str:
    rng = random.Random(0)
    above, hops, echoed, outbound = [], [], [], []
    for line in map(json.loads, lines.read_text().splitlines()):
        least = min(w for column in line["waits"] for w in column)
        above += [w - least for column in line["waits"] for w in column]
        hops += Noise(line["probe"], seed=rng.randrange(2**32)).sums  # the verdicts' model
        if not line["echo"]:
            continue
        timers = [t for t, _ in line["echo"]]
        trips = [trip for _, trip in line["echo"]]
        if line.get("outbound"):
            out = line["outbound"]
            outbound += [rng.choice(timers) + rng.choice(out) - min(out) for _ in range(2000)]
        echoed += [rng.choice(timers) + rng.choice(trips) - min(trips) for _ in range(2000)]
    return "\n".join(
        [
            "| | p50 | p90 | p99 |",
            "|---|---|---|---|",
            f"| the clients' waits above their least (ms) | {_quantiles(above)} |",
            f"| the verdicts' model: {HOPS} probe delays summed, or a stall (ms) | {_quantiles(hops)} |",
            f"| a timer delay + the echo round trip's excess (ms) | {_quantiles(echoed or [0.0])} |",
            f"| a timer delay + a call's start to its request, above the least (ms) | {_quantiles(outbound or [0.0])} |",
        ]
    )


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
