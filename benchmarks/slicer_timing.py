"""How long a slicer toxic takes to pass 64 KiB, on the real Toxiproxy and on the engine
(each as its own process), side by side in one run, as a ratio.

Each server gets one proxy to a loopback upstream that sends 64 KiB and closes, with a
downstream slicer (``average_size``, ``size_variation``, ``delay`` µs); a client reads
the whole answer ``--rounds`` times, the servers taking turns.  Both cut a chunk the same
way (halving, ``engine/toxics.py`` ``Slicer``); what differs is how long a wait of
``delay`` µs takes: the engine's loop waits to well under a millisecond
(``runtime/loop.py`` ``_FineSelector``), where Go's ``time.Sleep`` under 1 ms took about
1 ms here (Go 1.26; the README's engine section has the figures).

    python -m benchmarks.slicer_timing                     # average 100, delay 100 µs
    python -m benchmarks.slicer_timing --average 1024 --variation 256

Needs ``.bin/toxiproxy-server`` (``bash .ci/install-toxiproxy``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = os.urandom(64 * 1024)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _call(base: str, method: str, path: str, body: object = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return bytes(answer.read())


def _wait_up(base: str, deadline: float) -> None:
    while True:
        try:
            _call(base, "GET", "/version")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{base} did not answer within 10 s") from None
            time.sleep(0.05)


def _upstream(stack: ExitStack) -> int:
    """A loopback server that sends :data:`PAYLOAD` to each connection and closes it."""
    server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the run is over
                return
            with conn:
                conn.sendall(PAYLOAD)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    stack.callback(thread.join, 5)
    stack.callback(server.close)
    return int(server.getsockname()[1])


def _server(stack: ExitStack, command: list[str]) -> None:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(process.wait, 10)
    stack.callback(process.terminate)


def _read_all(port: int) -> float:
    """Seconds from connecting to the answer's last byte."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        started, got = time.perf_counter(), 0
        while got < len(PAYLOAD):
            data = conn.recv(1 << 20)
            if not data:
                raise SystemExit(f"the answer ended after {got} of {len(PAYLOAD)} bytes")
            got += len(data)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slicer_timing")
    parser.add_argument("--average", type=int, default=100, help="average_size (bytes)")
    parser.add_argument("--variation", type=int, default=0, help="size_variation (bytes)")
    parser.add_argument("--delay", type=int, default=100, help="delay (µs)")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    binary = ROOT / ".bin" / "toxiproxy-server"
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run bash .ci/install-toxiproxy first")
    toxic = {
        "type": "slicer",
        "stream": "downstream",
        "attributes": {
            "average_size": args.average,
            "size_variation": args.variation,
            "delay": args.delay,
        },
    }
    with ExitStack() as stack:
        upstream = _upstream(stack)
        apis = {"toxiproxy 2.12": _free_port(), "engine": _free_port()}
        _server(stack, [str(binary), "-host", "127.0.0.1", "-port", str(apis["toxiproxy 2.12"])])
        engine = f"127.0.0.1:{apis['engine']}"
        _server(stack, [sys.executable, "-m", "pytest_resilience.engine", "--listen", engine])
        listens = {}
        for name, api in apis.items():
            base = f"http://127.0.0.1:{api}"
            _wait_up(base, time.monotonic() + 10)
            listens[name] = _free_port()
            proxy = {
                "name": "sliced",
                "listen": f"127.0.0.1:{listens[name]}",
                "upstream": f"127.0.0.1:{upstream}",
            }
            _call(base, "POST", "/proxies", proxy)
            _call(base, "POST", "/proxies/sliced/toxics", toxic)
        took: dict[str, list[float]] = {name: [] for name in apis}
        for _ in range(args.rounds):
            for name, port in listens.items():
                took[name].append(_read_all(port))
    medians = {name: statistics.median(times) for name, times in took.items()}
    print(
        f"slicer average_size={args.average} size_variation={args.variation} "
        f"delay={args.delay} µs, 64 KiB, median of {args.rounds}:"
    )
    for name, median in medians.items():
        print(f"  {name:15} {median * 1000:8.1f} ms")
    print(f"  engine / toxiproxy {medians['engine'] / medians['toxiproxy 2.12']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
