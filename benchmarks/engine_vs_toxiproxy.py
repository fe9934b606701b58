#!/usr/bin/env python3
"""The embedded engine against the real Toxiproxy 2.12, side by side, in one run.

    python benchmarks/engine_vs_toxiproxy.py            # full run, about 50 s
    python benchmarks/engine_vs_toxiproxy.py --quick    # smaller samples, about 20 s

Three paths to the same loopback upstream, driven by the same client code:

* ``direct``    - the client talks to the upstream itself (the baseline);
* ``toxiproxy`` - through a proxy of a spawned ``toxiproxy-server`` (.bin/, 2.12);
* ``engine``    - through a proxy of ``pytest_resilience.engine.Engine``, running
  in this process on its own event-loop thread, as the plugin runs it.

Processes (benchmarks/README.md explains the choices):

* the upstream - an asyncio echo server and an asyncio "sink" that discards what
  it reads - runs in a child process, so it never shares a GIL with the engine;
* the load client (plain blocking sockets, TCP_NODELAY, ``perf_counter_ns``) runs
  in another child process, so the headline figures compare the two proxies and
  nothing else: the engine has this process's GIL to itself (the main thread only
  waits on a pipe).  Items 1-3 are measured once more with the client in this
  process's main thread, sharing the GIL with the engine as a test does under the
  plugin; that table is informational;
* items 1 and 2 are measured twice: with every process on the path pinned to one
  CPU (the proxies' own cost: their CPU work and context switches) and unpinned
  (what the scheduler gives; on a VM a wake-up on the other CPU costs tens of µs,
  and the proxy whose design needs more cross-thread hand-offs pays more of them).

Every listener binds 127.0.0.1 port 0; every process and thread started here is
stopped in a ``finally``; the run ends by checking that no thread, child process or
file descriptor it made is left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import resource
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BINARY = ROOT / ".bin" / "toxiproxy-server"
PAYLOAD = 1024
"""Bytes per request (and per echoed answer) in items 1, 2, 4 and 6."""
IO_TIMEOUT = 10.0
ENGINE_THREAD = "pytest-resilience-engine"
clock = time.perf_counter_ns


# ---------------------------------------------------------------------------------
# Sizes: full and --quick
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rtt_blocks: int  # item 1: blocks; the targets' order rotates every block
    rtt_per_block: int  # round trips measured per target per block (one connection each)
    rtt_warmup: int  # round trips discarded at the start of each block
    cycle_blocks: int  # item 2, the same way
    cycle_per_block: int
    cycle_warmup: int
    bulk_bytes: int  # item 3: bytes per measured transfer
    bulk_trials: int  # measured transfers per target (median reported)
    bulk_warmup: int  # bytes sent on the same connection first
    inproc_share: float  # share of items 1-3's blocks repeated with the client in-process
    lat_ms: int  # item 4: the latency toxic's latency
    lat_conns: int  # connections, started staggered over one period
    lat_rounds: int  # measured round trips per connection
    api_calls: int  # API round trips per kind (item 5's breakdown)
    plugin_tests: int  # item 5: measured tests per backend
    plugin_warmup: int
    proxies: int  # item 6: proxies created on one server
    concurrent: int  # item 6: concurrent connections through one proxy


FULL = Plan(
    rtt_blocks=20,
    rtt_per_block=250,
    rtt_warmup=50,
    cycle_blocks=10,
    cycle_per_block=100,
    cycle_warmup=10,
    bulk_bytes=256 << 20,
    bulk_trials=3,
    bulk_warmup=16 << 20,
    inproc_share=0.5,
    lat_ms=50,
    lat_conns=8,
    lat_rounds=40,
    api_calls=20,
    plugin_tests=100,
    plugin_warmup=10,
    proxies=1000,
    concurrent=1000,
)
QUICK = Plan(
    rtt_blocks=8,
    rtt_per_block=150,
    rtt_warmup=30,
    cycle_blocks=6,
    cycle_per_block=40,
    cycle_warmup=5,
    bulk_bytes=64 << 20,
    bulk_trials=2,
    bulk_warmup=8 << 20,
    inproc_share=0.5,
    lat_ms=50,
    lat_conns=8,
    lat_rounds=12,
    api_calls=6,
    plugin_tests=30,
    plugin_warmup=5,
    proxies=1000,
    concurrent=1000,
)


# ---------------------------------------------------------------------------------
# Small helpers (every process)
# ---------------------------------------------------------------------------------


def raise_nofile() -> None:
    """1,000 concurrent connections need ~3,000 descriptors in one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: list[float]) -> float:
    return pct(values, 50)


def hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def task_ids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def cpu_ns(pid: int, tids: list[int] | None = None) -> int:
    """CPU time (ns, from /proc/.../schedstat) of a process's threads, or of some of them."""
    total = 0
    for tid in tids if tids is not None else task_ids(pid):
        with (
            contextlib.suppress(OSError, ValueError, IndexError),
            open(f"/proc/{pid}/task/{tid}/schedstat") as f,
        ):
            total += int(f.read().split()[0])
    return total


def steal_and_total_ticks() -> tuple[int, int]:
    """The machine's stolen CPU ticks (time the hypervisor ran someone else) and all ticks."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def pin(pids: list[int], cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of ``pids`` (new threads inherit it)."""
    for pid in pids:
        for tid in task_ids(pid):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


