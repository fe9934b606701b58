"""Running a body under explore: Hypothesis draws each schedule and shrinks a failing one;
between examples the test is put back in place (:meth:`Resilience._restarter`).

Hypothesis is imported here only, when a test explores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..assertions.report import InsufficientEvidence
from ..clock import real_monotonic
from ..errors import ConfigurationError
from ..markers import MarkerFault, parse_marker
from ..markers.windows import missing_service, opened
from ..seed import derive
from . import (
    KINDS,
    LENGTHS,
    PARAMS,
    SHORTEST_SPAN,
    STARTS,
    Exploration,
    ExploreSpec,
    Schedule,
)

CONFIRM = 2
"""Runs in a row a schedule must fail to count as failing (see ``example`` in
:func:`explore`)."""

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from ..resilience import Resilience


def schedules(
    services: Sequence[tuple[str, bool]], spec: ExploreSpec, span: float
) -> SearchStrategy[Schedule]:
    """Schedules of at most ``spec.max_faults`` faults on ``services`` (name, is HTTP), each
    starting within the first ``span`` seconds; a TCP fault lasts one of ``LENGTHS``.

    Shaped for shrinking: deleting list items gives fewer faults; each fault draws its
    service, then its kind (simplest first), its parameters, its start and its length,
    all as choices that shrink toward the first option or the smallest number.
    """
    from hypothesis import strategies as st

    slot = span / STARTS
    lengths = [length for length in LENGTHS if length <= max(3.0, span)]

    @st.composite
    def fault(draw: Callable[[SearchStrategy[Any]], Any]) -> MarkerFault:
        # Every fault makes the same choices, in the order they weigh: service, kind, two
        # parameters, start, length (unused ones are drawn and ignored).  Hypothesis
        # prefers shorter choice sequences, so a kind with fewer parameters would
        # otherwise win over a simpler one listed before it.
        name, http = draw(st.sampled_from(services))
        kind = draw(st.sampled_from([k for k in spec.kinds if http or not KINDS[k].http]))
        params = KINDS[kind].params
        picks = [
            draw(st.integers(0, len(params[i].options) - 1 if i < len(params) else 1))
            for i in range(PARAMS)
        ]
        arguments = {p.name: p.options[pick] for p, pick in zip(params, picks, strict=False)}
        if kind == "partition" and arguments["mode"] == "refuse":
            arguments["direction"] = "both"  # the proxy stops listening: both ways at once
        arguments["after"] = round(draw(st.integers(0, STARTS - 1)) * slot, 3)
        length = lengths[draw(st.integers(0, len(lengths) - 1))]
        if not KINDS[kind].http:
            arguments["duration"] = length
        return parse_marker(kind, (name,), arguments)

    # At least one fault: the body ran with none first.
    return st.lists(fault(), min_size=1, max_size=spec.max_faults).map(
        lambda fs: Schedule(tuple(fs))
    )


def _services(res: Resilience, spec: ExploreSpec) -> list[tuple[str, bool]]:
    """The services explore puts faults on: (name, is HTTP), those the spec names or all."""
    from ..services.http import HttpService

    existing = res.services
    names = spec.services if spec.services is not None else tuple(existing)
    unknown = [n for n in names if n not in existing]
    if unknown or not names:
        listed = ", ".join(repr(n) for n in existing) or "none"
        what = f"names {unknown[0]!r}, a service" if unknown else "found no service"
        raise ConfigurationError(
            f"explore {what} the test has not made before its body (services: {listed}); make "
            "the services in a fixture, or name existing ones in services=."
        )
    http_only = all(KINDS[k].http for k in spec.kinds)
    chosen = [(n, isinstance(existing[n], HttpService)) for n in names]
    fitting = [(n, http) for n, http in chosen if http or not http_only]
    if not fitting:
        raise ConfigurationError(
            f"explore draws only HTTP faults (kinds={list(spec.kinds)}) but the services "
            f"{', '.join(repr(n) for n, _ in chosen)} are TCP services; add a TCP kind."
        )
    return fitting


class _Carried(BaseException):
    """An error carried past handlers that would take it for something else."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _NotTheSchedule(_Carried):
    """What went wrong around the body (putting the test back, a fault window, a marker
    naming no service): carried past Hypothesis, which would shrink it as a failure of
    the schedule, and raised as itself."""


class _Failed(_Carried):
    """The body's own failure, carried past the handler of errors around it."""


