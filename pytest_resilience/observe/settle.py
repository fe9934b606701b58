"""Waiting for a test's records to settle, woken by the observers instead of polling.

Whether an answer reached the client is known a moment after the HTTP layer sent it:
when the tap in front of Toxiproxy has handed its last byte to the client's socket,
or the connection ended first.  The observers (the tap, the HTTP layer) call
:meth:`Settling.changed` as that happens; a reader calls :meth:`Settling.until` with
what to read and when it is settled, and wakes on each change until it is, or until
its deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Settling:
    """A change counter the observers bump and readers wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._changes = 0

    def changed(self) -> None:
        """Something a reader may wait for happened (any thread; never blocks for long)."""
        with self._cond:
            self._changes += 1
            self._cond.notify_all()

    def until(self, read: Callable[[], T], settled: Callable[[T], bool], timeout: float) -> T:
        """``read()`` again after each change until ``settled`` holds of what it gave, or
        ``timeout`` seconds (real time: how long the observers take) have passed."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                seen = self._changes
            value = read()
            left = deadline - time.monotonic()
            if settled(value) or left <= 0:
                return value
            with self._cond:
                if self._changes == seen:  # else a change came while reading: read again
                    self._cond.wait(left)
