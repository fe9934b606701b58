"""A wait after an attempt whose answer never reached the client is timed from the
attempt's start, so it also holds the client's read timeout: beside waits timed from an
answer, it shows a spread that no jitter made."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from pytest_resilience.assertions import InsufficientEvidence, operations
from pytest_resilience.resilience import Resilience

BACKOFF = 1.0
"""The client's fixed wait between attempts (no jitter), in seconds."""
TIMEOUT = 0.5
"""Its read timeout, in seconds."""


def fixed_backoff(url: str) -> None:
    """Two attempts at most, ``BACKOFF`` apart after a failure or a timeout."""
    for attempt in range(2):
        try:
            answer = requests.post(url, json={"item": url[-1]}, timeout=TIMEOUT)
            if answer.status_code < 500:
                return
        except requests.RequestException:
            pass
        if attempt == 0:
            time.sleep(BACKOFF)


@pytest.mark.virtual_time
def test_a_timeout_beside_a_503_is_no_jitter(resilience: Resilience) -> None:
    """Found by an audit: one client retrying after a 503, another after its read timeout
    (the answer held past it), both waiting a fixed 1 s, were shown jittered on virtual
    time (waits of 1.0 and 1.5 s), where the waits are exact and jitter's clear side a
    certainty.  Timed from the answer they got, the retries' waits are one (1.0 s), which
    shows nothing of jitter."""
    inventory = resilience.http_service("inventory")
    inventory.route("POST", "/a").fail(503, count=1)
    inventory.route("POST", "/b").delay(10 * TIMEOUT, count=1)
    clients = [
        threading.Thread(target=fixed_backoff, args=(inventory.url + path,))
        for path in ("/a", "/b")
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join()

    waits = sorted(round(w, 1) for op in operations(inventory.settled()) for w in op.waits)
    assert waits == [BACKOFF, BACKOFF + TIMEOUT]
    with pytest.raises(InsufficientEvidence, match="jitter"):
        inventory.assert_backoff(jitter=True, min_factor=1)
