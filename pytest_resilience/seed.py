"""The run's seed and the generators derived from it.

One seed per run (``--resilience-seed``); each consumer derives its own
stream from the seed and a stable label (e.g. the test's node id), so a test
draws the same values whatever ran before it, on any xdist worker.
"""

from __future__ import annotations

import hashlib
import random


def new_seed() -> int:
    """A fresh seed for a run that did not ask for one."""
    return random.SystemRandom().randrange(1, 2**31)


def derive(seed: int, *labels: str) -> int:
    """A 64-bit seed for ``labels``, stable across processes and Python versions."""
    digest = hashlib.sha256("\0".join([str(seed), *labels]).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def rng(seed: int, *labels: str) -> random.Random:
    return random.Random(derive(seed, *labels))