# ---------------------------------------------------------------------------------
# The upstream process: an echo server and a sink on one asyncio loop
# ---------------------------------------------------------------------------------


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close


class _Sink(asyncio.BufferedProtocol):
    """Reads an 8-byte length N, discards N bytes, answers one byte; repeats.

    The one-byte answer tells the client every byte went through the proxy
    (Toxiproxy carries no half-close, so "shut down writing, wait for the close"
    would not work).  Reads land in one preallocated buffer: no allocation per read.
    """

    def __init__(self) -> None:
        self.buffer = memoryview(bytearray(1 << 20))
        self.header = b""
        self.expected = -1
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        view = self.buffer[:nbytes]
        while view:
            if self.expected < 0:
                need = 8 - len(self.header)
                self.header += bytes(view[:need])
                view = view[need:]
                if len(self.header) < 8:
                    continue
                (self.expected,) = struct.unpack("!Q", self.header)
                self.got = 0
            take = min(len(view), self.expected - self.got)
            self.got += take
            view = view[take:]
            if self.got == self.expected:
                self.transport.write(b"k")
                self.expected, self.header = -1, b""

    def eof_received(self) -> bool:
        return False


def _upstream_main(conn: Connection) -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        echo = await loop.create_server(_Echo, "127.0.0.1", 0, backlog=4096)
        sink = await loop.create_server(_Sink, "127.0.0.1", 0, backlog=4096)
        conn.send([f"{h}:{p}" for h, p in (s.sockets[0].getsockname()[:2] for s in (echo, sink))])
        stop = loop.create_future()

        # A message or EOF on the pipe (the parent said stop, or is gone) ends the server.
        def wake() -> None:
            if not stop.done():
                stop.set_result(None)

        loop.add_reader(conn.fileno(), wake)
        try:
            await stop
        finally:
            loop.remove_reader(conn.fileno())
            echo.close()
            sink.close()

    asyncio.run(serve())


# ---------------------------------------------------------------------------------
# Client operations (in the client process, or in the main thread)
# ---------------------------------------------------------------------------------

_PAYLOAD_BYTES = bytes(range(256)) * (PAYLOAD // 256)


def _connect(address: str, timeout: float = IO_TIMEOUT) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    try:
        sock.connect(hostport(address))
    except BaseException:
        sock.close()
        raise
    return sock


def _recv_exact(sock: socket.socket, view: memoryview, n: int) -> None:
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n])
        if k == 0:
            raise ConnectionError(f"closed after {got} of {n} bytes")
        got += k


def op_rtt(address: str, n: int, warmup: int) -> list[int]:
    """Round trips of PAYLOAD bytes on one connection; ns each."""
    payload = _PAYLOAD_BYTES
    buf = bytearray(PAYLOAD)
    view = memoryview(buf)
    out = [0] * n
    with _connect(address) as sock:
        for _ in range(warmup):
            sock.sendall(payload)
            _recv_exact(sock, view, PAYLOAD)
        for i in range(n):
            t0 = clock()
            sock.sendall(payload)
            _recv_exact(sock, view, PAYLOAD)
            out[i] = clock() - t0
    if buf != payload:
        raise AssertionError("the echo returned other bytes")
    return out


def op_cycle(address: str, n: int, warmup: int) -> list[int]:
    """Connect, PAYLOAD bytes there and back, close; ns each."""
    payload = _PAYLOAD_BYTES
    view = memoryview(bytearray(PAYLOAD))
    out = []
    for i in range(warmup + n):
        t0 = clock()
        sock = _connect(address)
        try:
            sock.sendall(payload)
            _recv_exact(sock, view, PAYLOAD)
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
    _recv_exact(sock, ack, 1)
    return clock() - t0


def op_bulk(address: str, total: int, warmup: int) -> float:
    """``warmup`` then ``total`` bytes one way to the sink, on one connection; bytes/s."""
    chunk = memoryview(bytes(1 << 20))
    with _connect(address, timeout=60) as sock:
        _transfer(sock, warmup, chunk)
        ns = _transfer(sock, total, chunk)
    return total / (ns / 1e9)


def op_latency(address: str, conns: int, rounds: int, period_ms: float) -> list[int]:
    """Sequential round trips on ``conns`` connections whose starts are staggered; ns each.

    Staggering keeps the answers from arriving together, so the select loop adds
    microseconds at most.  The first two round trips of each connection are dropped.
    """
    discard = 2
    payload = _PAYLOAD_BYTES
    sel = selectors.DefaultSelector()
    samples: list[int] = []
    socks: list[socket.socket] = []
    try:
        pending: list[tuple[int, dict[str, Any]]] = []
        start = clock()
        for i in range(conns):
            sock = _connect(address)
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
            socks.append(_connect(address))
        except OSError as exc:
            error(f"connect: {type(exc).__name__}")
    t_connected = clock()
    sel = selectors.DefaultSelector()
    ok = 0
    try:
        got: dict[socket.socket, bytearray] = {}
        for sock in socks:
            try:
                sock.sendall(_PAYLOAD_BYTES)
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
                    if got[sock] == _PAYLOAD_BYTES:
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
            with _connect(address, timeout=5) as sock:
                sock.sendall(_PAYLOAD_BYTES)
                _recv_exact(sock, view, PAYLOAD)
            ok += 1
        except OSError as exc:
            failures.append(f"{address}: {type(exc).__name__}: {exc}")
    return {"ok": ok, "failures": failures[:5], "seconds": (clock() - t0) / 1e9}


