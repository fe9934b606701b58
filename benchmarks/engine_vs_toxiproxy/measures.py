"""The measures, one function each, named for what they measure; samples go into
:class:`Results` under keys the report reads."""

from __future__ import annotations

import contextlib
import http.client
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .client import PAYLOAD_BYTES, connect, recv_exact
from .machine import hostport
from .plan import PAYLOAD, Plan, clock


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


def measure_round_trips(
    client: Any, targets: list[Target], plan: Plan, res: Results, tag: str, share: float
) -> None:
    """Items 1 and 2 for every target, interleaved; keys ``{tag}:{item}:{target}``."""
    items = (
        ("1", "rtt", "round trips on one connection", plan.rtt_blocks, plan.rtt_per_block,
         plan.rtt_warmup),
        ("2", "cycle", "connect + echo + close", plan.cycle_blocks, plan.cycle_per_block,
         plan.cycle_warmup),
    )  # fmt: skip
    for item, op, what, all_blocks, per_block, warmup in items:
        blocks = max(1, round(all_blocks * share))
        log(f"[{tag}] {item}: {blocks} x {per_block} {what}, per target")
        for order in rotations(targets, blocks):
            for t in order:
                key = f"{tag}:{op}:{t.name}"
                ops = per_block + warmup
                res.extend(key, _timed(res, key, t, ops, client, op, t.echo, per_block, warmup))


def measure_bulk_throughput(
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


def measure_concurrent_connections(
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


def measure_latency_toxic_accuracy(
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


BLOCK = 10  # calls in a row to one server in measure_api_request_cost
WARMUP = 30
"""Calls to each server, of each kind, before the timed ones: Toxiproxy's first few
dozen new connections cost up to half as much again as its later ones."""


def measure_api_request_cost(
    servers: dict[str, tuple[str, Callable[[], str]]], n: int, res: Results
) -> None:
    """Item 5's breakdown: one GET /version through the adapter, and with bare http.client,
    on a new connection each time and kept alive. The servers take turns in blocks of
    ``BLOCK`` calls (each round starting with the next server), so that a change in the machine's
    pace falls on all of them alike rather than on whichever went last; blocks rather than
    single calls, because a server in this process still works on a call (a closed
    connection) while the next one is timed."""
    names = list(servers)
    addresses = {name: hostport(url.removeprefix("http://")) for name, (url, _) in servers.items()}
    kept = {name: http.client.HTTPConnection(*addresses[name], timeout=5) for name in names}

    def fresh(name: str) -> None:
        conn = http.client.HTTPConnection(*addresses[name], timeout=5)
        conn.request("GET", "/version")
        conn.getresponse().read()
        conn.close()

    def keepalive(name: str) -> None:
        kept[name].request("GET", "/version")
        kept[name].getresponse().read()

    def adapter(name: str) -> None:
        servers[name][1]()

    try:
        for kind, call in (("adapter", adapter), ("fresh", fresh), ("keepalive", keepalive)):
            times: dict[str, list[float]] = {name: [] for name in names}
            for name in names:
                for _ in range(WARMUP):
                    call(name)
            for i in range(-(-n // BLOCK)):
                for name in names[i % len(names) :] + names[: i % len(names)]:
                    for _ in range(min(BLOCK, n - i * BLOCK)):
                        t0 = clock()
                        call(name)
                        times[name].append((clock() - t0) / 1e6)
            for name in names:
                res[f"api:{name}:{kind}"] = times[name]
    finally:
        for conn in kept.values():
            conn.close()


def measure_api_concurrency(client: Any, name: str, url: str, plan: Plan, res: Results) -> None:
    """Item 5: ``plan.api_clients`` API clients at once, ``plan.api_each`` requests each on
    its own connection; then ``plan.api_burst`` clients connecting at once."""
    address = url.removeprefix("http://")
    res[f"api_clients:{name}"] = client.call(
        "api_clients", address, plan.api_clients, plan.api_each, timeout=120
    )
    res[f"api_burst:{name}"] = client.call("api_burst", address, plan.api_burst, timeout=120)


def measure_plugin_cost_per_test(
    choice: str, binary: str, echo: str, plan: Plan, res: Results
) -> None:
    """Item 5: one test's cost to the plugin: a service, one fault applied and healed, close."""
    from pytest_resilience.session import ResilienceSession

    phases = ("new_test", "tcp_service", "latency", "heal", "close")
    session = ResilienceSession(choice=choice, binary=binary, seed=1)
    try:
        # The first service starts the backend (a spawn, or the engine): a session cost.
        first = session.new_test("bench::warm-start")
        service = first.tcp_service("echo", upstream=echo)
        with connect(service.address) as sock:  # the service works end to end
            sock.sendall(PAYLOAD_BYTES)
            recv_exact(sock, memoryview(bytearray(PAYLOAD)), PAYLOAD)
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
