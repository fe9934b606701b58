"""What the plugin saw: frozen records and the per-test timeline."""

from .records import (
    Call,
    Connection,
    ConnectionEvent,
    FaultEvent,
    IntentEvent,
    RunEvent,
    VerdictEvent,
)
from .timeline import ConnectionList, Timeline

__all__ = [
    "Call",
    "Connection",
    "ConnectionEvent",
    "ConnectionList",
    "FaultEvent",
    "IntentEvent",
    "RunEvent",
    "Timeline",
    "VerdictEvent",
]
