"""Prometheus text for ``GET /metrics``.

The byte counters have Toxiproxy's names and labels (what ``toxiproxy-server
-proxy-metrics`` exports); the connection gauges are the engine's own.  Unlike
Toxiproxy, whose counters move when a connection ends, these are live.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .proxy import Proxy


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def render_metrics(proxies: Iterable[Proxy]) -> str:
    proxies = list(proxies)
    lines = [
        "# HELP toxiproxy_proxy_received_bytes_total Bytes read from the source, per direction.",
        "# TYPE toxiproxy_proxy_received_bytes_total counter",
    ]
    sent = [
        "# HELP toxiproxy_proxy_sent_bytes_total Bytes written to the destination, per direction.",
        "# TYPE toxiproxy_proxy_sent_bytes_total counter",
    ]
    connections = [
        "# HELP toxiproxy_proxy_connections_total Client connections accepted.",
        "# TYPE toxiproxy_proxy_connections_total counter",
    ]
    active = [
        "# HELP toxiproxy_proxy_connections_active Client connections open now.",
        "# TYPE toxiproxy_proxy_connections_active gauge",
    ]
    for proxy in proxies:
        for direction, (received, written) in proxy.counters.items():
            labels = _labels(
                direction=direction,
                proxy=proxy.name,
                listener=proxy.listen,
                upstream=proxy.upstream,
            )
            lines.append(f"toxiproxy_proxy_received_bytes_total{labels} {received}")
            sent.append(f"toxiproxy_proxy_sent_bytes_total{labels} {written}")
        labels = _labels(proxy=proxy.name, listener=proxy.listen, upstream=proxy.upstream)
        connections.append(f"toxiproxy_proxy_connections_total{labels} {proxy.connections_total}")
        active.append(f"toxiproxy_proxy_connections_active{labels} {len(proxy.links)}")
    return "\n".join([*lines, *sent, *connections, *active]) + "\n"