OPS: dict[str, Callable[..., Any]] = {
    "rtt": op_rtt,
    "cycle": op_cycle,
    "bulk": op_bulk,
    "latency": op_latency,
    "timer": op_timer,
    "concurrent": op_concurrent,
    "check_many": op_check_many,
}


def _client_main(conn: Connection) -> None:
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


# ---------------------------------------------------------------------------------
# Child processes (plain subprocesses: no multiprocessing helper processes to reap)
# ---------------------------------------------------------------------------------


class Child:
    """This script run as ``--role ROLE`` in a child process, a pipe to talk to it."""

    def __init__(self, role: str) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--role",
                    role,
                    "--fd",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.pid = self.process.pid

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


class Upstream(Child):
    def __init__(self) -> None:
        super().__init__("upstream")
        if not self.conn.poll(30):
            self.close()
            raise RuntimeError("the upstream process did not start within 30 s")
        self.echo, self.sink = self.conn.recv()


class RemoteClient(Child):
    """The load client in its own process (layout A)."""

    def __init__(self) -> None:
        super().__init__("client")

    def call(self, name: str, *args: Any, timeout: float = 120) -> Any:
        self.conn.send((name, args))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client operation {name} took over {timeout} s")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(value)
        return value


class LocalClient:
    """The load client in this process's main thread (layout B: the plugin's)."""

    def call(self, name: str, *args: Any, timeout: float = 120) -> Any:
        return OPS[name](*args)


# ---------------------------------------------------------------------------------
# --floor: a minimal relay, the least any user-space proxy adds (items 1 and 2)
# ---------------------------------------------------------------------------------

FLOOR_GO = """package main

// The least a user-space TCP proxy can do: accept, dial, io.Copy both ways.
import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			u, err := net.Dial("tcp", os.Args[1])
			if err != nil {
				c.Close()
				return
			}
			go func() { io.Copy(u, c); u.Close(); c.Close() }()
			io.Copy(c, u)
			c.Close()
			u.Close()
		}(c)
	}
}
"""


