"""The garbage collector kept out of the waits a test judges.

A full collection stops every thread of the process for as long as it walks the heap:
with the SDKs of a suite loaded, 90-135 ms under two CPU hogs.  Landing in a retry
schedule it holds every client's timer alike, so their waits come out alike, and the
noise probe rightly records a stall that leaves jitter undecided (5 of 12 runs of
``examples/async_client``'s 503 burst).  While a resilience test's body runs, the
objects that were alive when it began are frozen (:func:`gc.freeze`): a collection then
walks only what the body made (8 ms instead of 90-135 ms, measured).  They are handed
back to the collector when the body ends, so nothing is kept that would otherwise go.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """The objects alive now left out of every collection until the block ends."""
    if gc.get_freeze_count():  # frozen by an outer run (pytester inside a resilience test)
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
