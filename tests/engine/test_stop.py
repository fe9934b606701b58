"""Stopping the engine ends every listener, connection and thread, whatever is in flight."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
from net import read_at_most

from pytest_resilience.engine import Engine

from .support import (
    API_TIMEOUT,
    IO_TIMEOUT,
    EchoUpstream,
    add_toxic,
    create_proxy,
    engine_threads,
    fds_back_to,
    needs_proc_fd,
    open_fds,
    reads_eof_or_reset,
    refuses,
    wait_until,
)


@needs_proc_fd
def test_stop_ends_api_connections_still_sending_a_request() -> None:
    """A request still being read when stop() comes: under load one outlived stop() (a
    handler thread, 1 of 5 stress runs, when the API ran on the standard library's
    threaded server).  stop() ends such a connection and leaves no thread or descriptor;
    ten tries, as the old code failed 1 try in 3."""
    threads_before = set(threading.enumerate())
    fds_before = open_fds()
    for _ in range(10):
        engine = Engine(host="127.0.0.1", port=0, seed=3)
        url = engine.start()
        with socket.create_connection(("127.0.0.1", engine.port), timeout=IO_TIMEOUT) as conn:
            # A body announced and not sent: the API waits for it when stop() comes.
            conn.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            # Answered after the half-sent request was taken up (the listener's queue is FIFO).
            assert requests.get(f"{url}/version", timeout=API_TIMEOUT).status_code == 200
            engine.stop()
            assert reads_eof_or_reset(conn), "the half-sent request's connection stayed open"
        left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
        assert left == [], "threads outlived stop()"
    assert open_fds() <= fds_before


def test_stop_closes_every_listener_connection_and_thread(upstream: EchoUpstream) -> None:
    threads_before = set(threading.enumerate())
    engine_threads_before = engine_threads()
    baseline = open_fds()
    engine = Engine(host="127.0.0.1", port=0, seed=3)
    url = engine.start()
    api = requests.Session()  # keeps an idle keep-alive connection to the API
    clients: list[socket.socket] = []
    try:
        idle_port = create_proxy(url, "idle", upstream.address, api)
        slow_port = create_proxy(url, "slow", upstream.address, api)
        hole_port = create_proxy(url, "hole", upstream.address, api)
        add_toxic(url, "slow", "latency", api, attributes={"latency": 60_000})
        add_toxic(url, "hole", "timeout", api, stream="upstream", attributes={"timeout": 0})
        proxies = engine.collection.proxies
        for _ in range(3):
            conn = socket.create_connection(("127.0.0.1", idle_port), timeout=IO_TIMEOUT)
            clients.append(conn)
            conn.sendall(b"ping")
            assert read_at_most(conn, 4) == b"ping"
        for port in (slow_port, hole_port):
            conn = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            clients.append(conn)
            conn.sendall(b"held")
        # The echo waits in the latency toxic; the request was swallowed by the blackhole.
        wait_until(
            lambda: proxies["slow"].counters["downstream"][0] == 4,
            IO_TIMEOUT,
            "echo read by 'slow'",
        )
        wait_until(
            lambda: proxies["hole"].counters["upstream"][0] == 4,
            IO_TIMEOUT,
            "request read by 'hole'",
        )
        assert api.get(f"{url}/version", timeout=API_TIMEOUT).status_code == 200

        started = time.monotonic()
        engine.stop()
        took = time.monotonic() - started

        assert took < 5, f"stop() took {took:.1f} s"
        assert refuses(engine.port), "the API port still accepts connections"
        for port in (idle_port, slow_port, hole_port):
            assert refuses(port), f"proxy port {port} still accepts connections"
        still_open = [c.getsockname()[1] for c in clients if not reads_eof_or_reset(c)]
        assert still_open == [], "client connections neither closed nor reset"
        with pytest.raises(requests.ConnectionError):
            api.get(f"{url}/version", timeout=API_TIMEOUT)
        leftover = [t.name for t in threading.enumerate() if t not in threads_before]
        assert leftover == [], "threads outlived stop()"
        assert engine_threads() <= engine_threads_before
    finally:
        api.close()
        for conn in clients:
            conn.close()
        engine.stop()
    fds_back_to(baseline)


def test_stop_twice_and_stop_before_start_are_harmless() -> None:
    never_started = Engine(seed=1)
    never_started.stop()
    engine = Engine(seed=1)
    engine.start()
    engine.stop()
    engine.stop()
    assert refuses(engine.port)
