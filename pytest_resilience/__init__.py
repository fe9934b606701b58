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
    "DEFAULT_FAILURES",
    "Backend",
    "BackendError",
    "Call",
    "ConfigurationError",
    "Connection",
    "ConnectionEvent",
    "ConnectionList",
    "Effect",
    "Evidence",
    "Exchange",
    "ExchangeEvent",
    "ExchangeList",
    "Exploration",
    "Fault",
    "FaultEvent",
    "FaultGroup",
    "FaultKind",
    "FaultPlan",
    "HttpService",
    "InsufficientEvidence",
    "Intent",
    "IntentEvent",
    "Resilience",
    "ResilienceAssertionError",
    "ResilienceError",
    "ResilienceSession",
    "RouteScript",
    "Run",
    "RunEvent",
    "TcpService",
    "TestRecord",
    "Timeline",
    "ToxicSpec",
    "UnknownServiceError",
    "VerdictEvent",
    "VirtualClock",
    "__version__",
]

# Loaded on first use, so that loading the plugin stays cheap.
_LAZY = {
    "VirtualClock": ".runtime.scheduler",
    "Evidence": ".evidence",
    "Exploration": ".explore",
    "Backend": ".toxiproxy.backends",
    "Call": ".observe",
    "ConnectionList": ".observe",
    "Effect": ".http.records",
    "ExchangeEvent": ".http.records",
    "ExchangeList": ".http.records",
    "FaultGroup": ".faults.fault",
    "Intent": ".adapters",
    "IntentEvent": ".observe",
    "RunEvent": ".observe",
    "RouteScript": ".services.http",
    "TestRecord": ".report.record",
    "Connection": ".observe",
    "ConnectionEvent": ".observe",
    "FaultEvent": ".observe",
    "Timeline": ".observe",
    "VerdictEvent": ".observe",
    "DEFAULT_FAILURES": ".assertions",
    "InsufficientEvidence": ".assertions",
    "Exchange": ".http.records",
    "Fault": ".faults.fault",
    "FaultKind": ".faults.kinds",
    "FaultPlan": ".faults.plan",
    "ToxicSpec": ".faults.plan",
    "HttpService": ".services.http",
    "Resilience": ".resilience",
    "ResilienceAssertionError": ".assertions",
    "ResilienceSession": ".session",
    "Run": ".runs",
    "TcpService": ".services.tcp",
}

if TYPE_CHECKING:
    from .adapters import Intent
    from .assertions import DEFAULT_FAILURES, InsufficientEvidence, ResilienceAssertionError
    from .evidence import Evidence
    from .explore import Exploration
    from .faults.fault import Fault, FaultGroup
    from .faults.kinds import FaultKind
    from .faults.plan import FaultPlan, ToxicSpec
    from .http.records import Effect, Exchange, ExchangeEvent, ExchangeList
    from .observe import (
        Call,
        Connection,
        ConnectionEvent,
        ConnectionList,
        FaultEvent,
        IntentEvent,
        RunEvent,
        Timeline,
        VerdictEvent,
    )
    from .report.record import TestRecord
    from .resilience import Resilience
    from .runs import Run
    from .runtime.scheduler import VirtualClock
    from .services.http import HttpService, RouteScript
    from .services.tcp import TcpService
    from .session import ResilienceSession
    from .toxiproxy.backends import Backend


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
