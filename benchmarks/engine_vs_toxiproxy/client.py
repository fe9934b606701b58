"""The load client's operations: round trips, connects, bulk transfers, concurrent
connections, timed in the client process (layout A) or in the main thread (layout B)."""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .machine import fd_count, hostport
from .plan import IO_TIMEOUT, PAYLOAD, clock

PAYLOAD_BYTES = bytes(range(256)) * (PAYLOAD // 256)


def connect(address: str, timeout: float = IO_TIMEOUT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    try:
        sock.connect(hostport(address))
    except BaseException:
        sock.close()
        raise
    return sock


def recv_exact(sock: socket.socket, view: memoryview, n: int) -> None:
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n])
        if k == 0:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        got += k


def op_rtt(address: str, n: int, warmup: int) -> list[int]:
    """Round trips of PAYLOAD bytes on one connection; ns each."""
    payload = PAYLOAD_BYTES
    buf = bytearray(PAYLOAD)
    view = memoryview(buf)
    out = [0] * n
    with connect(address) as sock:
        for _ in range(warmup):
            sock.sendall(payload)
            recv_exact(sock, view, PAYLOAD)
        for i in range(n):
            t0 = clock()
            sock.sendall(payload)
            recv_exact(sock, view, PAYLOAD)
            out[i] = clock() - t0
    if buf != payload:
        raise AssertionError("the echo returned other bytes")
    return out


def op_cycle(address: str, n: int, warmup: int) -> list[int]:
    """Connect, PAYLOAD bytes there and back, close; ns each."""
    payload = PAYLOAD_BYTES
    view = memoryview(bytearray(PAYLOAD))
    out = []
    for i in range(warmup + n):
        t0 = clock()
        sock = connect(address)
        try:
            sock.sendall(payload)
            recv_exact(sock, view, PAYLOAD)
        finally:
            sock.close()
        if i >= warmup:
            out.append(clock() - t0)
    return out


def _transfer(sock: socket.socket, total: int, chunk: memoryview) -> int:
    ack = memoryview(bytearray(1))
    t0 = clock()
    sock.sendall(struct.pack("!Q", total))
    left = total
    while left:
        part = chunk if left >= len(chunk) else chunk[:left]
        sock.sendall(part)
        left -= len(part)
    recv_exact(sock, ack, 1)
    return clock() - t0


def op_bulk(address: str, total: int, warmup: int) -> float:
    """``warmup`` then ``total`` bytes one way to the sink, on one connection; bytes/s."""
    chunk = memoryview(bytes(1 << 20))
    with connect(address, timeout=60) as sock:
        _transfer(sock, warmup, chunk)
        ns = _transfer(sock, total, chunk)
    return total / (ns / 1e9)


def op_latency(address: str, conns: int, rounds: int, period_ms: float) -> list[int]:
    """Sequential round trips on ``conns`` connections whose starts are staggered; ns each.

    Staggering keeps the answers from arriving together, so the select loop adds
    microseconds at most.  The first two round trips of each connection are dropped.
    """
    discard = 2
    payload = PAYLOAD_BYTES
    sel = selectors.DefaultSelector()
    samples: list[int] = []
    socks: list[socket.socket] = []
    try:
        pending: list[tuple[int, dict[str, Any]]] = []
        start = clock()
        for i in range(conns):
            sock = connect(address)
            sock.setblocking(False)
            socks.append(sock)
            state: dict[str, Any] = {
                "sock": sock,
                "got": 0,
                "t0": 0,
                "done": 0,
                "buf": memoryview(bytearray(PAYLOAD)),
            }
            pending.append((start + int(i * period_ms * 1e6 / conns), state))
        finished = 0
        while finished < conns:
            now = clock()
            for item in [p for p in pending if p[0] <= now]:
                pending.remove(item)
                state = item[1]
                state["t0"] = clock()
                state["sock"].send(payload)
                sel.register(state["sock"], selectors.EVENT_READ, state)
            timeout = IO_TIMEOUT
            if pending:
                timeout = max(min(at for at, _ in pending) - clock(), 0) / 1e9
            events = sel.select(timeout)
            if not events and not pending:
                raise TimeoutError("no answer within 10 s under the latency toxic")
            for key, _ in events:
                state = key.data
                sock = state["sock"]
                k = sock.recv_into(state["buf"][state["got"] :])
                if k == 0:
                    raise ConnectionError("closed under the latency toxic")
                state["got"] += k
                if state["got"] < PAYLOAD:
                    continue
                elapsed = clock() - state["t0"]
                state["done"] += 1
                state["got"] = 0
                if state["done"] > discard:
                    samples.append(elapsed)
                if state["done"] < rounds + discard:
                    state["t0"] = clock()
                    sock.send(payload)
                else:
                    sel.unregister(sock)
                    finished += 1
    finally:
        for sock in socks:
            sock.close()
        sel.close()
    return samples