class FloorRelay:
    """FLOOR_GO built with the local Go toolchain (standard library only) and started."""

    def __init__(self, upstream: str, workdir: Path) -> None:
        (workdir / "main.go").write_text(FLOOR_GO)
        (workdir / "go.mod").write_text("module floorrelay\n\ngo 1.21\n")
        binary = workdir / "floor-relay"
        subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=workdir,
            check=True,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
            timeout=120,
        )
        self.process = subprocess.Popen([str(binary), upstream], stdout=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# ---------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------


class Results(dict[str, Any]):
    """Every sample and figure of the run, by key (what ``--json`` writes)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key, default)

    def add(self, key: str, value: Any) -> None:
        self.setdefault(key, []).append(value)

    def extend(self, key: str, values: list[Any]) -> None:
        self.setdefault(key, []).extend(values)


@dataclass
class Target:
    name: str
    echo: str
    sink: str
    cpu: Callable[[], int] | None = None
    """The proxy's CPU time so far (ns): the engine's loop thread, Toxiproxy's process."""


def rotations(items: list[Target], blocks: int) -> Iterator[list[Target]]:
    """The targets in a different order each block, so drift hits all of them alike."""
    for b in range(blocks):
        k = b % len(items)
        yield items[k:] + items[:k]


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _timed(
    res: Results, key: str, target: Target, ops: float, client: Any, op: str, *args: Any
) -> Any:
    """``client.call(op, *args)``, recording the proxy's CPU time per operation under ``key``."""
    before = target.cpu() if target.cpu else 0
    out = client.call(op, *args)
    if target.cpu:
        res.add(f"{key}:cpu", ((target.cpu() - before), ops))
    return out


def measure_latency_paths(
    client: Any, targets: list[Target], plan: Plan, res: Results, tag: str, share: float
) -> None:
    """Items 1 and 2 for every target, interleaved; keys ``{tag}:{item}:{target}``."""
    blocks = max(1, round(plan.rtt_blocks * share))
    log(f"[{tag}] 1: {blocks} x {plan.rtt_per_block} round trips on one connection, per target")
    for order in rotations(targets, blocks):
        for t in order:
            key = f"{tag}:rtt:{t.name}"
            ops = plan.rtt_per_block + plan.rtt_warmup
            samples = _timed(
                res, key, t, ops, client, "rtt", t.echo, plan.rtt_per_block, plan.rtt_warmup
            )
            res.extend(key, samples)
    blocks = max(1, round(plan.cycle_blocks * share))
    log(f"[{tag}] 2: {blocks} x {plan.cycle_per_block} connect + echo + close, per target")
    for order in rotations(targets, blocks):
        for t in order:
            key = f"{tag}:cycle:{t.name}"
            ops = plan.cycle_per_block + plan.cycle_warmup
            samples = _timed(
                res, key, t, ops, client, "cycle", t.echo, plan.cycle_per_block, plan.cycle_warmup
            )
            res.extend(key, samples)


def measure_bulk(
    client: Any, targets: list[Target], plan: Plan, res: Results, tag: str, trials: int
) -> None:
    """Item 3: one-way bulk transfers to the sink, interleaved."""
    log(f"[{tag}] 3: {trials} x {plan.bulk_bytes >> 20} MiB one way to a sink, per target")
    for order in rotations(targets, trials):
        for t in order:
            key = f"{tag}:bulk:{t.name}"
            mib = (plan.bulk_bytes + plan.bulk_warmup) / (1 << 20)
            rate = _timed(
                res, key, t, mib, client, "bulk", t.sink, plan.bulk_bytes, plan.bulk_warmup
            )
            res.add(key, rate)


def wait_for(predicate: Callable[[], bool], seconds: float) -> float:
    """Poll until ``predicate()``; the seconds that took (``seconds`` if it never held)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.01)
    return seconds


def measure_concurrent(
    client: Any, name: str, address: str, n: int, fd_of: Callable[[], int] | None, res: Results
) -> None:
    """Item 6: ``n`` concurrent connections with one round trip each; the proxy's fds after."""
    before = fd_of() if fd_of is not None else None
    out = client.call("concurrent", address, n)
    if fd_of is not None and before is not None:
        out["settle_s"] = wait_for(lambda: fd_of() <= before, 5.0)
        out["proxy_fds_before"] = before
        out["proxy_fds_after"] = fd_of()
    res[f"concurrent:{name}"] = out


def measure_many_proxies(
    client: Any, name: str, api: Any, upstream: str, n: int, fd_of: Callable[[], int], res: Results
) -> None:
    """Item 6: create ``n`` proxies through the API, a round trip through each, delete them."""
    fds_before = fd_of()
    names = [f"bench-many-{i}" for i in range(n)]
    listens: list[str] = []
    t0 = clock()
    try:
        for proxy in names:
            listens.append(api.create_proxy(proxy, upstream, "127.0.0.1:0")["listen"])
        create_s = (clock() - t0) / 1e9
        fds_full = fd_of()
        check = client.call("check_many", listens, timeout=300)
    finally:
        t1 = clock()
        for proxy in names[: len(listens)]:
            with contextlib.suppress(Exception):
                api.delete_proxy(proxy)
        delete_s = (clock() - t1) / 1e9
    wait_for(lambda: fd_of() <= fds_before, 5.0)
    res[f"many:{name}"] = {
        "created": len(listens),
        "create_s": create_s,
        "answered": check["ok"],
        "failures": check["failures"],
        "check_s": check["seconds"],
        "delete_s": delete_s,
        "fds_before": fds_before,
        "fds_with_all": fds_full,
        "fds_after": fd_of(),
    }


def measure_latency_toxic(
    client: Any, name: str, api: Any, proxy: str, address: str, plan: Plan, res: Results
) -> None:
    """Item 4: a downstream latency toxic, jitter 0; error = round trip - configured."""
    api.add_toxic(
        proxy,
        name="bench_latency",
        type="latency",
        stream="downstream",
        toxicity=1.0,
        attributes={"latency": plan.lat_ms, "jitter": 0},
    )
    try:
        samples = client.call("latency", address, plan.lat_conns, plan.lat_rounds, plan.lat_ms)
    finally:
        api.delete_toxic(proxy, "bench_latency")
    res[f"latency:{name}"] = [(s - plan.lat_ms * 1_000_000) / 1e6 for s in samples]


def measure_api(name: str, url: str, version: Callable[[], str], n: int, res: Results) -> None:
    """Item 5's breakdown: one GET /version through the adapter, and with bare http.client."""
    host, port = hostport(url.removeprefix("http://"))

    def fresh() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/version")
        conn.getresponse().read()
        conn.close()

    keep = http.client.HTTPConnection(host, port, timeout=5)

    def kept() -> None:
        keep.request("GET", "/version")
        keep.getresponse().read()

    try:
        for kind, call in (("adapter", version), ("fresh", fresh), ("keepalive", kept)):
            for _ in range(3):
                call()
            times = []
            for _ in range(n):
                t0 = clock()
                call()
                times.append((clock() - t0) / 1e6)
            res[f"api:{name}:{kind}"] = times
    finally:
        keep.close()


def measure_plugin(choice: str, binary: str, echo: str, plan: Plan, res: Results) -> None:
    """Item 5: one test's cost to the plugin: a service, one fault applied and healed, close."""
    from pytest_resilience.session import ResilienceSession

    phases = ("new_test", "tcp_service", "latency", "heal", "close")
    session = ResilienceSession(choice=choice, binary=binary, seed=1)
    try:
        # The first service starts the backend (a spawn, or the engine): a session cost.
        first = session.new_test("bench::warm-start")
        service = first.tcp_service("echo", upstream=echo)
        with _connect(service.address) as sock:  # the service works end to end
            sock.sendall(_PAYLOAD_BYTES)
            _recv_exact(sock, memoryview(bytearray(PAYLOAD)), PAYLOAD)
        first.close()
        totals: list[float] = []
        split: dict[str, list[float]] = {p: [] for p in phases}
        for i in range(plan.plugin_warmup + plan.plugin_tests):
            marks = [clock()]
            test = session.new_test(f"bench::test_{i}")
            marks.append(clock())
            service = test.tcp_service("echo", upstream=echo)
            marks.append(clock())
            fault = service.latency(10)
            marks.append(clock())
            fault.heal()
            marks.append(clock())
            test.close()
            marks.append(clock())
            if i >= plan.plugin_warmup:
                totals.append((marks[-1] - marks[0]) / 1e6)
                for k, phase in enumerate(phases):
                    split[phase].append((marks[k + 1] - marks[k]) / 1e6)
        res[f"plugin:{choice}"] = {"totals": totals, "split": split}
    finally:
        session.close()


# ---------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------

BACKENDS = ("toxiproxy", "engine")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:,.{digits}f}"


