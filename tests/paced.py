"""What more than one file of the paced tests uses (``test_paced_verdicts.py``,
``test_paced_veto.py``, ``test_paced_senders.py``, ``test_paced_places.py``): one attempt
at a charge; herds on real time (clients queued behind one slot, lockstep clients spread
by their own work, a jittered fleet); the check that neither jitter verdict clears a
herd; the chunk an interruptible sleep is slept in.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import select
import threading
import time
from collections.abc import Callable

import pytest

from pytest_resilience import HttpService, Resilience
from pytest_resilience.assertions import InsufficientEvidence
from pytest_resilience.assertions.operations import operations

BACKOFF = 0.3


def _charge(api: HttpService, key: str | None) -> int:
    """One attempt on a new connection, as a pool-less client makes it (keyless with no
    ``key``); its status, 0 for an answer cut short."""
    conn = http.client.HTTPConnection(api.host, api.port, timeout=10)
    try:
        headers = {} if key is None else {"Idempotency-Key": key}
        conn.request("POST", "/charges", body=b"{}", headers=headers)
        return conn.getresponse().status
    except (http.client.HTTPException, ConnectionError):
        return 0
    finally:
        conn.close()


def _run(clients: list[threading.Thread]) -> None:
    for client in clients:
        client.start()
    for client in clients:
        client.join()


def _neither_clears(resilience: Resilience, api: HttpService, match: str | None = None) -> None:
    """Neither jitter verdict clears ``api``'s retries: each is insufficient evidence (its
    message matching ``match``, if given)."""
    with pytest.raises(InsufficientEvidence, match=match):
        api.assert_backoff(jitter=True, min_factor=1)
    with pytest.raises(InsufficientEvidence, match=match):
        resilience.assert_no_retry_storm(api)


def _queued_client(
    api: HttpService,
    key: str,
    slot: contextlib.AbstractContextManager[object],
    backoff: float = BACKOFF,
) -> None:
    """A charge with a fixed ``backoff`` and no jitter, sent through one shared slot (a
    pool of one connection), held until its answer is read."""
    for attempt in range(2):
        with slot:
            status = _charge(api, key)
        if status != 503 or attempt == 1:
            return
        time.sleep(backoff)


def _queued_herd(
    resilience: Resilience,
    clients: int = 5,
    slot: contextlib.AbstractContextManager[object] | None = None,
) -> HttpService:
    """``clients`` such charges fail together; each retry's answer is held 0.3 s, so the
    retries queue for the slot: their waits read 0.3, 0.6, 0.9 ... s."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=clients)
    api.route("POST", "/charges").delay(0.3, count=clients)
    shared = threading.Semaphore(1) if slot is None else slot
    _run(
        [
            threading.Thread(target=_queued_client, args=(api, f"c{n}", shared))
            for n in range(clients)
        ]
    )
    retries = sorted(op.attempts[1].started_at for op in operations(api.exchanges))
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(retries))
    return api


WORK = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)
"""Seconds of their own work six lockstep clients do between an answer and their sleep,
waiting outside the interpreter (a lookup, a disk write, a query): what a busy machine
stretches unevenly there, and the probe (a sleeping thread, which that work does not
hold back) never sees."""


def _work(seconds: float) -> None:
    """Work that waits outside the interpreter, unnoted (a wait in C; a sleep in C)."""
    select.select([], [], [], seconds)


def _working_client(
    api: HttpService,
    key: str,
    work: float,
    pause: Callable[[float], object] = time.sleep,
    working: Callable[[float], object] = _work,
) -> None:
    for attempt in range(3):
        if _charge(api, key) != 503 or attempt == 2:
            return
        working(work)
        pause(0.2)


def _working_herd(
    resilience: Resilience,
    pause: Callable[[float], object],
    working: Callable[[float], object] = _work,
) -> HttpService:
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=12)
    _run(
        [
            threading.Thread(target=_working_client, args=(api, f"w{n}", work, pause, working))
            for n, work in enumerate(WORK)
        ]
    )
    return api


SLEEPS = tuple(0.1 + 0.15 * n for n in range(8))
"""Sleeps eight jittered clients drew, fixed here so that the test rests on no draw."""


def _jittered_fleet(resilience: Resilience, pause: Callable[[float], object]) -> HttpService:
    """Eight clients failed together, each retrying after its sleep of :data:`SLEEPS`."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=len(SLEEPS))

    def client(key: str, wait: float) -> None:
        assert _charge(api, key) == 503
        pause(wait)
        assert _charge(api, key) == 200

    _run([threading.Thread(target=client, args=(f"j{n}", w)) for n, w in enumerate(SLEEPS)])
    return api


CHUNK = 0.05
