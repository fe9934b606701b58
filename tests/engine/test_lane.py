"""The engine's express lane: links no toxic touches, relayed by one thread of its own.

Toxiproxy's answers (closes, resets, toxics on open connections) are pinned for both
paths by ``tests/conformance``; here, what only the lane can get wrong: the handover
to the event loop when a toxic arrives mid-stream, a reader slower than its writer,
and a peer that hangs up while bytes wait.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from processes import cpu_seconds

from pytest_resilience.engine import Engine
from pytest_resilience.engine.lane import CHUNK
from pytest_resilience.engine.proxy import Proxy

from .support import IO_TIMEOUT, wait_until


class Upstream:
    """A loopback listener whose connections the test drives itself."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(IO_TIMEOUT)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"

    def accept(self) -> socket.socket:
        conn, _ = self.sock.accept()
        conn.settimeout(IO_TIMEOUT)
        return conn


@pytest.fixture
def listener() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.sock.close()


def proxy_to(engine: Engine, name: str, upstream: str) -> tuple[Proxy, int]:
    answer = requests.post(
        f"{engine.url}/proxies",
        json={"name": name, "upstream": upstream, "listen": "127.0.0.1:0"},
        timeout=IO_TIMEOUT,
    )
    assert answer.status_code == 201, answer.text
    return engine.collection.proxies[name], int(answer.json()["listen"].rsplit(":", 1)[1])


Connect = Callable[[str], tuple[Proxy, socket.socket, socket.socket]]


@pytest.fixture
def connect(engine: Engine, listener: Upstream) -> Iterator[Connect]:
    """``connect(name)``: proxy ``name`` to ``listener``, a client through it, and the
    upstream's end of it; both sockets closed after the test."""
    opened: list[socket.socket] = []

    def connect(name: str) -> tuple[Proxy, socket.socket, socket.socket]:
        proxy, port = proxy_to(engine, name, listener.address)
        opened.append(socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT))
        opened.append(listener.accept())
        return proxy, opened[-2], opened[-1]

    yield connect
    for sock in opened:
        sock.close()


def assert_lane_idle(proxy: Proxy, why: str) -> None:
    """The proxy's lane thread uses (almost) no CPU for 0.3 s: it waits on epoll, not
    spinning."""
    before = lane_cpu_seconds(proxy)
    time.sleep(0.3)
    assert lane_cpu_seconds(proxy) - before < 0.1, f"the lane spun {why}"


def read_all(conn: socket.socket) -> bytes:
    parts = []
    while chunk := conn.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def lane_cpu_seconds(proxy: Proxy) -> float:
    """CPU time the proxy's lane thread has used (Linux: /proc/self/task/TID/stat)."""
    assert proxy.lane is not None
    return cpu_seconds(f"/proc/self/task/{proxy.lane.native_id}/stat")


def test_a_toxic_added_mid_stream_takes_the_link_to_the_loop_and_no_byte_is_lost(
    engine: Engine, connect: Connect
) -> None:
    proxy, client, server = connect("stream")
    [link] = proxy.links
    wait_until(lambda: link.express, IO_TIMEOUT, "the link in the express lane")

    data = random.Random(1).randbytes(4 << 20)
    sender = threading.Thread(target=client.sendall, args=(data,))
    sender.start()
    received = bytearray(server.recv(1 << 16))  # the stream is under way...
    answer = requests.post(  # ...when a toxic arrives
        f"{engine.url}/proxies/stream/toxics",
        json={"type": "latency", "stream": "upstream", "attributes": {"latency": 1}},
        timeout=IO_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    assert not link.express and link.pipes, "the toxic's API call answered before the handover"
    while len(received) < len(data):
        received += server.recv(1 << 16)
    sender.join()

    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert proxy.counters["upstream"] == [len(data), len(data)]
    server.sendall(b"back")  # and the other way, on the loop now
    assert client.recv(4) == b"back"
    client.close()
    assert server.recv(1) == b""
    server.close()
    wait_until(lambda: not proxy.links, IO_TIMEOUT, "the link forgotten once both sides closed")


def test_a_slow_reader_holds_the_lane_back_and_gets_every_byte_then_the_close(
    engine: Engine, connect: Connect
) -> None:
    proxy, client, server = connect("slow")
    data = random.Random(2).randbytes(16 << 20)

    def write_all() -> None:
        with contextlib.suppress(OSError):  # the test failed and closed the client
            server.sendall(data)
            server.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write_all)
    writer.start()
    down = proxy.counters["downstream"]

    # The client reads nothing: the lane stops reading once one chunk waits for room.
    def stalled() -> bool:
        before = list(down)
        time.sleep(0.05)
        return down == before and 0 < down[0] < len(data)

    wait_until(stalled, IO_TIMEOUT, "the lane stalled behind the client")
    assert down[0] - down[1] <= CHUNK
    assert_lane_idle(proxy, "while it waited for the client")

    received = read_all(client)
    client.close()
    writer.join()
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    wait_until(lambda: not proxy.links, IO_TIMEOUT, "the link forgotten")


def test_a_peer_that_resets_while_bytes_wait_neither_spins_the_lane_nor_hangs_the_client(
    engine: Engine, connect: Connect
) -> None:
    proxy, client, server = connect("reset")
    server.setblocking(False)
    sent = [0]
    down = proxy.counters["downstream"]

    def filled() -> bool:
        took = _fill(server)
        sent[0] += took
        return took == 0 and down[0] > down[1]

    # Fill every buffer on the way to a client that does not read, then reset.
    wait_until(filled, IO_TIMEOUT, "bytes waiting in the lane")
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()

    assert_lane_idle(proxy, "on the hung-up socket")
    got = 0
    try:
        while chunk := client.recv(1 << 16):
            got += len(chunk)
    except ConnectionResetError:
        pass
    client.close()
    assert 0 < got <= sent[0]
    wait_until(lambda: not proxy.links, IO_TIMEOUT, "the link forgotten")


def _fill(sock: socket.socket) -> int:
    """Send until the socket takes no more; the bytes it took this time."""
    took = 0
    try:
        while True:
            took += sock.send(b"x" * (1 << 16))
    except BlockingIOError:
        return took


def test_a_failing_command_is_logged_and_the_lane_goes_on(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, client, server = connect("bug")
    assert proxy.lane is not None

    def bug() -> None:
        raise ZeroDivisionError("a bug of ours")

    with caplog.at_level("ERROR", logger="pytest_resilience.engine.lane"):
        with pytest.raises(ZeroDivisionError):
            proxy.lane.call(bug)
        proxy.lane._submit(bug)  # not awaited by anyone: logged
        proxy.lane.call(lambda: None)  # the commands run in order: the bug's has run
        client.sendall(b"ping")
        assert server.recv(4) == b"ping"
    assert "failed a command" in caplog.text


def test_a_stopped_lane_answers_at_once_and_its_links_are_closed(
    engine: Engine, connect: Connect
) -> None:
    proxy, client, _ = connect("late")
    [link] = proxy.links
    wait_until(lambda: link.express, IO_TIMEOUT, "the link in the express lane")
    lane = proxy.lane
    assert lane is not None

    engine.stop()

    assert lane.release([link]) == {}
    lane.close([link])
    lane.stop()
    assert read_all(client) == b""
