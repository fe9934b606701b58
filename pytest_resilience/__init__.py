"""pytest-resilience: inject network faults through Toxiproxy and assert how code copes."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .errors import BackendError, ConfigurationError, ResilienceError, UnknownServiceError

try:
    __version__ = version("pytest-resilience")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "BackendError",
    "ConfigurationError",
    "Connection",
    "ConnectionEvent",
    "Fault",
    "FaultEvent",
    "Resilience",
    "ResilienceError",
    "ResilienceSession",
    "TcpService",
    "Timeline",
    "UnknownServiceError",
    "__version__",
]

# Loaded on first use, so that loading the plugin stays cheap.
_LAZY = {
    "Connection": ".observe",
    "ConnectionEvent": ".observe",
    "FaultEvent": ".observe",
    "Timeline": ".observe",
    "Fault": ".faults.fault",
    "Resilience": ".resilience",
    "ResilienceSession": ".session",
    "TcpService": ".services.tcp",
}

if TYPE_CHECKING:
    from .faults.fault import Fault
    from .observe import Connection, ConnectionEvent, FaultEvent, Timeline
    from .resilience import Resilience
    from .services.tcp import TcpService
    from .session import ResilienceSession


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