def ratio(engine: float | None, toxiproxy: float | None) -> float | None:
    if engine is None or toxiproxy is None or toxiproxy != toxiproxy or toxiproxy <= 0:
        return None
    return engine / toxiproxy


def verdict(ok: bool | None, final: bool = True) -> str:
    if ok is None:
        return "-"
    word = "PASS" if ok else "FAIL"
    return f"**{word}**" if final else f"{word} (info)"


def cpu_per_op(res: Results, key: str) -> float | None:
    """Proxy CPU µs per operation (or per MiB) over every call recorded under ``key``."""
    pairs = res.get(f"{key}:cpu")
    if not pairs:
        return None
    return float(sum(ns for ns, _ in pairs) / sum(ops for _, ops in pairs) / 1e3)


def latency_rows(res: Results, tag: str, where: str, final: bool) -> list[list[str]]:
    rows: list[list[str]] = []
    specs = (
        ("1", "rtt", "round trip 1 KiB, one connection", 0.5, (50, 99)),
        ("2", "cycle", "connect + 1 KiB echo + close", 1.2, (50,)),
    )
    for item, kind, label, limit, gated in specs:
        us = {n: [v / 1e3 for v in res.get(f"{tag}:{kind}:{n}", [])] for n in ("direct", *BACKENDS)}
        for q in (50, 99):
            d, t, e = (pct(us[n], q) for n in ("direct", *BACKENDS))
            ta, ea = t - d, e - d
            r = ratio(ea, ta)
            is_gated = q in gated
            ok = (r is not None and ea <= limit * ta) if is_gated else None
            rows.append(
                [
                    item,
                    f"{label}, p{q} (µs) — {where}",
                    fmt(d),
                    f"{fmt(t)} (+{fmt(ta)})",
                    f"{fmt(e)} (+{fmt(ea)})",
                    fmt(r, 2),
                    f"≤ {limit:.2f}" if is_gated else "(info)",
                    verdict(ok, final),
                ]
            )
        ct, ce = (cpu_per_op(res, f"{tag}:{kind}:{n}") for n in BACKENDS)
        unit = "round trip" if kind == "rtt" else "connection"
        rows.append(
            [
                item,
                f"proxy CPU per {unit} (µs) — {where}",
                "",
                fmt(ct),
                fmt(ce),
                fmt(ratio(ce, ct), 2),
                "(info)",
                "",
            ]
        )
    return rows


def floor_rows(res: Results, tag: str, where: str) -> list[list[str]]:
    """Items 1-2's added figures for the minimal relay, next to the two proxies'."""
    rows: list[list[str]] = []
    for item, kind, label in (
        ("1", "rtt", "round trip 1 KiB"),
        ("2", "cycle", "connect + echo + close"),
    ):
        us = {
            n: [v / 1e3 for v in res.get(f"{tag}:{kind}:{n}", [])]
            for n in ("direct", "floor", *BACKENDS)
        }
        for q in (50, 99):
            d, f, t, e = (pct(us[n], q) for n in ("direct", "floor", *BACKENDS))
            rows.append(
                [
                    item,
                    f"{label}, **added** p{q} (µs) — {where}",
                    fmt(f - d),
                    fmt(t - d),
                    fmt(e - d),
                    fmt(ratio(t - d, f - d), 2),
                    fmt(ratio(e - d, f - d), 2),
                ]
            )
        cf, ct, ce = (cpu_per_op(res, f"{tag}:{kind}:{n}") for n in ("floor", *BACKENDS))
        rows.append(
            [
                item,
                f"proxy CPU per op (µs) — {where}",
                fmt(cf),
                fmt(ct),
                fmt(ce),
                fmt(ratio(ct, cf), 2),
                fmt(ratio(ce, cf), 2),
            ]
        )
    return rows


def bulk_rows(res: Results, tag: str, final: bool) -> list[list[str]]:
    mib = {
        n: median([v / (1 << 20) for v in res.get(f"{tag}:bulk:{n}", [])])
        for n in ("direct", *BACKENDS)
    }
    r = ratio(mib["engine"], mib["toxiproxy"])
    ct, ce = (cpu_per_op(res, f"{tag}:bulk:{n}") for n in BACKENDS)
    return [
        [
            "3",
            "bulk, one way to a sink, median (MiB/s)",
            fmt(mib["direct"], 0),
            fmt(mib["toxiproxy"], 0),
            fmt(mib["engine"], 0),
            fmt(r, 2),
            "≥ 1.50",
            verdict(r is not None and r >= 1.5, final),
        ],
        [
            "3",
            "proxy CPU per MiB (µs)",
            "",
            fmt(ct, 0),
            fmt(ce, 0),
            fmt(ratio(ce, ct), 2),
            "(info)",
            "",
        ],
    ]


