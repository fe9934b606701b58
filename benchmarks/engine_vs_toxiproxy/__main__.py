"""The embedded engine against the real Toxiproxy 2.12, side by side, in one run.

    python -m benchmarks.engine_vs_toxiproxy            # full run (from the repository root), ~50 s
    python -m benchmarks.engine_vs_toxiproxy --quick    # smaller samples, ~20 s

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
import sys
from multiprocessing.connection import Connection

from .client import serve_client
from .machine import raise_nofile
from .plan import DEFAULT_BINARY
from .run import run
from .upstream import serve_upstream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine_vs_toxiproxy",
        description=(__doc__ or "").split("\n\n")[0],
    )
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
            (serve_client if args.role == "client" else serve_upstream)(conn)
        except KeyboardInterrupt:
            pass
        finally:
            conn.close()
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