def op_timer(threads: int, rounds: int, period_ms: float) -> list[int]:
    """The control for item 4: this machine's own timer error, no proxy involved.

    ``threads`` threads, started staggered over one period, each sleep ``period_ms``
    ``rounds`` times (``time.sleep``: nanosecond-resolution clock_nanosleep); the
    result is how late each sleep returned, in ns.
    """
    samples: list[int] = []
    lock = threading.Lock()

    def sleeper(offset: float) -> None:
        time.sleep(offset)
        mine = []
        for _ in range(rounds):
            t0 = clock()
            time.sleep(period_ms / 1000)
            mine.append(clock() - t0 - int(period_ms * 1_000_000))
        with lock:
            samples.extend(mine)

    workers = [
        threading.Thread(target=sleeper, args=(i * period_ms / 1000 / threads,), daemon=True)
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return samples


def op_concurrent(address: str, n: int) -> dict[str, Any]:
    """Open ``n`` connections; then one round trip on each, all at once; then close all."""
    fds_before = fd_count()
    errors: dict[str, int] = {}

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    socks: list[socket.socket] = []
    t0 = clock()
    for _ in range(n):
        try:
            socks.append(connect(address))
        except OSError as exc:
            error(f"connect: {type(exc).__name__}")
    t_connected = clock()
    sel = selectors.DefaultSelector()
    ok = 0
    try:
        got: dict[socket.socket, bytearray] = {}
        for sock in socks:
            try:
                sock.sendall(PAYLOAD_BYTES)
            except OSError as exc:
                error(f"send: {type(exc).__name__}")
                continue
            sock.setblocking(False)
            got[sock] = bytearray()
            sel.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        left = len(got)
        while left and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(PAYLOAD)
                except OSError as exc:
                    error(f"recv: {type(exc).__name__}")
                    data = None
                if not data:
                    if data is not None:
                        error("closed before the answer")
                    sel.unregister(sock)
                    left -= 1
                    continue
                got[sock] += data
                if len(got[sock]) >= PAYLOAD:
                    sel.unregister(sock)
                    left -= 1
                    if got[sock] == PAYLOAD_BYTES:
                        ok += 1
                    else:
                        error("wrong bytes")
        if left:
            errors["no answer within 30 s"] = left
        t_done = clock()
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return {
        "ok": ok,
        "errors": errors,
        "error_count": sum(errors.values()),
        "connect_ms": (t_connected - t0) / 1e6,
        "total_ms": (t_done - t0) / 1e6,
        "client_fds_before": fds_before,
        "client_fds_after": fd_count(),
    }


def op_check_many(addresses: list[str]) -> dict[str, Any]:
    """One connect + round trip + close through each address in turn."""
    ok = 0
    failures: list[str] = []
    view = memoryview(bytearray(PAYLOAD))
    t0 = clock()
    for address in addresses:
        try:
            with connect(address, timeout=5) as sock:
                sock.sendall(PAYLOAD_BYTES)
                recv_exact(sock, view, PAYLOAD)
            ok += 1
        except OSError as exc:
            failures.append(f"{address}: {type(exc).__name__}: {exc}")
    return {"ok": ok, "failures": failures[:5], "seconds": (clock() - t0) / 1e9}


def op_api_clients(address: str, clients: int, each: int) -> dict[str, Any]:
    """``clients`` threads, each on its own keep-alive connection, ask ``GET /version``
    ``each`` times at once: every request's time (ms) and the errors."""
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def one() -> None:
        mine: list[float] = []
        try:
            with connect(address) as sock:
                start.wait()
                for _ in range(each):
                    t0 = clock()
                    sock.sendall(b"GET /version HTTP/1.1\r\nHost: api\r\n\r\n")
                    _read_answer(sock)
                    mine.append((clock() - t0) / 1e6)
        except (OSError, threading.BrokenBarrierError) as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            times.extend(mine)

    workers = [threading.Thread(target=one) for _ in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"times_ms": times, "errors": errors}


def op_api_burst(address: str, n: int) -> dict[str, Any]:
    """``n`` clients connect to the API at once (non-blocking), each asks ``GET /version``
    and waits for the answer: how many were answered 200, how long it all took."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    ok = 0
    errors: dict[str, int] = {}
    t0 = clock()
    try:
        for sock in socks:
            sock.setblocking(False)
            sock.connect_ex(hostport(address))
        for sock in socks:
            try:
                sock.settimeout(IO_TIMEOUT)
                sock.sendall(b"GET /version HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
                ok += _read_answer(sock).startswith(b"HTTP/1.1 200 ")
            except OSError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    finally:
        for sock in socks:
            sock.close()
    return {"ok": ok, "errors": errors, "total_ms": (clock() - t0) / 1e6}


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer with a Content-Length (the API's), head and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer's body")
        body += chunk
    return head + b"\r\n\r\n" + body


OPS: dict[str, Callable[..., Any]] = {
    "api_clients": op_api_clients,
    "api_burst": op_api_burst,
    "rtt": op_rtt,
    "cycle": op_cycle,
    "bulk": op_bulk,
    "latency": op_latency,
    "timer": op_timer,
    "concurrent": op_concurrent,
    "check_many": op_check_many,
}


def serve_client(conn: Connection) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message == "stop":
            return
        name, args = message
        try:
            reply: tuple[str, Any] = ("ok", OPS[name](*args))
        except Exception as exc:  # report to the parent and keep serving
            reply = ("error", f"{name}: {type(exc).__name__}: {exc}")
        conn.send(reply)
