"""Socket helpers the tests share: a port nothing listens on, and reading what arrives."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port held bound and not listening while the block runs: connecting to it
    is refused, and no other socket is given it.  (Released, a port was given to the
    plugin's own next listener 1 time in 3,000 under load.)"""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def read_at_most(conn: socket.socket, size: int) -> bytes:
    """Read until ``size`` bytes or EOF, whichever comes first."""
    received = b""
    while len(received) < size:
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def read_until(conn: socket.socket, end: bytes) -> bytes:
    """Read until what was received ends with ``end``; fails if the peer closes first."""
    received = b""
    while not received.endswith(end):
        chunk = conn.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received
