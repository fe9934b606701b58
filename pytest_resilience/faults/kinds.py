"""Fault kinds: each a function that validates its arguments and plans Toxiproxy toxics.

The same functions serve the service methods (``redis.latency(300)``), the
markers (``@pytest.mark.latency("redis", ms=300)``) and ``resilience.fault``,
so every entry point accepts and rejects exactly the same arguments.  Toxic
attributes keep Toxiproxy's units: milliseconds, KB/s, bytes (slicer's
``delay`` is in microseconds, as in Toxiproxy).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import validate
from ..errors import ConfigurationError
from .partition import plan_partition
from .plan import FaultPlan, ToxicSpec

STREAMS = {"upstream": "client to service", "downstream": "service to client"}


def _whole(kind: str, name: str, value: Any, *, minimum: int = 0) -> int:
    return validate.integer(value, f"{kind}: {name}", minimum=minimum)


def _stream(kind: str, value: Any) -> str:
    return validate.choice(value, f"{kind}: stream", STREAMS)


def _variation(kind: str, variation: Any, average: int) -> int:
    """slicer's ``size_variation``: a whole number below ``average_size``."""
    below = f"{kind}: size_variation (below average_size {average})"
    return validate.integer(variation, below, maximum=average - 1)


def _single(kind: str, stream: str, toxicity: float, **attributes: int) -> FaultPlan:
    spec = ToxicSpec(
        kind, _stream(kind, stream), tuple(attributes.items()), validate.toxicity(toxicity, kind)
    )
    detail = " ".join(f"{k}={v}" for k, v in attributes.items())
    return FaultPlan(kind, (spec,), detail=f"{detail} stream={stream}".strip())


def latency(
    ms: int, jitter: int = 0, *, stream: str = "downstream", toxicity: float = 1.0
) -> FaultPlan:
    """Delay data by ``ms`` milliseconds, plus or minus ``jitter``."""
    return _single(
        "latency",
        stream,
        toxicity,
        latency=_whole("latency", "ms", ms),
        jitter=_whole("latency", "jitter", jitter),
    )


def bandwidth(rate: int, *, stream: str = "downstream", toxicity: float = 1.0) -> FaultPlan:
    """Cap the stream at ``rate`` KB/s."""
    return _single("bandwidth", stream, toxicity, rate=_whole("bandwidth", "rate", rate))


def slow_close(delay: int, *, stream: str = "downstream", toxicity: float = 1.0) -> FaultPlan:
    """Delay the close of the connection by ``delay`` milliseconds."""
    return _single("slow_close", stream, toxicity, delay=_whole("slow_close", "delay", delay))


def timeout(ms: int = 0, *, stream: str = "downstream", toxicity: float = 1.0) -> FaultPlan:
    """Drop data; close the connection after ``ms`` milliseconds (0: hold it forever)."""
    return _single("timeout", stream, toxicity, timeout=_whole("timeout", "ms", ms))


def reset_peer(timeout: int = 0, *, stream: str = "downstream", toxicity: float = 1.0) -> FaultPlan:
    """Reset the connection (RST) after ``timeout`` milliseconds."""
    return _single("reset_peer", stream, toxicity, timeout=_whole("reset_peer", "timeout", timeout))


def slicer(
    average_size: int,
    size_variation: int = 0,
    delay: int = 0,
    *,
    stream: str = "downstream",
    toxicity: float = 1.0,
) -> FaultPlan:
    """Cut data into pieces of about ``average_size`` bytes, ``delay`` microseconds apart."""
    average = _whole("slicer", "average_size", average_size, minimum=1)
    variation = _variation("slicer", size_variation, average)
    return _single(
        "slicer",
        stream,
        toxicity,
        average_size=average,
        size_variation=variation,
        delay=_whole("slicer", "delay", delay),
    )


def limit_data(bytes: int, *, stream: str = "downstream", toxicity: float = 1.0) -> FaultPlan:
    """Close the connection once ``bytes`` bytes have passed."""
    return _single("limit_data", stream, toxicity, bytes=_whole("limit_data", "bytes", bytes))


def down() -> FaultPlan:
    """Disable the proxy: open connections close, new ones are refused."""
    return FaultPlan("down", disable=True)


def chaos(
    type: str,
    *,
    stream: str = "downstream",
    toxicity: float = 1.0,
    **attributes: Any,
) -> FaultPlan:
    """Any toxic Toxiproxy knows, by type name and attributes (custom builds too)."""
    if not isinstance(type, str) or not type:
        raise ConfigurationError(f"chaos: type must be a toxic type name, got {type!r}.")
    if type in STANDARD_TOXICS:
        attributes = _standard_attributes(type, attributes)
    spec = ToxicSpec(
        type,
        _stream("chaos", stream),
        tuple(attributes.items()),
        validate.toxicity(toxicity, "chaos"),
    )
    detail = " ".join(f"{k}={v}" for k, v in attributes.items())
    return FaultPlan(type, (spec,), detail=f"{detail} stream={stream}".strip())


