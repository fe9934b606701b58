"""This machine, read from ``/proc``: descriptors, CPU time, steal, affinity; and percentiles."""

from __future__ import annotations

import contextlib
import os
import resource


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
