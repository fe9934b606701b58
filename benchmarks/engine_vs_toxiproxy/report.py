"""The report: markdown tables of the figures, ratios and targets, from :class:`Results`."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from .machine import median, pct
from .measures import Results
from .plan import Plan

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


def round_trip_rows(res: Results, tag: str, where: str, final: bool) -> list[list[str]]:
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


FLOOR_TARGET = 1.1
"""Issue 16: the engine's added round trip within 1.1x the minimal relay's, p50 and p99."""


def relay_floor_rows(res: Results, tag: str, where: str) -> list[list[str]]:
    """Items 1-2's added figures for the minimal relay, next to the two proxies'; the
    round trip's engine / relay ratio against issue 16's target."""
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
            against = ratio(e - d, f - d)
            gated = kind == "rtt"
            rows.append(
                [
                    item,
                    f"{label}, **added** p{q} (µs) — {where}",
                    fmt(f - d),
                    fmt(t - d),
                    fmt(e - d),
                    fmt(ratio(t - d, f - d), 2),
                    fmt(against, 2),
                    f"≤ {FLOOR_TARGET:.2f}" if gated else "(info)",
                    verdict(against is not None and against <= FLOOR_TARGET) if gated else "",
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
                "(info)",
                "",
            ]
        )
    return rows


def bulk_throughput_rows(res: Results, tag: str, final: bool) -> list[list[str]]:
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


def latency_toxic_rows(res: Results, plan: Plan) -> list[list[str]]:
    """Item 4: how far the latency toxic's round trips land from the latency configured."""
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
    return rows


def plugin_cost_rows(res: Results) -> list[list[str]]:
    """Item 5: what one test costs the plugin, on each backend."""
    rows: list[list[str]] = []
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
    return rows


def many_proxies_rows(res: Results, plan: Plan) -> list[list[str]]:
    """Item 6: a thousand proxies on one server, created, used and deleted."""
    rows: list[list[str]] = []
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
    return rows


def api_concurrency_rows(res: Results, plan: Plan) -> list[list[str]]:
    """Item 5: API clients at once (issue 16: no request over 20 ms with 20 clients) and
    a burst of clients connecting at once (all answered)."""
    rows: list[list[str]] = []
    clients = {n: res.get(f"api_clients:{n}") for n in BACKENDS}
    if all(clients.values()):
        slowest = {n: max(c["times_ms"], default=None) for n, c in clients.items()}
        p99 = {n: pct(c["times_ms"], 99) for n, c in clients.items()}
        errors = {n: len(c["errors"]) for n, c in clients.items()}
        label = f"{plan.api_clients} API clients at once, {plan.api_each} GET /version each"
        rows.append(
            [
                "5",
                f"{label}: p99 (ms)",
                "",
                fmt(p99["toxiproxy"], 2),
                fmt(p99["engine"], 2),
                fmt(ratio(p99["engine"], p99["toxiproxy"]), 2),
                "",
                "",
            ]
        )
        ok = {n: errors[n] == 0 and (slowest[n] or 0) <= 20 for n in BACKENDS}
        rows.append(
            [
                "5",
                f"{label}: slowest (ms; errors)",
                "",
                f"{fmt(slowest['toxiproxy'], 2)} ({errors['toxiproxy']})",
                f"{fmt(slowest['engine'], 2)} ({errors['engine']})",
                fmt(ratio(slowest["engine"], slowest["toxiproxy"]), 2),
                "≤ 20, 0 errors",
                f"tp {verdict(ok['toxiproxy'])} / eng {verdict(ok['engine'])}",
            ]
        )
    for kind, how in (("fresh", "new connection"), ("keepalive", "keep-alive")):
        theirs = res.get(f"api:toxiproxy:{kind}")
        for engine, label in (
            ("engine", f"API request cost: GET /version by http.client, {how}, median (ms)"),
            ("standalone", f"the same, the engine as its own process, {how}, median (ms)"),
        ):
            ours = res.get(f"api:{engine}:{kind}")
            if theirs and ours:  # measured on both (median of none is NaN, not None)
                r = ratio(median(ours), median(theirs))
                rows.append(
                    [
                        "5",
                        label,
                        "",
                        fmt(median(theirs), 3),
                        fmt(median(ours), 3),
                        fmt(r, 2),
                        "≤ 1.00",
                        verdict(r is not None and r <= 1.0),
                    ]
                )
    burst = {n: res.get(f"api_burst:{n}") for n in BACKENDS}
    if all(burst.values()):
        bt, be = burst["toxiproxy"], burst["engine"]
        rows.append(
            [
                "5",
                f"{plan.api_burst} API clients connecting at once: answered 200 (ms for all)",
                "",
                f"{bt['ok']} ({fmt(bt['total_ms'], 0)})",
                f"{be['ok']} ({fmt(be['total_ms'], 0)})",
                fmt(ratio(be["total_ms"], bt["total_ms"]), 2),
                "all",
                f"tp {verdict(bt['ok'] == plan.api_burst)} / eng {verdict(be['ok'] == plan.api_burst)}",
            ]
        )
    return rows


