"""The one path every verdict takes, from the assertion call to its report entry.

``service.assert_*``, ``resilience.assert_*`` and ``run.assert_*`` check their own
arguments, gather the records they judge, and hand both to :meth:`Verdicts.judge`
with the pure check that decides (``assertions.check_*``).  ``judge`` runs the check,
puts the outcome on the test's timeline as a :class:`~.observe.VerdictEvent` (the
report, the SVG timeline and the ``pytest_resilience_event`` hook read it there), and
gives a failure the seed that replays the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .assertions.report import ResilienceAssertionError
from .clock import CLOCK
from .observe.records import VerdictEvent

if TYPE_CHECKING:
    from .evidence import Evidence
    from .http.records import Exchange
    from .observe.timeline import Timeline


class Verdicts:
    """Runs the verdicts of one test (or of a run made outside a test: no timeline, no seed)."""

    def __init__(
        self, timeline: Timeline | None = None, seed: int | None = None, origin: float = 0.0
    ) -> None:
        self._timeline = timeline
        self._seed = seed
        self._origin = origin

    @property
    def origin(self) -> float:
        """Where a failure's table counts t+ms from: the start of the test (of the example,
        under explore)."""
        return self._timeline.started_at if self._timeline is not None else self._origin

    def judge(self, service: str, check: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Run ``check(*args, origin=..., **kwargs)``, the verdict ``assert_<name>`` of
        ``check_<name>`` on ``service`` ("" for one on the client's calls), and record it."""
        __tracebackhide__ = True
        name = "assert_" + check.__name__.removeprefix("check_")
        try:
            check(*args, origin=self.origin, **kwargs)
        except AssertionError as exc:
            # Ours carry the replay seed; a bare one (an ``assert`` in a user's ``group=``
            # or predicate) is still a verdict that broke, and is recorded as one.
            if isinstance(exc, ResilienceAssertionError):
                exc.seed = self._seed
            lines = str(exc).splitlines()
            self._record(service, name, lines[0] if lines else type(exc).__name__)
            raise
        self._record(service, name, None)

    def judge_exchanges(
        self,
        evidence: Evidence,
        service: str,
        check: Callable[..., None],
        *args: Any,
        failure_statuses: Iterable[Any] | None = None,
        exchanges: Sequence[Exchange] | None = None,
        **kwargs: Any,
    ) -> None:
        """:meth:`judge` a check over ``service``'s exchanges in ``evidence`` (or over
        ``exchanges``, a selection of them), with the verdict's ``failure_statuses``, else
        the service's failure set."""
        __tracebackhide__ = True
        from .assertions.operations import FailureSet

        failures = (
            evidence.failure_sets[service]
            if failure_statuses is None
            else FailureSet(failure_statuses)
        )
        judged = evidence.exchanges[service] if exchanges is None else exchanges
        self.judge(service, check, judged, *args, failure_statuses=failures, **kwargs)

    def _record(self, service: str, name: str, broken: str | None) -> None:
        if self._timeline is not None:
            self._timeline.add(
                VerdictEvent(CLOCK.now(), service, name, broken is None, broken or "")
            )
