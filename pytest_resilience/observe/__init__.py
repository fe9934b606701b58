"""What the plugin saw: frozen records and the per-test timeline."""

from .records import Connection, ConnectionEvent, FaultEvent, IntentEvent, VerdictEvent
from .timeline import ConnectionList, Timeline

__all__ = [
    "Connection",
    "ConnectionEvent",
    "ConnectionList",
    "FaultEvent",
    "IntentEvent",
    "Timeline",
    "VerdictEvent",
]