def other_rows(res: Results, plan: Plan) -> list[list[str]]:
    rows: list[list[str]] = []
    lat = {n: res.get(f"latency:{n}", []) for n in ("control", *BACKENDS)}
    for q in (50, 99):
        c, t, e = (pct(lat[n], q) for n in ("control", *BACKENDS))
        rows.append(
            [
                "4",
                f"latency {plan.lat_ms} ms: error = observed - configured, p{q} (ms)",
                f"sleep {fmt(c, 3)}",
                fmt(t, 3),
                fmt(e, 3),
                "",
                "",
                "",
            ]
        )
    ca, ta, ea = (pct([abs(v) for v in lat[n]], 99) for n in ("control", *BACKENDS))
    rows.append(
        [
            "4",
            f"latency {plan.lat_ms} ms: **p99 of abs(error)** (ms), {len(lat['engine'])} round trips",
            f"sleep {fmt(ca, 3)}",
            fmt(ta, 3),
            fmt(ea, 3),
            fmt(ratio(ea, ta), 2),
            "≤ 2 each",
            f"tp {verdict(ta <= 2)} / eng {verdict(ea <= 2)}",
        ]
    )
    plug = {n: res.get(f"plugin:{c}") for n, c in (("toxiproxy", "spawn"), ("engine", "embedded"))}
    tp_cost, en_cost = (median(plug[n]["totals"]) if plug[n] else None for n in BACKENDS)
    rows.append(
        [
            "5",
            "**plugin cost per test**, median (ms)",
            "",
            fmt(tp_cost, 2),
            fmt(en_cost, 2),
            fmt(ratio(en_cost, tp_cost), 2),
            "tp ≤ 15, eng ≤ 5",
            f"tp {verdict(tp_cost is not None and tp_cost <= 15)} / "
            f"eng {verdict(en_cost is not None and en_cost <= 5)}",
        ]
    )
    many = {n: res.get(f"many:{n}") for n in BACKENDS}
    if all(many.values()):
        mt, me = many["toxiproxy"], many["engine"]
        rows.append(
            [
                "6",
                f"create {plan.proxies:,} proxies through the API (s)",
                "",
                fmt(mt["create_s"], 2),
                fmt(me["create_s"], 2),
                fmt(ratio(me["create_s"], mt["create_s"]), 2),
                "",
                "",
            ]
        )
        rows.append(
            [
                "6",
                f"of {plan.proxies:,} proxies, answering a round trip",
                "",
                f"{mt['answered']:,}",
                f"{me['answered']:,}",
                "",
                "all",
                f"tp {verdict(mt['answered'] == plan.proxies)} / eng {verdict(me['answered'] == plan.proxies)}",
            ]
        )
        rows.append(
            [
                "6",
                f"delete {plan.proxies:,} proxies (s)",
                "",
                fmt(mt["delete_s"], 2),
                fmt(me["delete_s"], 2),
                fmt(ratio(me["delete_s"], mt["delete_s"]), 2),
                "",
                "",
            ]
        )
        lt, le = (m["fds_after"] - m["fds_before"] for m in (mt, me))
        rows.append(
            [
                "6",
                "proxy process's fds after deleting them, vs. before",
                "",
                f"{lt:+d}",
                f"{le:+d}",
                "",
                "0",
                f"tp {verdict(lt <= 0)} / eng {verdict(le <= 0)}",
            ]
        )
    conc = {n: res.get(f"concurrent:{n}") for n in ("direct", *BACKENDS)}
    if all(conc.values()):
        cd, ct, ce = (conc[n] for n in ("direct", *BACKENDS))
        rows.append(
            [
                "6",
                f"{plan.concurrent:,} concurrent connections, 1 round trip each: errors",
                str(cd["error_count"]),
                str(ct["error_count"]),
                str(ce["error_count"]),
                "",
                "0",
                f"tp {verdict(ct['error_count'] == 0)} / eng {verdict(ce['error_count'] == 0)}",
            ]
        )
        rows.append(
            [
                "6",
                f"{plan.concurrent:,} concurrent: connect all, then every round trip (ms)",
                fmt(cd["total_ms"], 0),
                fmt(ct["total_ms"], 0),
                fmt(ce["total_ms"], 0),
                fmt(ratio(ce["total_ms"], ct["total_ms"]), 2),
                "",
                "",
            ]
        )
        lt, le = (c["proxy_fds_after"] - c["proxy_fds_before"] for c in (ct, ce))
        lc = max(c["client_fds_after"] - c["client_fds_before"] for c in (cd, ct, ce))
        rows.append(
            [
                "6",
                f"fds after the {plan.concurrent:,} closed, vs. before (proxy process; client)",
                f"client {lc:+d}",
                f"{lt:+d}",
                f"{le:+d}",
                "",
                "0",
                f"tp {verdict(lt <= 0)} / eng {verdict(le <= 0 and lc <= 0)}",
            ]
        )
    return rows