def explore(
    body: Callable[[], object],
    res: Resilience,
    spec: ExploreSpec,
    *,
    fixed: Sequence[MarkerFault] = (),
) -> Exploration:
    """Run ``body`` once per drawn schedule (plus ``fixed`` faults each time); raise what a
    failing, shrunk schedule raises, with that schedule as paste-ready decorators."""
    __tracebackhide__ = True
    import hypothesis
    from hypothesis import HealthCheck, Phase, errors, given, reject, settings
    from hypothesis.control import currently_in_test_context
    from hypothesis.core import failure_exceptions_to_catch

    if currently_in_test_context():
        raise ConfigurationError(
            "explore cannot run inside a Hypothesis test (@given); drop @given from the test "
            "and let explore draw the schedules."
        )
    failures = failure_exceptions_to_catch()  # pytest.fail and pytest.raises' too
    services = _services(res, spec)
    restart = res._restarter()
    ran = {"examples": 0, "undecided": 0}
    began = real_monotonic()  # real time, whatever clock the test runs on
    failed_at: list[float] = []
    last: list[Schedule] = [Schedule(())]

    def explored(failing: tuple[str, ...] | None = None) -> Exploration:
        res._exploration = Exploration(
            ran["examples"],
            ran["undecided"],
            span,
            failing,
            real_monotonic() - began,
            failed_at[0] - began if failed_at else None,
        )
        return res._exploration

    def run(schedule: Schedule) -> bool:
        """Run the body under ``schedule``; whether its verdicts could decide."""
        __tracebackhide__ = True
        last[0] = schedule
        decided = True
        try:
            restart()
            with opened([*fixed, *schedule.faults], res) as windows:
                try:
                    body()
                except InsufficientEvidence:
                    ran["undecided"] += 1
                    decided = False
                except failures as failure:
                    raise _Failed(failure) from None
            if windows.missing:
                raise ConfigurationError(missing_service(windows.missing[0], res.services))
        except _Failed as failed:
            raise failed.error from None
        except failures as error:
            raise _NotTheSchedule(error) from None
        return decided

    def example(schedule: Schedule) -> None:
        """One schedule for Hypothesis.  The first failure counts at once; after it (while
        shrinking, and in the final replay) a schedule fails only if it fails ``CONFIRM``
        times in a row, so that shrinking settles on a schedule that fails reliably, not
        on the edge of a timing window where it fails one time in two."""
        __tracebackhide__ = True
        if ran["undecided"] >= spec.examples:
            reject()  # as many undecided as examples asked for: stop running the body
        ran["examples"] += 1
        try:
            decided = run(schedule)
        except failures:
            if not failed_at:
                failed_at.append(real_monotonic())
                raise
            for _ in range(CONFIRM - 1):
                ran["examples"] += 1
                try:
                    run(schedule)
                except failures:
                    continue
                return  # it fails only sometimes: not simpler for shrinking's purpose
            raise
        if not decided:
            reject()

    # The body with no fault first: it must pass, and how long it takes sets where faults
    # fall unless span= says.
    span = spec.span or 0.0
    ran["examples"] += 1
    started = real_monotonic()
    try:
        run(Schedule(()))
    except _NotTheSchedule as broken:
        raise broken.error from None
    except failures as exc:
        failed_at.append(real_monotonic())
        explored(())
        _note(exc, _failure_note((), 1, flaky=False))
        raise
    if spec.span is None:
        span = max(SHORTEST_SPAN, round(2 * (real_monotonic() - started), 3))
    test = settings(
        max_examples=spec.examples,
        deadline=None,  # a body takes real time
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        report_multiple_bugs=False,
        suppress_health_check=(HealthCheck.too_slow, HealthCheck.filter_too_much),
    )(given(schedule=schedules(services, spec, span))(example))
    if hypothesis.core.global_force_seed is None:  # --hypothesis-seed, if given, decides
        # What @seed() sets, without its turning the example database off; the key is the
        # test's, so a failure found here is tried first next time.
        test.__dict__.update(
            _hypothesis_internal_use_seed=derive(res.seed, res.test_id, "explore"),
            _hypothesis_internal_database_key=f"pytest-resilience:{res.test_id}".encode(),
        )
    try:
        test()
    except _NotTheSchedule as broken:
        explored()
        raise broken.error from None
    except errors.Unsatisfiable:
        explored()
        raise InsufficientEvidence(
            f"insufficient evidence: every one of the {ran['examples']} schedules explored "
            "left a verdict unable to decide; run a schedule alone (as markers) to see what "
            "each verdict needs."
        ) from None
    except failures as exc:
        failing = tuple(last[0].decorators())
        explored(failing)
        _note(exc, _failure_note(failing, ran["examples"], isinstance(exc, errors.FlakyFailure)))
        raise
    return explored()


def _note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, which Python 3.10 lacks (pytest shows ``__notes__``)."""
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def _failure_note(decorators: Sequence[str], examples: int, flaky: bool) -> str:
    if not decorators:
        return "explore: the test fails with no fault at all; make it pass as it is first."
    lines = "\n".join(f"    {d}" for d in decorators)
    if flaky:
        return (
            f"explore: this schedule failed, then passed when replayed ({examples} schedules "
            "run): the failure depends on timing as well as on the faults; pasted as markers "
            f"it may need a few runs to fail:\n{lines}"
        )
    return (
        f"explore: this schedule fails, shrunk from {examples} schedules run to the fewest, "
        f"simplest, earliest and shortest faults; paste it above the test to reproduce it:\n"
        f"{lines}"
    )
