"""What applying a fault does, in Toxiproxy's terms: the toxics to add, or a disabled proxy.

Plain frozen records, planned by the fault kinds (``kinds``, ``partition``) and
carried out by a service (``services.tcp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToxicSpec:
    """One toxic to add to a proxy."""

    type: str
    stream: str
    attributes: tuple[tuple[str, Any], ...]
    toxicity: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.attributes)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What applying a fault does: toxics to add, and whether to disable the proxy."""

    kind: str
    toxics: tuple[ToxicSpec, ...] = ()
    disable: bool = False
    detail: str = ""
