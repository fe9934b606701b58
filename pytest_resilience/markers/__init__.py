"""Fault markers: their help text and their validation, independent of pytest.

Every fault marker takes the service name first, then the fault's own
arguments (those of the matching service method), then ``after=`` and
``duration=`` (seconds from the start of the test body) and ``toxicity=``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import validate
from ..errors import ConfigurationError
from ..faults import kinds
from ..faults.kinds import FaultKind
from ..faults.plan import FaultPlan

FAULT_MARKERS: dict[str, str] = {
    "partition": "cut the service off (blackhole hangs; refuse and reset fail fast)",
    "latency": "delay data by ms milliseconds, plus or minus jitter",
    "reset_peer": "reset connections (RST) after timeout milliseconds",
    "timeout": "drop data and close after ms milliseconds (0: hang until healed)",
    "bandwidth": "cap throughput at rate KB/s",
    "slow_close": "delay each close by delay milliseconds",
    "slicer": "deliver data in slices of about average_size bytes, delay microseconds apart",
    "limit_data": "close connections after bytes bytes",
    "chaos": "any Toxiproxy toxic by type name and attributes (custom builds too)",
    "rate_limited": "answer the next burst requests with status and Retry-After (HTTP services)",
    "http_faults": "answer status to count requests, or to a share rate of them (HTTP services)",
    "slow_answers": "hold the next count answers (None: every one) for seconds (HTTP services)",
    "cut_answers": "close the connection halfway through the next count answers (HTTP services)",
}

EXPLORE_HELP = (
    "explore(examples=25, kinds=None, services=None, max_faults=2, span=None): run the body "
    "under that many fault schedules drawn by Hypothesis on the test's services; a failing "
    "one is shrunk and printed as the markers that reproduce it."
)

VIRTUAL_TIME_HELP = (
    "virtual_time: run the test (setup to teardown) on virtual time: time.sleep in its threads "
    "ends at once and moves the clock the plugin records with (and time.monotonic, time.time) "
    "forward."
)

# HTTP markers: the HTTP service method each one calls (the marker takes its arguments).
HTTP_MARKERS: dict[str, str] = {
    "rate_limited": "rate_limit",
    "http_faults": "fail",
    "slow_answers": "delay",
    "cut_answers": "cut",
}
_SHAPE = "json=None, body=None, content_type=None, headers=None"
HTTP_SIGNATURES = {
    "rate_limited": f"burst=None, retry_after=None, status=429, *, rate=None, retry_after_ms=None, {_SHAPE}",
    "http_faults": f"status=503, count=None, *, rate=None, {_SHAPE}",
    "slow_answers": f"seconds, count=None, *, status=None, {_SHAPE}",
    "cut_answers": f"count=1, *, status=None, {_SHAPE}",
}
"""The arguments of each HTTP marker as help shows them: those of its step builder
(``http.script``), kept here so that loading the plugin imports no HTTP code."""


class MarkerError(ConfigurationError):
    """A fault marker that could not be applied during the body; the message names it."""


@dataclass(frozen=True)
class MarkerFault:
    """A validated fault marker: which fault, on which service, in which window."""

    marker: str
    service: str
    plan: FaultPlan | None
    """The toxics of a TCP fault; None for an HTTP fault."""
    after: float = 0.0
    duration: float | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def apply_to(self, service: Any) -> Any:
        """Apply the fault to ``service`` and return its handle (something with ``heal()``)."""
        if self.plan is not None:
            return service.apply(self.plan)
        method = HTTP_MARKERS[self.marker]
        if not hasattr(service, "route"):
            raise MarkerError(
                f"@pytest.mark.{self.marker}({self.service!r}) needs an HTTP service, but "
                f"{self.service!r} is a TCP service; create it with resilience.http_service()."
            )
        return getattr(service, method)(**self.arguments)

    def decorator(self) -> str:
        """``@pytest.mark.<marker>(...)`` that applies this fault, as code to paste."""
        arguments = [_code(self.service)]
        arguments += [f"{k}={_code(v)}" for k, v in self.arguments.items()]
        if self.after:
            arguments.append(f"after={self.after:g}")
        if self.duration is not None:
            arguments.append(f"duration={self.duration:g}")
        return f"@pytest.mark.{self.marker}({', '.join(arguments)})"

    def lacking(self, known: Collection[str], backend: str) -> str | None:
        """Why ``backend``, which has only the toxic types ``known``, cannot apply this."""
        for spec in self.plan.toxics if self.plan is not None else ():
            if spec.type not in known:
                return (
                    f"{backend} has no {spec.type!r} toxic (it has {', '.join(sorted(known))}); "
                    "use one of those, or a Toxiproxy build that has it (--toxiproxy=spawn or "
                    "a URL)."
                )
        return None

    @property
    def window(self) -> str:
        end = "end of test" if self.duration is None else f"{self.after + self.duration:g}s"
        return f"{self.after:g}s to {end}"


def _code(value: Any) -> str:
    """``value`` as Python source, strings in double quotes (as ruff formats them)."""
    if isinstance(value, str) and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return repr(value)


def marker_help(name: str, extra: Mapping[str, FaultKind] | None = None) -> str:
    """The line ``pytest --markers`` shows for fault marker ``name``.

    ``extra`` holds the kinds plugins added (a session's ``fault_kinds``).
    """
    if name in HTTP_MARKERS:
        signature = f"service, {HTTP_SIGNATURES[name]}, after=0, duration=None"
        return f"{name}({signature}): {FAULT_MARKERS[name]}, during the test body."
    text = FAULT_MARKERS[name] if name in FAULT_MARKERS else (extra or {})[name].help
    params = kinds.signature_of(name, extra)[1:-1].split(", ")
    var_keyword = [p for p in params if p.startswith("**")]
    named = [p for p in params if p and not p.startswith("**")]
    signature = ", ".join(["service", *named, "after=0", "duration=None", *var_keyword])
    return f"{name}({signature}): {text.rstrip('.')}, on the named service during the test body."


def is_fault_marker(name: str, extra: Mapping[str, FaultKind] | None = None) -> bool:
    """Whether ``@pytest.mark.<name>`` is a fault marker (built in, or a kind a plugin added)."""
    return name in FAULT_MARKERS or (extra is not None and name in extra)


def belongs_to_pytest_timeout(mark: Any) -> bool:
    """``@pytest.mark.timeout(5)`` is pytest-timeout's marker, not our fault; leave it alone."""
    return bool(mark.name == "timeout" and (not mark.args or not isinstance(mark.args[0], str)))


MAX_WINDOW = 1e6
"""The longest ``after=`` or ``duration=`` a marker takes, in seconds (over 11 days)."""


def _seconds(marker: str, name: str, value: Any, *, allow_zero: bool) -> float:
    return validate.number(value, f"{name} (seconds)", above=not allow_zero, maximum=MAX_WINDOW)


def parse_marker(
    marker: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    extra: Mapping[str, FaultKind] | None = None,
) -> MarkerFault:
    """Validate a fault marker's arguments; raise ConfigurationError naming the bad one.

    ``extra`` holds the kinds plugins added (a session's ``fault_kinds``).
    """
    if not args or not isinstance(args[0], str):
        raise ConfigurationError(
            f'the first argument must be the service name, e.g. @pytest.mark.{marker}("redis", ...)'
        )
    service, rest = args[0], args[1:]
    options = dict(kwargs)
    after = _seconds(marker, "after", options.pop("after", 0), allow_zero=True)
    duration = options.pop("duration", None)
    if duration is not None:
        duration = _seconds(marker, "duration", duration, allow_zero=False)
    if marker in HTTP_MARKERS:
        return MarkerFault(
            marker, service, None, after, duration, _http_arguments(marker, rest, options)
        )
    plan = kinds.plan(marker, rest, options, extra)
    return MarkerFault(marker, service, plan, after, duration, options)


INTERNAL = frozenset({"error", "route", "rng"})
"""Step builder parameters the service fills in, not the marker."""


def _http_arguments(marker: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """An HTTP marker's arguments by name, checked by the step builder its method uses."""
    import inspect

    from ..http import script

    build = getattr(script, f"{HTTP_MARKERS[marker]}_step")
    public = HTTP_SIGNATURES[marker]
    parameters = [p for p in inspect.signature(build).parameters.values() if p.name not in INTERNAL]
    signature = inspect.Signature(parameters)
    unknown = sorted(set(kwargs) - {p.name for p in parameters})
    if unknown:
        raise ConfigurationError(f"unknown argument {unknown[0]!r}; it takes {public}")
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"{exc}; it takes {public}") from None
    arguments = dict(bound.arguments)
    build(**arguments)  # validates; the step itself is made when the window opens
    return arguments