HEAD = [
    "#",
    "measure",
    "direct",
    "toxiproxy 2.12",
    "engine",
    "engine / toxiproxy",
    "target",
    "result",
]


def table(rows: list[list[str]], head: list[str] = HEAD) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def item5_tables(res: Results) -> str:
    phases = ("new_test", "tcp_service", "latency", "heal", "close")
    rows = []
    for name, choice in (("toxiproxy 2.12 (spawn)", "spawn"), ("engine (embedded)", "embedded")):
        data = res.get(f"plugin:{choice}")
        if data:
            rows.append(
                [
                    name,
                    *(fmt(median(data["split"][p]), 2) for p in phases),
                    fmt(median(data["totals"]), 2),
                    fmt(pct(data["totals"], 90), 2),
                ]
            )
    first = table(
        rows, ["backend", *(f"{p} (ms)" for p in phases), "total p50 (ms)", "total p90 (ms)"]
    )
    rows = []
    for name, key in (("toxiproxy 2.12", "toxiproxy"), ("engine", "engine")):
        cells = [
            fmt(median(res.get(f"api:{key}:{kind}", [])), 2)
            for kind in ("adapter", "fresh", "keepalive")
        ]
        rows.append([name, *cells])
    second = table(
        rows,
        [
            "API: GET /version, median (ms)",
            "the plugin's adapter (requests, new connection)",
            "http.client, new connection",
            "http.client, keep-alive",
        ],
    )
    return first + "\n\n" + second


