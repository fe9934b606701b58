"""The engine's toxics keep real time while a test freezes it for its own code
(``tests/test_frozen_time.py`` has the plugin's side)."""

from __future__ import annotations

import socket
import time

from freezegun import freeze_time
from net import read_at_most

from pytest_resilience.clock import real_monotonic
from pytest_resilience.engine import Engine

from .support import IO_TIMEOUT, EchoUpstream, add_toxic, create_proxy

LATENCY = 0.5
"""Seconds of the latency toxic on the way to the upstream."""
GAP = 0.1
"""Seconds between the two chunks the client sends."""


def test_latency_counts_a_chunks_time_in_the_queue_under_frozen_time(
    engine: Engine, upstream: EchoUpstream
) -> None:
    """Each chunk is delayed ``LATENCY`` from its arrival, counting the time it queued
    behind the one before.  Stamped with a frozen ``time.monotonic``, the second chunk's
    queueing counted for nothing: it came ``LATENCY`` after the first had gone, ``GAP``
    too late for each second it queued (here 0.9 s after it was sent, not 0.5 s)."""
    port = create_proxy(engine.url, "frozen", upstream.address)
    add_toxic(
        engine.url,
        "frozen",
        "latency",
        stream="upstream",
        attributes={"latency": int(LATENCY * 1000)},
    )
    with (
        socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as conn,
        freeze_time("2026-01-01 00:00:00"),
    ):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = real_monotonic()
        conn.sendall(b"a")
        time.sleep(GAP)  # the scenario: a second chunk while the first is held
        second = real_monotonic()
        conn.sendall(b"b")
        assert read_at_most(conn, 1) == b"a"
        first_delay = real_monotonic() - first
        assert read_at_most(conn, 1) == b"b"
        second_delay = real_monotonic() - second

    assert LATENCY <= first_delay < LATENCY + 2 * GAP
    # Midway between right (LATENCY) and the defect (LATENCY + LATENCY - GAP).
    assert LATENCY <= second_delay < LATENCY + (LATENCY - GAP) / 2
