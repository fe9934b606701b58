"""One run: both servers up side by side, every measure in turn, then the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .machine import cpu_ns, fd_count, pin, raise_nofile, steal_and_total_ticks
from .measures import (
    Results,
    Target,
    log,
    measure_api_concurrency,
    measure_api_request_cost,
    measure_bulk_throughput,
    measure_concurrent_connections,
    measure_latency_toxic_accuracy,
    measure_many_proxies,
    measure_plugin_cost_per_test,
    measure_round_trips,
)
from .plan import ENGINE_THREAD, FULL, LANE_THREAD, QUICK, ROOT, Plan
from .processes import Child, FloorRelay, LocalClient, RemoteClient, StandaloneEngine, Upstream
from .report import RunFacts, print_report


@dataclass
class Bench:
    """What the measures share: the plan, the processes, the two servers and the targets."""

    plan: Plan
    binary: str
    res: Results = field(default_factory=Results)
    children: list[Child] = field(default_factory=list)
    tp_version: str = "?"
    upstream: Any = None
    remote: Any = None
    tp: Any = None
    tp_pid: int = 0
    en: Any = None
    targets: list[Target] = field(default_factory=list)
    latency_targets: list[Target] = field(default_factory=list)
    """The targets of items 1-2: with the minimal relay under ``--floor``."""
    path_pids: list[int] = field(default_factory=list)
    """Every process on items 1-2's path, pinned to one CPU for their first pass."""


def start_children(bench: Bench, stack: contextlib.ExitStack) -> None:
    """The upstream and the load client, each in a process of its own."""
    bench.upstream = Upstream()
    bench.children.append(bench.upstream)
    stack.callback(bench.upstream.close)
    bench.remote = RemoteClient()
    bench.children.append(bench.remote)
    stack.callback(bench.remote.close)
    log(
        f"upstream pid {bench.upstream.pid}: echo {bench.upstream.echo}, "
        f"sink {bench.upstream.sink}; client pid {bench.remote.pid}"
    )


def start_servers(bench: Bench, stack: contextlib.ExitStack, floor: bool) -> Callable[[], None]:
    """Toxiproxy spawned and the engine in this process, each with an echo and a sink
    proxy; returns what stops both (item 5 measures the plugin starting its own)."""
    from pytest_resilience.engine import Engine
    from pytest_resilience.toxiproxy.client import ToxiproxyClient
    from pytest_resilience.toxiproxy.spawn import SpawnedToxiproxy

    server = SpawnedToxiproxy(bench.binary)
    stack.callback(server.stop)
    bench.tp = server.start()
    bench.tp_version = bench.tp.version()
    assert server.pid is not None
    tp_pid = bench.tp_pid = server.pid
    engine = Engine("127.0.0.1", 0, seed=0)
    stack.callback(engine.stop)
    bench.en = ToxiproxyClient(engine.start())
    loop_tid = next(t.native_id for t in threading.enumerate() if t.name == ENGINE_THREAD)
    assert loop_tid is not None
    engine_tids = [loop_tid]
    me = os.getpid()
    upstream = bench.upstream
    bench.targets = [Target("direct", upstream.echo, upstream.sink)]
    for name, api, cpu in (
        ("toxiproxy", bench.tp, lambda: cpu_ns(tp_pid)),
        ("engine", bench.en, lambda: cpu_ns(me, engine_tids)),
    ):
        made = {
            k: api.create_proxy(f"bench-{k}", getattr(upstream, k), "127.0.0.1:0")["listen"]
            for k in ("echo", "sink")
        }
        bench.targets.append(Target(name, made["echo"], made["sink"], cpu))
    # The engine's express lane (a thread its first proxy started) relays toxic-free links.
    engine_tids += [
        t.native_id for t in threading.enumerate() if t.name == LANE_THREAD and t.native_id
    ]
    log(
        f"toxiproxy {bench.tp_version} pid {tp_pid} at {bench.tp.url}; "
        f"engine at {bench.en.url} (loop and lane threads {engine_tids})"
    )
    bench.path_pids = [upstream.pid, bench.remote.pid, tp_pid, me]
    bench.latency_targets = list(bench.targets)
    if floor:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-floor-")))
        log("--floor: building the minimal Go relay")
        relay = FloorRelay(upstream.echo, workdir)
        stack.callback(relay.close)
        bench.latency_targets.append(Target("floor", relay.address, "", lambda: cpu_ns(relay.pid)))
        bench.path_pids.append(relay.pid)

    def stop() -> None:
        bench.en.close()  # the API clients' kept-alive connections
        bench.tp.close()
        engine.stop()
        server.stop()

    return stop