STANDARD_TOXICS: dict[str, dict[str, int]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 1, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
}
"""Toxiproxy 2.12's toxics: each attribute and its least value.  Out of range, some crash
the real server (bandwidth rate=-1, slicer average_size=0), so chaos checks them too."""


def _standard_attributes(type: str, attributes: dict[str, Any]) -> dict[str, Any]:
    known = STANDARD_TOXICS[type]
    where = f"chaos(type={type!r})"
    for name in attributes:
        if name not in known:
            raise ConfigurationError(
                f"{where}: the {type} toxic has no attribute {name!r}; it takes {', '.join(known)}."
            )
    for name, least in known.items():
        if least > 0 and name not in attributes:
            raise ConfigurationError(
                f"{where}: give {name}= (>= {least}); Toxiproxy's default of 0 is not allowed."
            )
    checked = {n: _whole(where, n, v, minimum=known[n]) for n, v in attributes.items()}
    if type == "slicer" and "size_variation" in checked:
        _variation(where, checked["size_variation"], checked["average_size"])
    return checked


def _partition(
    direction: str = "both", mode: str = "blackhole", *, toxicity: float = 1.0
) -> FaultPlan:
    return plan_partition(direction, mode, toxicity)


Builder = Callable[..., FaultPlan]

KINDS: dict[str, Builder] = {
    "latency": latency,
    "bandwidth": bandwidth,
    "slow_close": slow_close,
    "timeout": timeout,
    "reset_peer": reset_peer,
    "slicer": slicer,
    "limit_data": limit_data,
    "partition": _partition,
    "down": down,
    "chaos": chaos,
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class FaultKind:
    """A fault kind another plugin adds (``pytest_resilience_fault_kinds``).

    ``plan`` validates its arguments (raising :class:`ConfigurationError` for a bad
    one) and returns the :class:`FaultPlan` to apply; its signature is the one the
    service method, ``resilience.fault`` and the marker accept.  ``help`` is the
    marker's line in ``pytest --markers``.
    """

    name: str
    plan: Builder
    help: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigurationError(
                f"FaultKind name {self.name!r} must be a Python identifier (it becomes a "
                "marker name), e.g. 'packet_loss'."
            )
        if not callable(self.plan):
            raise ConfigurationError(
                f"FaultKind {self.name!r}: plan must be a function returning a FaultPlan, "
                f"got {self.plan!r}."
            )
        if not isinstance(self.help, str) or not self.help.strip():
            raise ConfigurationError(
                f"FaultKind {self.name!r}: help must be a non-empty string (the marker's "
                "line in pytest --markers)."
            )


def _builder(kind: str, extra: Mapping[str, FaultKind] | None) -> Builder | None:
    builder = KINDS.get(kind)
    if builder is None and extra is not None and kind in extra:
        builder = extra[kind].plan
    return builder


def plan(
    kind: str,
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    extra: Mapping[str, FaultKind] | None = None,
) -> FaultPlan:
    """Plan fault ``kind`` from call arguments, with a clear error for a bad one.

    ``extra`` holds the kinds plugins added (a session's ``fault_kinds``).
    """
    builder = _builder(kind, extra)
    if builder is None:
        names = sorted([*KINDS, *(extra or {})])
        raise ConfigurationError(
            f"unknown fault kind {kind!r}; use one of {', '.join(names)}, "
            "or chaos(type=...) for any other Toxiproxy toxic."
        )
    kwargs = dict(kwargs or {})
    parameters = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            raise ConfigurationError(
                f"{kind}: unknown argument {unknown[0]!r}; it takes {signature_of(kind, extra)}."
            )
    try:
        inspect.signature(builder).bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"{kind}: {exc}; it takes {signature_of(kind, extra)}.") from None
    if kind in KINDS:
        return builder(*args, **kwargs)
    try:
        planned = builder(*args, **kwargs)
    except ConfigurationError:
        raise
    except Exception as exc:  # a plugin's kind that did not expect these arguments
        raise ConfigurationError(
            f"fault kind {kind!r} failed on its arguments ({exc!r}); make its plan function "
            "raise ConfigurationError saying what to pass instead."
        ) from exc
    if not isinstance(planned, FaultPlan):
        raise ConfigurationError(
            f"fault kind {kind!r} returned {planned!r} ({type(planned).__name__}), not a "
            "FaultPlan; its plan function must return FaultPlan(kind, toxics=(ToxicSpec(...),))."
        )
    return planned


def signature_of(kind: str, extra: Mapping[str, FaultKind] | None = None) -> str:
    """The argument list of fault ``kind``, for help and error messages."""
    builder = _builder(kind, extra)
    assert builder is not None, kind
    parts = []
    for p in inspect.signature(builder).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            parts.append("**attributes")
        elif p.default is p.empty:
            parts.append(p.name)
        else:
            parts.append(f"{p.name}={p.default!r}")
    return f"({', '.join(parts)})"
