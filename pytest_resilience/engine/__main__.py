"""Run the embedded engine on its own: ``python -m pytest_resilience.engine``."""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading

from . import VERSION, Engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_resilience.engine",
        description=f"A Toxiproxy {VERSION}-compatible server (pytest-resilience's embedded engine).",
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:8474", help="API address, host:port (default 127.0.0.1:8474)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for jitter, toxicity and slicer sizes (default: a new one each run, "
        "printed at start, as Toxiproxy draws anew each run)",
    )
    args = parser.parse_args(argv)
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        parser.error(
            f"--listen={args.listen!r} is not host:port; pass e.g. --listen 127.0.0.1:8474"
        )
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    engine = Engine(host.strip("[]") or "127.0.0.1", int(port), seed=seed)
    try:
        url = engine.start()
    except OSError as exc:
        print(f"cannot listen on {args.listen}: {exc.strerror}", file=sys.stderr)
        return 1
    # Handlers before the banner: a supervisor may signal as soon as it reads it.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"pytest-resilience engine (Toxiproxy {VERSION} API) listening on {url}, seed {seed}",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
