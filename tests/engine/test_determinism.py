"""The engine's randomness (slicer sizes, toxicity) replays from its seed."""

from __future__ import annotations

import socket

from net import read_at_most

from pytest_resilience.engine import Engine

from .support import (
    IO_TIMEOUT,
    EchoUpstream,
    add_toxic,
    create_proxy,
)

SLICED_PAYLOAD = bytes(range(65, 65 + 40))
SLICE_DELAY_US = 60_000
"""Microseconds between slices: far longer than a loaded machine takes to wake a reader."""


def slices_received(port: int) -> list[int]:
    """Sizes of the reads that brought the echo of SLICED_PAYLOAD back."""
    sizes: list[int] = []
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as conn:
        conn.sendall(SLICED_PAYLOAD)
        while len(received) < len(SLICED_PAYLOAD):
            chunk = conn.recv(65536)
            assert chunk, f"EOF after {received!r}"
            sizes.append(len(chunk))
            received += chunk
    assert received == SLICED_PAYLOAD
    return sizes


def cut_short(port: int) -> bool:
    """True if a limit_data toxic (2 bytes) cut this connection's echo."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as conn:
        conn.sendall(b"hello")
        received = read_at_most(conn, 5)
    assert received in (b"he", b"hello")
    return received == b"he"


def random_choices(seed: int, upstream: EchoUpstream) -> tuple[list[list[int]], list[bool]]:
    """Slice sizes on 2 connections and which of 24 a toxicity-0.5 toxic hit."""
    with Engine(host="127.0.0.1", port=0, seed=seed) as engine:
        sliced = create_proxy(engine.url, "sliced", upstream.address)
        add_toxic(
            engine.url,
            "sliced",
            "slicer",
            attributes={"average_size": 6, "size_variation": 5, "delay": SLICE_DELAY_US},
        )
        sizes = [slices_received(sliced) for _ in range(2)]
        flaky = create_proxy(engine.url, "flaky", upstream.address)
        add_toxic(engine.url, "flaky", "limit_data", toxicity=0.5, attributes={"bytes": 2})
        hits = [cut_short(flaky) for _ in range(24)]
    return sizes, hits


def test_same_seed_replays_slicer_sizes_and_toxicity_a_different_seed_does_not(
    upstream: EchoUpstream,
) -> None:
    first = random_choices(11, upstream)
    replay = random_choices(11, upstream)
    other = random_choices(12, upstream)

    sizes, hits = first
    assert any(len(set(s)) > 1 for s in sizes), f"the slicer did not vary sizes: {sizes}"
    assert 0 < sum(hits) < len(hits), f"toxicity 0.5 hit all or none: {hits}"
    assert replay == first
    assert other[0] != sizes, "another seed sliced the same sizes"
    assert other[1] != hits, "another seed hit the same connections"
