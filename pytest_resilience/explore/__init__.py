"""Exploration: a test body run under many fault schedules that Hypothesis draws and shrinks.

``@pytest.mark.explore(...)`` (or ``resilience.explore(fn, ...)``) runs the body once
per schedule: a few marker faults on the test's services, each with its window.  The
test's own verdicts and assertions are the property.  A failing schedule is shrunk to
the fewest faults, then the simplest kinds, earliest starts and shortest windows, and
printed as the marker decorators that reproduce it.

This module holds what collection needs (the marker's arguments and the kinds explored)
and imports neither pytest nor Hypothesis; :mod:`.runner` does the running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import validate
from ..errors import ConfigurationError
from ..markers import MarkerFault


@dataclass(frozen=True)
class Param:
    """One parameter of an explored fault and the values it takes, mildest first (where
    shrinking goes: it stops at the mildest value that still fails)."""

    name: str
    options: tuple[Any, ...]


@dataclass(frozen=True)
class Explored:
    """A fault kind explore draws: whether it needs an HTTP service, and its params.

    HTTP faults are drawn without a duration: each ends once it has answered its
    ``count`` (or ``burst``) requests, which shrinks to 1; a window of milliseconds
    would make the shrunk schedule depend on timing."""

    http: bool
    params: tuple[Param, ...]


# Times sit a fifth above round numbers (0.06 s, 120 ms): shrinking stops at the mildest
# value that still fails, which is then clear of a client's round timeout (0.05 s, 0.1 s)
# instead of on it, where a pasted schedule would fail only some of the time.
_MS = (60, 120, 300, 600, 1200, 3000)
KINDS: dict[str, Explored] = {
    "http_faults": Explored(
        True, (Param("status", (503, 500, 502, 504)), Param("count", (1, 2, 3, 5)))
    ),
    "rate_limited": Explored(True, (Param("burst", (1, 2, 3, 5)), Param("retry_after", (1, 2)))),
    "cut_answers": Explored(True, (Param("count", (1, 2, 3)),)),
    "slow_answers": Explored(
        True, (Param("seconds", tuple(ms / 1000 for ms in _MS)), Param("count", (1, 2, 3)))
    ),
    "partition": Explored(
        False,
        (
            Param("mode", ("reset", "refuse", "blackhole")),
            Param("direction", ("both", "downstream", "upstream")),
        ),
    ),
    "reset_peer": Explored(False, (Param("timeout", (0, *_MS)),)),
    "latency": Explored(False, (Param("ms", _MS),)),
    "timeout": Explored(False, (Param("ms", (0, *_MS)),)),
    "limit_data": Explored(False, (Param("bytes", (4096, 1024, 256, 64)),)),
    "slow_close": Explored(False, (Param("delay", _MS),)),
    "bandwidth": Explored(False, (Param("rate", (64, 16, 4, 1)),)),
    "slicer": Explored(False, (Param("average_size", (64, 16, 1)), Param("delay", (0, 120, 1200)))),
}
"""The kinds explore draws, simplest first (shrinking moves toward the front): HTTP
answers, then connection faults.  ``partition`` with ``mode="refuse"`` always cuts both
directions (the proxy stops listening)."""

PARAMS = max(len(k.params) for k in KINDS.values())
"""Parameter choices every drawn fault makes (see :func:`.runner.schedules`)."""

STARTS = 8
"""A fault starts at a whole multiple of ``span / STARTS``, before ``span``."""
LENGTHS = (0.03, 0.06, 0.12, 0.3, 0.6, 1.2, 3.0, 6.0, 12.0, 30.0, 60.0)
"""How long a TCP fault lasts, in seconds, shortest first; those up to ``span`` or 3 s,
whichever is longer.  Independent of the body's own duration, so that a fault can outlast
a client's timeout; coarse on purpose: shrinking stops at the shortest window that still
fails, and a window much finer than the noise of real time would fail at its edge only
some of the times it is pasted."""
SHORTEST_SPAN = 0.1
"""The least span explore draws windows in, in seconds, however quick the body."""
LONGEST_SPAN = 3600.0
"""The longest ``span=`` a user may give, in seconds."""


@dataclass(frozen=True)
class ExploreSpec:
    """The arguments of ``@pytest.mark.explore`` / ``resilience.explore``, checked."""

    # A new default here changes EXPLORE_HELP (markers) and the README's marker list.

    examples: int = 25
    """Schedules to run (passing ones; shrinking a failure runs more)."""
    kinds: tuple[str, ...] = tuple(KINDS)
    services: tuple[str, ...] | None = None
    """None: every service the test made before its body."""
    max_faults: int = 2
    span: float | None = None
    """Seconds: faults start within the first ``span`` of the body; None: twice as long
    as the body takes with no fault (at least ``SHORTEST_SPAN``)."""

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> ExploreSpec:
        """Check the keyword arguments; raise ConfigurationError naming the bad one."""
        known = ("examples", "kinds", "services", "max_faults", "span")
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise ConfigurationError(
                f"unknown argument {unknown[0]!r}; explore takes examples=25, kinds=None, "
                "services=None, max_faults=2, span=None."
            )
        examples = validate.integer(kwargs.get("examples", 25), "examples", minimum=1)
        max_faults = validate.integer(kwargs.get("max_faults", 2), "max_faults", minimum=1)
        span = kwargs.get("span")
        if span is not None:
            span = validate.number(
                span, "span (seconds)", minimum=SHORTEST_SPAN, maximum=LONGEST_SPAN
            )
        kinds = _names(kwargs.get("kinds"), "kinds", tuple(KINDS)) or tuple(KINDS)
        services = _names(kwargs.get("services"), "services", None)
        return cls(examples, kinds, services, max_faults, span)


def _names(value: Any, what: str, allowed: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigurationError(
            f"{what} must be a non-empty list of names, e.g. {what}=[{(allowed or ['api'])[0]!r}], "
            f"got {value!r}."
        )
    for name in value:
        if not isinstance(name, str) or (allowed is not None and name not in allowed):
            listed = ", ".join(allowed or [])
            raise ConfigurationError(
                f"{what}: {name!r} is not one "
                + (f"explore draws ({listed})." if allowed else "name of a service.")
            )
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True)
class Schedule:
    """The faults of one example, as markers."""

    faults: tuple[MarkerFault, ...]

    def decorators(self) -> list[str]:
        """The marker decorators that apply this schedule, earliest first."""
        return [f.decorator() for f in sorted(self.faults, key=lambda f: f.after)]

    def __repr__(self) -> str:
        return "Schedule(" + ", ".join(self.decorators()) + ")" if self.faults else "Schedule()"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # how Hypothesis prints the failing example


@dataclass(frozen=True)
class Exploration:
    """What one explore ran: ``examples`` schedules, ``undecided`` of them left without
    enough evidence; with a failure, the shrunk ``schedule`` that fails."""

    examples: int
    undecided: int
    span: float
    """The stretch of the body faults fell in, in seconds."""
    failing: tuple[str, ...] | None = None
    """The decorators of the shrunk failing schedule (empty: it fails with no fault)."""
    seconds: float = 0.0
    """How long exploring took (real time), shrinking included."""
    first_failure: float | None = None
    """Seconds from the start to the first schedule that failed; None if none did."""