def concurrent_rows(res: Results, plan: Plan) -> list[list[str]]:
    """Item 6: a thousand concurrent connections through one proxy."""
    rows: list[list[str]] = []
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


def plugin_cost_tables(res: Results) -> str:
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
    for name, key in (
        ("toxiproxy 2.12", "toxiproxy"),
        ("engine", "engine"),
        ("engine, its own process", "standalone"),
    ):
        cells = [
            fmt(median(res.get(f"api:{key}:{kind}", [])), 2)
            for kind in ("adapter", "fresh", "keepalive")
        ]
        rows.append([name, *cells])
    second = table(
        rows,
        [
            "API: GET /version, median (ms)",
            "the plugin's adapter (toxiproxy-python's calls, kept alive)",
            "http.client, new connection",
            "http.client, keep-alive",
        ],
    )
    return first + "\n\n" + second


@dataclass(frozen=True)
class RunFacts:
    """What the report says of the run itself, beside the measures."""

    tp_version: str
    quick: bool
    floor: bool
    elapsed: float
    steal: float
    """Share of CPU time the hypervisor stole during the run."""
    cpus: int
    leftover_threads: list[str]
    leftover_children: list[int]
    fds_leaked: int


def print_report(res: Results, plan: Plan, facts: RunFacts) -> None:
    """The report, to stdout: layout A's verdicts, the floor, layout B, item 5 in parts."""
    print(
        f"\n## Embedded engine vs Toxiproxy {facts.tp_version} ({'quick' if facts.quick else 'full'} run, {facts.elapsed:.1f} s)\n"
    )
    print(
        f"Python {platform.python_version()}, {facts.cpus} CPUs, {platform.platform()}; "
        f"CPU time stolen by the hypervisor during the run: {facts.steal:.1%}. "
        "Upstream (asyncio echo + sink) in its own process; client: blocking sockets, TCP_NODELAY.\n"
        "Items 1-2 cells: absolute (+added over direct, same percentile); the ratio is of the added figures.\n"
    )
    print("### Layout A: client in a separate process (the verdicts)\n")
    rows = round_trip_rows(res, "A1", "all on one CPU", True) + round_trip_rows(
        res, "A", "unpinned", True
    )
    rows.sort(key=lambda r: r[0])
    print(
        table(
            rows
            + bulk_throughput_rows(res, "A", True)
            + latency_toxic_rows(res, plan)
            + plugin_cost_rows(res)
            + api_concurrency_rows(res, plan)
            + many_proxies_rows(res, plan)
            + concurrent_rows(res, plan)
        )
    )
    print(
        f"\nItem 1: {len(res.get('A:rtt:engine', []))} round trips per target and placement; item 2: "
        f"{len(res.get('A:cycle:engine', []))} connections; item 3: {plan.bulk_bytes >> 20} MiB per transfer, "
        f"{plan.bulk_trials} transfers per target. Proxy CPU: the engine's loop and lane threads, all of "
        "toxiproxy-server's threads (/proc schedstat), warm-up included.\n"
    )
    if facts.floor:
        print("### Floor: a minimal relay (Go, accept + dial + io.Copy; --floor)\n")
        floor_head = [
            "#",
            "measure",
            "minimal relay",
            "toxiproxy 2.12",
            "engine",
            "toxiproxy / relay",
            "engine / relay",
            "target",
            "verdict",
        ]
        print(
            table(
                relay_floor_rows(res, "A1", "all on one CPU")
                + relay_floor_rows(res, "A", "unpinned"),
                floor_head,
            )
        )
        print()
    print(
        "### Layout B: client in the engine's process, main thread (how the plugin runs; informational)\n"
    )
    print(
        table(round_trip_rows(res, "B", "unpinned", False) + bulk_throughput_rows(res, "B", False))
    )
    print("\n### Item 5 in parts\n")
    print(plugin_cost_tables(res))
    print(
        f"\nCleanup: threads left: {facts.leftover_threads or 'none'}; child processes alive: "
        f"{facts.leftover_children or 'none'}; this process's fds vs. start: {facts.fds_leaked:+d}."
    )