# ---------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    binary = str(Path(args.toxiproxy_bin).resolve())
    if not os.access(binary, os.X_OK):
        print(
            f"no toxiproxy-server at {binary}; build it with `bash .ci/install-toxiproxy`",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(ROOT))
    from pytest_resilience.engine import Engine
    from pytest_resilience.toxiproxy.client import ToxiproxyClient
    from pytest_resilience.toxiproxy.spawn import SpawnedToxiproxy

    raise_nofile()
    started = time.monotonic()
    threads_at_start = set(threading.enumerate())
    fds_at_start = fd_count()
    steal_at_start = steal_and_total_ticks()
    all_cpus = os.sched_getaffinity(0)
    one_cpu = {min(all_cpus)}
    me = os.getpid()
    res = Results()
    tp_version = "?"
    children: list[Child] = []
    with contextlib.ExitStack() as stack:
        stack.callback(pin, [me], all_cpus)  # undo any pinning, whatever happens
        upstream = Upstream()
        children.append(upstream)
        stack.callback(upstream.close)
        remote = RemoteClient()
        children.append(remote)
        stack.callback(remote.close)
        log(
            f"upstream pid {upstream.pid}: echo {upstream.echo}, sink {upstream.sink}; client pid {remote.pid}"
        )

        # -- both servers up, side by side ----------------------------------------
        server = SpawnedToxiproxy(binary)
        stack.callback(server.stop)
        tp = server.start()
        tp_version = tp.version()
        tp_pid = server.pid
        assert tp_pid is not None
        engine = Engine("127.0.0.1", 0, seed=0)
        stack.callback(engine.stop)
        en = ToxiproxyClient(engine.start())
        loop_tid = next(t.native_id for t in threading.enumerate() if t.name == ENGINE_THREAD)
        assert loop_tid is not None
        targets = [Target("direct", upstream.echo, upstream.sink)]
        for name, api, cpu in (
            ("toxiproxy", tp, lambda: cpu_ns(tp_pid)),
            ("engine", en, lambda: cpu_ns(me, [loop_tid])),
        ):
            made = {
                k: api.create_proxy(f"bench-{k}", getattr(upstream, k), "127.0.0.1:0")["listen"]
                for k in ("echo", "sink")
            }
            targets.append(Target(name, made["echo"], made["sink"], cpu))
        log(
            f"toxiproxy {tp_version} pid {tp_pid} at {tp.url}; engine at {en.url} (loop thread {loop_tid})"
        )
        path_pids = [upstream.pid, remote.pid, tp_pid, me]
        latency_targets = list(targets)
        if args.floor:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-floor-")))
            log("--floor: building the minimal Go relay")
            relay = FloorRelay(upstream.echo, workdir)
            stack.callback(relay.close)
            latency_targets.append(Target("floor", relay.address, "", lambda: cpu_ns(relay.pid)))
            path_pids.append(relay.pid)

        # -- items 1-2: pinned to one CPU, then free; item 3 free -------------------
        pin(path_pids, one_cpu)
        try:
            measure_latency_paths(remote, latency_targets, plan, res, "A1", 1.0)
        finally:
            pin(path_pids, all_cpus)
        measure_latency_paths(remote, latency_targets, plan, res, "A", 1.0)
        measure_bulk(remote, targets, plan, res, "A", plan.bulk_trials)
        # The same with the client in this thread (the plugin's layout).
        local = LocalClient()
        measure_latency_paths(local, targets, plan, res, "B", plan.inproc_share)
        measure_bulk(
            local, targets, plan, res, "B", max(1, round(plan.bulk_trials * plan.inproc_share))
        )

        # -- item 4 -----------------------------------------------------------------
        log(
            f"4: latency toxic {plan.lat_ms} ms, {plan.lat_conns} x {plan.lat_rounds} round trips per backend"
        )
        control = remote.call("timer", plan.lat_conns, plan.lat_rounds, plan.lat_ms)
        res["latency:control"] = [ns / 1e6 for ns in control]
        for t, api in zip(targets[1:], (tp, en), strict=True):
            measure_latency_toxic(remote, t.name, api, "bench-echo", t.echo, plan, res)

        # -- item 6 -----------------------------------------------------------------
        log(f"6: {plan.concurrent} concurrent connections through one proxy, per target")

        def tp_fds() -> int:
            return fd_count(tp_pid)

        fds_of: dict[str, Callable[[], int] | None] = {
            "direct": None,
            "toxiproxy": tp_fds,
            "engine": fd_count,
        }
        for t in targets:
            measure_concurrent(remote, t.name, t.echo, plan.concurrent, fds_of[t.name], res)
        log(f"6: {plan.proxies} proxies on one server, a round trip through each, then deleted")
        measure_many_proxies(remote, "toxiproxy", tp, upstream.echo, plan.proxies, tp_fds, res)
        measure_many_proxies(remote, "engine", en, upstream.echo, plan.proxies, fd_count, res)

        # -- item 5's API breakdown, then the standalone servers go ------------------
        measure_api("toxiproxy", tp.url, tp.version, plan.api_calls, res)
        measure_api("engine", en.url, en.version, plan.api_calls, res)
        engine.stop()
        server.stop()

        # -- item 5: the plugin, on each backend --------------------------------------
        log(f"5: plugin cost, {plan.plugin_tests} tests per backend")
        measure_plugin("spawn", binary, upstream.echo, plan, res)
        measure_plugin("embedded", binary, upstream.echo, plan, res)

    elapsed = time.monotonic() - started
    steal_now = steal_and_total_ticks()
    steal = (steal_now[0] - steal_at_start[0]) / max(steal_now[1] - steal_at_start[1], 1)
    leftover_threads = [t.name for t in threading.enumerate() if t not in threads_at_start]
    leftover_children = [c.pid for c in children if c.process.poll() is None]
    fds_leaked = fd_count() - fds_at_start

    print(
        f"\n## Embedded engine vs Toxiproxy {tp_version} ({'quick' if args.quick else 'full'} run, {elapsed:.1f} s)\n"
    )
    print(
        f"Python {platform.python_version()}, {len(all_cpus)} CPUs, {platform.platform()}; "
        f"CPU time stolen by the hypervisor during the run: {steal:.1%}. "
        "Upstream (asyncio echo + sink) in its own process; client: blocking sockets, TCP_NODELAY.\n"
        "Items 1-2 cells: absolute (+added over direct, same percentile); the ratio is of the added figures.\n"
    )
    print("### Layout A: client in a separate process (the verdicts)\n")
    rows = latency_rows(res, "A1", "all on one CPU", True) + latency_rows(
        res, "A", "unpinned", True
    )
    rows.sort(key=lambda r: r[0])
    print(table(rows + bulk_rows(res, "A", True) + other_rows(res, plan)))
    print(
        f"\nItem 1: {len(res.get('A:rtt:engine', []))} round trips per target and placement; item 2: "
        f"{len(res.get('A:cycle:engine', []))} connections; item 3: {plan.bulk_bytes >> 20} MiB per transfer, "
        f"{plan.bulk_trials} transfers per target. Proxy CPU: the engine's loop thread, all of "
        "toxiproxy-server's threads (/proc schedstat), warm-up included.\n"
    )
    if args.floor:
        print("### Floor: a minimal relay (Go, accept + dial + io.Copy; --floor)\n")
        floor_head = [
            "#",
            "measure",
            "minimal relay",
            "toxiproxy 2.12",
            "engine",
            "toxiproxy / relay",
            "engine / relay",
        ]
        print(
            table(
                floor_rows(res, "A1", "all on one CPU") + floor_rows(res, "A", "unpinned"),
                floor_head,
            )
        )
        print()
    print(
        "### Layout B: client in the engine's process, main thread (how the plugin runs; informational)\n"
    )
    print(table(latency_rows(res, "B", "unpinned", False) + bulk_rows(res, "B", False)))
    print("\n### Item 5 in parts\n")
    print(item5_tables(res))
    print(
        f"\nCleanup: threads left: {leftover_threads or 'none'}; child processes alive: "
        f"{leftover_children or 'none'}; this process's fds vs. start: {fds_leaked:+d}."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"Raw samples: {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (about 20 s)")
    parser.add_argument(
        "--toxiproxy-bin",
        default=str(DEFAULT_BINARY),
        help="the real toxiproxy-server to spawn (default: .bin/toxiproxy-server)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every raw sample to PATH")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure items 1-2 through a minimal Go relay (needs `go`), the least any proxy adds",
    )
    parser.add_argument("--role", choices=("client", "upstream"), help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        raise_nofile()
        conn = Connection(args.fd)
        try:
            (_client_main if args.role == "client" else _upstream_main)(conn)
        except KeyboardInterrupt:
            pass
        finally:
            conn.close()
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
