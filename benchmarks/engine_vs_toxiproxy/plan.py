"""What a run measures and how much: the sizes of a full run and of ``--quick``, and
the constants every process shares."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = ROOT / ".bin" / "toxiproxy-server"
PAYLOAD = 1024
"""Bytes per request (and per echoed answer) in items 1, 2, 4 and 6."""
IO_TIMEOUT = 10.0
ENGINE_THREAD = "pytest-resilience-engine"
LANE_THREAD = "pytest-resilience-engine-lane"
clock = time.perf_counter_ns


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
    api_clients: int  # item 5: API clients asking at once, each on its own connection
    api_each: int  # requests per such client
    api_burst: int  # item 5: API clients connecting at once
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
    api_calls=2000,
    api_clients=20,
    api_each=50,
    api_burst=200,
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
    api_calls=30,
    api_clients=20,
    api_each=20,
    api_burst=200,
    plugin_tests=30,
    plugin_warmup=5,
    proxies=1000,
    concurrent=1000,
)
