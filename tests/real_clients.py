"""Helpers for the tests that drive real client libraries against a stub service
(``tests/zoo/`` and ``tests/test_verdicts_on_real_clients.py``)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from processes import wait_for

from pytest_resilience import Exchange, HttpService, InsufficientEvidence, ResilienceAssertionError

R = TypeVar("R")


def settled(service: HttpService, count: int, timeout: float = 5.0) -> list[Exchange]:
    """The exchanges once ``count`` arrived and each knows whether its answer was delivered.

    The verdicts tell a lost answer (a failure, so a retry belongs to its operation)
    from one still in flight by ``delivered``, so they are run on settled records.
    """

    def ready() -> list[Exchange] | None:
        exchanges = service.exchanges
        if len(exchanges) >= count and all(e.delivered is not None for e in exchanges):
            return list(exchanges)
        return None

    return wait_for(  # type: ignore[no-any-return]
        ready, timeout=timeout, interval=0.005, what=f"{count} exchanges with a known delivery"
    )


def waits(attempts: list[Exchange]) -> list[float]:
    """Seconds from each answer's last byte to the next attempt: the client's sleep."""
    return [b.started_at - a.ended_at for a, b in itertools.pairwise(attempts)]  # type: ignore[operator]


def released_together(clients: int, call: Callable[[int], R], timeout: float = 5.0) -> list[R]:
    """``call(0..clients-1)`` on as many threads, released together by a barrier (the clients
    failed together); the outcomes in order.  Make what is slow to make (an httpx client
    takes tens of ms of CPU) before, or the release is spread by it.  The pool joins every
    thread before this returns."""
    start = threading.Barrier(clients)

    def client(n: int) -> R:
        start.wait(timeout=timeout)
        return call(n)

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(client, range(clients)))


def judged(verdict: Callable[..., None], *args: object, claim: str = "", **kwargs: object) -> str:
    """Run a timing ``verdict`` on a herd: it must make ``claim`` (its message starts so) or,
    without one, pass; on a machine whose measured noise hides the herd's timing it may
    instead say the evidence is insufficient, never the opposite side.  How often a herd
    is decided is the simulation's to prove (``tests/test_zoo_herds.py``): "passed",
    "claimed" or "insufficient"."""
    __tracebackhide__ = True
    try:
        verdict(*args, **kwargs)
    except InsufficientEvidence:
        return "insufficient"
    except ResilienceAssertionError as error:
        if claim and str(error).startswith(claim):
            return "claimed"
        raise
    if claim:
        raise AssertionError(
            f"{verdict.__name__} passed: expected {claim!r} or insufficient evidence"
        )
    return "passed"