def round_trips_and_bulk(bench: Bench, all_cpus: set[int]) -> None:
    """Items 1-2 pinned to one CPU, then free; item 3 free; then the same with the client
    in this thread (the plugin's layout)."""
    plan, res, remote = bench.plan, bench.res, bench.remote
    pin(bench.path_pids, {min(all_cpus)})
    try:
        measure_round_trips(remote, bench.latency_targets, plan, res, "A1", 1.0)
    finally:
        pin(bench.path_pids, all_cpus)
    measure_round_trips(remote, bench.latency_targets, plan, res, "A", 1.0)
    measure_bulk_throughput(remote, bench.targets, plan, res, "A", plan.bulk_trials)
    local = LocalClient()
    measure_round_trips(local, bench.targets, plan, res, "B", plan.inproc_share)
    trials = max(1, round(plan.bulk_trials * plan.inproc_share))
    measure_bulk_throughput(local, bench.targets, plan, res, "B", trials)


def latency_toxic(bench: Bench) -> None:
    """Item 4, with a control: how late a plain sleep wakes on this machine."""
    plan = bench.plan
    log(
        f"4: latency toxic {plan.lat_ms} ms, {plan.lat_conns} x {plan.lat_rounds} "
        "round trips per backend"
    )
    control = bench.remote.call("timer", plan.lat_conns, plan.lat_rounds, plan.lat_ms)
    bench.res["latency:control"] = [ns / 1e6 for ns in control]
    for t, api in zip(bench.targets[1:], (bench.tp, bench.en), strict=True):
        measure_latency_toxic_accuracy(
            bench.remote, t.name, api, "bench-echo", t.echo, plan, bench.res
        )


def scale(bench: Bench) -> None:
    """Item 6: concurrent connections through one proxy; many proxies on one server."""
    plan, res, remote, tp_pid = bench.plan, bench.res, bench.remote, bench.tp_pid
    log(f"6: {plan.concurrent} concurrent connections through one proxy, per target")

    def tp_fds() -> int:
        return fd_count(tp_pid)

    fds_of: dict[str, Callable[[], int] | None] = {
        "direct": None,
        "toxiproxy": tp_fds,
        "engine": fd_count,
    }
    for t in bench.targets:
        measure_concurrent_connections(remote, t.name, t.echo, plan.concurrent, fds_of[t.name], res)
    log(f"6: {plan.proxies} proxies on one server, a round trip through each, then deleted")
    echo = bench.upstream.echo
    measure_many_proxies(remote, "toxiproxy", bench.tp, echo, plan.proxies, tp_fds, res)
    measure_many_proxies(remote, "engine", bench.en, echo, plan.proxies, fd_count, res)


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

    raise_nofile()
    started = time.monotonic()
    threads_at_start = set(threading.enumerate())
    fds_at_start = fd_count()
    steal_at_start = steal_and_total_ticks()
    all_cpus = os.sched_getaffinity(0)
    bench = Bench(plan, binary)
    res = bench.res
    with contextlib.ExitStack() as stack:
        stack.callback(pin, [os.getpid()], all_cpus)  # undo any pinning, whatever happens
        start_children(bench, stack)
        stop_servers = start_servers(bench, stack, args.floor)
        round_trips_and_bulk(bench, all_cpus)
        latency_toxic(bench)
        scale(bench)
        # Item 5: the API's cost, then, with the standalone servers gone, the plugin's.
        from pytest_resilience.toxiproxy.client import ToxiproxyClient

        standalone = StandaloneEngine()
        stack.callback(standalone.close)
        api = ToxiproxyClient(standalone.url)
        stack.callback(api.close)
        servers = {
            "toxiproxy": (bench.tp.url, bench.tp.version),
            "engine": (bench.en.url, bench.en.version),
            "standalone": (api.url, api.version),
        }
        measure_api_request_cost(servers, plan.api_calls, res)
        api.close()
        standalone.close()
        log(f"5: {plan.api_clients} API clients at once; {plan.api_burst} connecting at once")
        measure_api_concurrency(bench.remote, "toxiproxy", bench.tp.url, plan, res)
        measure_api_concurrency(bench.remote, "engine", bench.en.url, plan, res)
        stop_servers()
        log(f"5: plugin cost, {plan.plugin_tests} tests per backend")
        measure_plugin_cost_per_test("spawn", binary, bench.upstream.echo, plan, res)
        measure_plugin_cost_per_test("embedded", binary, bench.upstream.echo, plan, res)

    steal_now = steal_and_total_ticks()
    print_report(
        res,
        plan,
        RunFacts(
            bench.tp_version,
            args.quick,
            args.floor,
            time.monotonic() - started,
            (steal_now[0] - steal_at_start[0]) / max(steal_now[1] - steal_at_start[1], 1),
            len(all_cpus),
            [t.name for t in threading.enumerate() if t not in threads_at_start],
            [c.pid for c in bench.children if c.process.poll() is None],
            fd_count() - fds_at_start,
        ),
    )
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"Raw samples: {args.json}")
    return 0
