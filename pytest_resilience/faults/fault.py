"""Handles for applied faults: heal them, or use them as context managers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from ..clock import CLOCK
from .plan import FaultPlan

TRANSIT = frozenset({"latency", "bandwidth", "slicer", "chaos"})
"""Fault kinds that hold bytes on their way (:attr:`~..clock.Clock.transit`)."""

if TYPE_CHECKING:
    from typing_extensions import Self


class Fault:
    """A fault applied to one service; it stays until healed or the test ends.

    Use it as a context manager to confine it to a block::

        with redis.latency(300):
            cache.get("k")
    """

    def __init__(self, fault_id: int, service: str, plan: FaultPlan, heal: Callable[[], None]):
        self.id = fault_id
        self.service = service
        self.plan = plan
        self._heal = heal
        self._lock = threading.Lock()
        self.active = True
        if self.kind in TRANSIT:
            CLOCK.in_transit(+1)

    @property
    def kind(self) -> str:
        return self.plan.kind

    def heal(self) -> None:
        """Undo the fault; a second call does nothing (an HTTP fault heals itself once it
        has answered its count)."""
        with self._lock:
            if not self.active:
                return
            self.active = False
        try:
            self._heal()
        finally:
            if self.kind in TRANSIT:
                CLOCK.in_transit(-1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heal()

    def __repr__(self) -> str:
        state = "active" if self.active else "healed"
        return f"<Fault #{self.id} {self.kind} on {self.service!r} {self.plan.detail} ({state})>"


class FaultGroup:
    """Several faults applied together (``resilience.partition(a, b)``), healed together."""

    def __init__(self, faults: Iterable[Fault]):
        self.faults = list(faults)

    @property
    def active(self) -> bool:
        return any(f.active for f in self.faults)

    def heal(self) -> None:
        errors: list[BaseException] = []
        for fault in reversed(self.faults):
            try:
                fault.heal()
            except Exception as exc:  # heal the others before reporting
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.heal()

    def __repr__(self) -> str:
        return f"<FaultGroup {self.faults!r}>"
