"""Measures a self-driven lockstep herd's waits in parts (``docs/wait-noise-research.md``,
route 5): ten threads the test starts itself, released by a barrier, each charging once
through the incident's ``NaivePaymentsClient`` (a fixed 50 ms retry after a 503).  The
clients' own ``time.sleep`` and ``post`` calls are recorded on their threads, and each
attempt is matched to its exchange by its idempotency key (a new one per attempt), so
that every wait splits into the way back (the answer's end to the client's sleep), the
sleep asked for, the sleep's overshoot, and the way out (the sleep's end to the next
request's arrival).  Each run appends one line to ``$SELF_DRIVEN``.  From the
repository's root, under the load to study::

    for i in $(seq 10); do for backend in spawn embedded; do
        SELF_DRIVEN=/tmp/self-driven.jsonl python3 -m pytest -q -p no:cacheprovider \\
            -p no:xdist --toxiproxy=$backend tests/record_self_driven.py; done; done
    PYTHONPATH=. python3 tests/record_self_driven.py /tmp/self-driven.jsonl
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from record_wait_noise import _quantiles

from examples.payments.incident import NaivePaymentsClient
from pytest_resilience.assertions.operations import answered_at
from pytest_resilience.assertions.timing import Noise
from pytest_resilience.clock import CLOCK
from pytest_resilience.observe.noise import span

HERD = 10


@pytest.fixture(autouse=True)
def _output_file() -> None:
    if "SELF_DRIVEN" not in os.environ:
        pytest.skip("set SELF_DRIVEN to the file that measurements are appended to")


def test_self_driven_lockstep_burst(resilience, monkeypatch: pytest.MonkeyPatch) -> None:
    payments = resilience.http_service("payments")
    payments.respond(201, json={"id": "ch_1", "amount": 1, "currency": "eur", "status": "ok"})
    payments.fail(503, count=30)
    clients: set[int] = set()
    posts: dict[str, int] = {}
    """Per idempotency key: the thread that sent it."""
    after: dict[str, str | None] = {}
    """Per key: the key of the same thread's attempt before it."""
    last_key: dict[int, str] = {}
    """Per client thread: the key of its last attempt."""
    sleeps: dict[str, tuple[float, float, float]] = {}
    """Per key: (seconds asked, began, ended) of the sleep its thread took after it."""
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() not in clients:
            real_sleep(seconds)
            return
        began = CLOCK.now()
        real_sleep(seconds)
        sleeps[last_key[threading.get_ident()]] = (seconds, began, CLOCK.now())

    monkeypatch.setattr(time, "sleep", sleep)  # the client calls time.sleep at call time
    barrier = threading.Barrier(HERD)
    with NaivePaymentsClient(payments.url, attempts=10, interval=0.05) as client:
        post = client._session.post

        def recorded_post(url: str, **kwargs: Any) -> Any:
            key, me = kwargs["headers"]["Idempotency-Key"], threading.get_ident()
            posts[key], after[key], last_key[me] = me, last_key.get(me), key
            return post(url, **kwargs)

        monkeypatch.setattr(client._session, "post", recorded_post)
        amounts = itertools.count(1000)

        def charge() -> None:
            clients.add(threading.get_ident())
            barrier.wait()
            client.charge(next(amounts), "eur", "x@example.org")

        threads = [threading.Thread(target=charge) for _ in range(HERD)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    exchanges = payments.settled()
    since, until = span(exchanges) or (0.0, 0.0)
    by_thread: dict[int, list[Any]] = {}
    for exchange in sorted(exchanges, key=lambda e: e.started_at):
        by_thread.setdefault(posts[exchange.idempotency_key], []).append(exchange)
    waits = []  # retry index, the wait, the way back, the sleep's overshoot, the way out
    for attempts in by_thread.values():
        for k, (a, b) in enumerate(itertools.pairwise(attempts)):
            # Matched by key, so that an attempt lost on the way (a client timeout that
            # never reached the service) cannot pair a sleep with the wrong request.
            if after[b.idempotency_key] != a.idempotency_key:
                continue
            asked, began, ended = sleeps[a.idempotency_key]
            answered = answered_at(a)
            waits.append(
                [
                    k,
                    b.started_at - answered,
                    began - answered,
                    ended - began - asked,
                    b.started_at - ended,
                ]
            )
    line = {
        "backend": resilience.session.backend.kind,
        "waits": waits,
        "probe": resilience._noise.samples(since, until),
    }
    with open(os.environ["SELF_DRIVEN"], "a") as f:
        f.write(json.dumps(line) + "\n")


def summary(lines: Path) -> str:
    """Each part of the waits above its least at the same retry of the same burst."""
    rng = random.Random(0)
    parts: list[list[float]] = [[], [], [], []]
    model: list[float] = []
    runs = [json.loads(line) for line in lines.read_text().splitlines()]
    for run in runs:
        by_retry: dict[int, list[list[float]]] = {}
        for row in run["waits"]:
            by_retry.setdefault(row[0], []).append(row[1:])
        for rows in by_retry.values():
            for i, part in enumerate(parts):
                least = min(r[i] for r in rows)
                part += [r[i] - least for r in rows]
        model += Noise(run["probe"], seed=rng.randrange(2**32)).sums
    names = [
        "the waits",
        "the way back: the answer's end to the client's sleep",
        "the sleep's overshoot",
        "the way out: the sleep's end to the next request's arrival",
    ]
    return "\n".join(
        [
            f"{len(runs)} bursts, {len(parts[0])} waits; above their least at the same retry (ms):",
            "| | p50 | p90 | p99 |",
            "|---|---|---|---|",
            *(f"| {name} | {_quantiles(part)} |" for name, part in zip(names, parts, strict=True)),
            f"| the verdicts' model (`Noise.sums`) | {_quantiles(model)} |",
        ]
    )


if __name__ == "__main__":
    print(summary(Path(sys.argv[1])))
