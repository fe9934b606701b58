"""The engine under load: a thousand connections at once echo and leave nothing behind."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from pytest_resilience.engine import Engine

from .support import (
    CONNECTIONS,
    EchoUpstream,
    create_proxy,
    fds_back_to,
    needs_proc_fd,
    open_fds,
    wait_until,
)


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Room for every socket of CONNECTIONS links (client, engine's two, upstream's)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4 * CONNECTIONS + 1024
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed} descriptors needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@dataclass
class _Client:
    sock: socket.socket
    expected: bytes
    outgoing: bytes
    received: bytes = b""
    done: bool = False


@dataclass
class _Clients:
    clients: list[_Client] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def concurrent_round_trips(port: int, count: int, timeout: float) -> _Clients:
    """Open ``count`` connections at once, echo a small message on each, keep them all open."""
    selector = selectors.DefaultSelector()
    result = _Clients()
    try:
        for number in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            payload = f"connection {number:04d}\n".encode()
            client = _Client(sock, payload, payload)
            result.clients.append(client)
            sock.connect_ex(("127.0.0.1", port))
            selector.register(sock, selectors.EVENT_WRITE, client)
        pending = count
        deadline = time.monotonic() + timeout
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.errors.append(
                    f"{pending} of {count} round trips unfinished after {timeout} s"
                )
                break
            for key, _ in selector.select(remaining):
                client = key.data
                try:
                    if client.outgoing:
                        error = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if error:
                            raise OSError(error, os.strerror(error))
                        sent = client.sock.send(client.outgoing)
                        client.outgoing = client.outgoing[sent:]
                        if not client.outgoing:
                            selector.modify(client.sock, selectors.EVENT_READ, client)
                        continue
                    chunk = client.sock.recv(4096)
                    if not chunk:
                        raise ConnectionError(f"EOF after {client.received!r}")
                    client.received += chunk
                    if len(client.received) < len(client.expected):
                        continue
                    if client.received != client.expected:
                        raise ValueError(f"echoed {client.received!r}")
                    client.done = True
                except (OSError, ValueError) as exc:
                    result.errors.append(f"{client.expected!r}: {exc!r}")
                selector.unregister(client.sock)
                pending -= 1
    except BaseException:
        for client in result.clients:
            client.sock.close()
        raise
    finally:
        selector.close()
    return result


@needs_proc_fd
def test_thousand_concurrent_connections_echo_and_leave_nothing_behind(
    engine: Engine, upstream: EchoUpstream, many_fds: None
) -> None:
    port = create_proxy(engine.url, "crowd", upstream.address)
    proxy = engine.collection.proxies["crowd"]
    baseline = open_fds()

    started = time.monotonic()
    result = concurrent_round_trips(port, CONNECTIONS, timeout=20)
    try:
        assert result.errors == [], f"{len(result.errors)} failed, e.g. {result.errors[:5]}"
        assert all(client.done for client in result.clients)
        # Every client is still connected: the engine held them all at once.
        assert len(proxy.links) == CONNECTIONS
    finally:
        for client in result.clients:
            client.sock.close()
    elapsed = time.monotonic() - started

    wait_until(
        lambda: len(proxy.links) == 0, 10, lambda: f"no links left ({len(proxy.links)} open)"
    )
    fds_back_to(baseline)
    assert proxy.connections_total == CONNECTIONS
    assert elapsed < 15, f"{CONNECTIONS} round trips took {elapsed:.1f} s"
