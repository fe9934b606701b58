"""Socket helpers the tests share: a port nothing listens on, and reading what arrives."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on (just released by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_at_most(conn: socket.socket, size: int) -> bytes:
    """Read until ``size`` bytes or EOF, whichever comes first."""
    received = b""
    while len(received) < size:
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received
