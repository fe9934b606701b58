"""pytest wiring: options, markers, fixtures, header and cleanup; the work lives elsewhere."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from . import extensions
from .errors import ResilienceError
from .markers import (
    EXPLORE_HELP,
    FAULT_MARKERS,
    VIRTUAL_TIME_HELP,
    MarkerFault,
    marker_help,
)
from .options import (
    INI_BACKEND,
    INI_BINARY,
    INI_CLOCK,
    INI_LISTEN_HOST,
    INI_REACH_HOST,
    INI_REPORT,
    INI_SEED,
    OPTION_BACKEND,
    OPTION_BINARY,
    OPTION_CLOCK,
    OPTION_LISTEN_HOST,
    OPTION_REACH_HOST,
    OPTION_REPORT,
    OPTION_SEED,
    parse_backend,
    parse_clock,
    parse_seed,
)
from .report.summary import Collector, summary_lines
from .runtime import heap
from .session import ResilienceSession

if TYPE_CHECKING:
    from faker import Faker

    from .explore import ExploreSpec
    from .report.record import TestRecord
    from .resilience import Resilience
    from .runtime.pacing import PacingRecorder
    from .toxiproxy.backends import Backend

SESSION = pytest.StashKey[ResilienceSession]()
MARKERS = pytest.StashKey[list[MarkerFault]]()
EXPLORE: pytest.StashKey[ExploreSpec] = pytest.StashKey()
MARKER_ERROR = pytest.StashKey[str]()
RECORD: pytest.StashKey[TestRecord] = pytest.StashKey()
COLLECTOR = pytest.StashKey[Collector]()
TIMELINES = pytest.StashKey[dict[str, Any]]()
FAILED = pytest.StashKey[bool]()
ORPHAN_WATCH = pytest.StashKey[Any]()
VIRTUAL = pytest.StashKey[bool]()
"""On an item: it runs on virtual time, from setup to teardown."""
CLOCK_BLOCK = pytest.StashKey[contextlib.ExitStack]()
"""On an item on virtual time: its open block, closed after teardown (on real time, its
recording of the callers' sleeps)."""
PACING: pytest.StashKey[PacingRecorder] = pytest.StashKey()
"""On an item on real time using ``resilience``: what its callers asked to sleep."""
_USES_PLUGIN = ("resilience", "toxiproxy")

T = TypeVar("T")


def _usage(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None

    return convert


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resilience", "resilience testing (pytest-resilience)")
    group.addoption(
        OPTION_BACKEND,
        dest="resilience_backend",
        type=_usage(parse_backend),
        default=None,
        help="Toxiproxy to use: auto (TOXIPROXY_URL, then toxiproxy-server on PATH, then "
        "embedded), embedded, spawn, or a URL such as http://127.0.0.1:8474.",
    )
    group.addoption(
        OPTION_BINARY,
        dest="resilience_binary",
        default=None,
        help="path of the toxiproxy-server binary to spawn (default: found on PATH).",
    )
    group.addoption(
        OPTION_LISTEN_HOST,
        dest="resilience_listen_host",
        default=None,
        help="address Toxiproxy's proxies bind (default 127.0.0.1; 0.0.0.0 for a remote "
        "Toxiproxy whose proxies the tests reach over the network).",
    )
    group.addoption(
        OPTION_REACH_HOST,
        dest="resilience_reach_host",
        default=None,
        help="address where Toxiproxy reaches the plugin's own listeners (the HTTP layer binds "
        "there; default 127.0.0.1; e.g. the host's bridge address for a Toxiproxy container).",
    )
    group.addoption(
        OPTION_SEED,
        dest="resilience_seed",
        type=_usage(parse_seed),
        default=None,
        help="seed for everything random (faults, fake data); the header prints the one used.",
    )
    parser.addini(INI_BACKEND, "default for --toxiproxy", default="auto")
    parser.addini(INI_BINARY, "default for --toxiproxy-bin", default="")
    parser.addini(INI_LISTEN_HOST, "default for --toxiproxy-listen-host", default="127.0.0.1")
    parser.addini(INI_REACH_HOST, "default for --toxiproxy-reach-host", default="127.0.0.1")
    group.addoption(
        OPTION_REPORT,
        dest="resilience_report",
        default=None,
        metavar="PATH",
        help="write a JSON report of every resilience test (faults, records, verdicts) to "
        "PATH, and an SVG timeline of each failing one next to it.",
    )
    group.addoption(
        OPTION_CLOCK,
        dest="resilience_clock",
        type=_usage(parse_clock),
        default=None,
        help="real (default) or virtual: virtual runs every test on virtual time, from "
        "setup to teardown, as @pytest.mark.virtual_time does for one test.",
    )
    parser.addini(INI_CLOCK, "default for --resilience-clock", default="real")
    parser.addini(INI_SEED, "default for --resilience-seed", default="")
    parser.addini(INI_REPORT, "default for --resilience-report", default="")


def _setting(config: pytest.Config, dest: str, ini: str, parse: Callable[[str], Any]) -> Any:
    value = getattr(config.option, dest)
    if value is None and config.getini(ini):
        try:
            value = parse(str(config.getini(ini)))
        except ValueError as exc:
            raise pytest.UsageError(f"ini option {ini}: {exc}") from None
    return value


def pytest_configure(config: pytest.Config) -> None:
    for name in FAULT_MARKERS:
        config.addinivalue_line("markers", marker_help(name))
    config.addinivalue_line("markers", EXPLORE_HELP)
    config.addinivalue_line("markers", VIRTUAL_TIME_HELP)
    seed = _setting(config, "resilience_seed", INI_SEED, parse_seed)
    workerinput = getattr(config, "workerinput", None)
    if seed is None and workerinput is not None:
        seed = workerinput.get("resilience_seed")
    if seed is None:
        from .seed import new_seed

        seed = new_seed()
    config.stash[SESSION] = ResilienceSession(
        _setting(config, "resilience_backend", INI_BACKEND, parse_backend) or "auto",
        binary=_setting(config, "resilience_binary", INI_BINARY, str) or None,
        listen_host=_setting(config, "resilience_listen_host", INI_LISTEN_HOST, str),
        reach_host=_setting(config, "resilience_reach_host", INI_REACH_HOST, str),
        seed=seed,
        worker=os.environ.get("PYTEST_XDIST_WORKER", "main"),
    )
    extensions.configure(config, config.stash[SESSION])
    if workerinput is not None:
        from .runtime.orphan import OrphanWatch

        config.stash[ORPHAN_WATCH] = OrphanWatch().start()
    collector = config.stash[COLLECTOR] = Collector()
    config.pluginmanager.register(collector, "resilience-report-collector")
    config.pluginmanager.register(_ClockBlocks(), "resilience-clock-blocks")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    # xdist workers re-parse the command line; without this each draws its own seed.
    node.workerinput["resilience_seed"] = node.config.stash[SESSION].seed


def pytest_report_header(config: pytest.Config) -> str:
    state = config.stash[SESSION]
    return (
        f"resilience: toxiproxy={state.choice}, seed={state.seed} "
        f"(replay with {OPTION_SEED}={state.seed})"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from .collected import collect

    added = config.stash[SESSION].fault_kinds
    suite = _setting(config, "resilience_clock", INI_CLOCK, parse_clock) == "virtual"
    for item in items:
        found = collect(item, added, suite)
        item.stash[VIRTUAL] = found.virtual
        if found.errors:
            item.stash[MARKER_ERROR] = "\n".join(found.errors)
        if found.explore is not None:
            item.stash[EXPLORE] = found.explore
        if found.faults or found.explore is not None:
            item.stash[MARKERS] = found.faults
            fixturenames: list[str] = getattr(item, "fixturenames", [])
            if "resilience" not in fixturenames:
                fixturenames.append("resilience")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    # Start the backend before the terminal reports collection, so it can name it.
    if session.config.option.collectonly:
        return
    if any(set(_USES_PLUGIN) & set(getattr(i, "fixturenames", ())) for i in session.items):
        try:
            backend = session.config.stash[SESSION].backend
        except Exception:
            return  # every test that needs the backend fails with the reason
        if backend.toxic_types is not None:  # a fault marker it cannot apply fails now
            from .collected import lacking

            for item in session.items:
                faults: list[MarkerFault] = item.stash.get(MARKERS, [])
                errors = lacking(item, faults, backend.toxic_types, backend.kind)
                if errors:
                    earlier = item.stash.get(MARKER_ERROR, "")
                    item.stash[MARKER_ERROR] = "\n".join([earlier, *errors] if earlier else errors)


def pytest_report_collectionfinish(config: pytest.Config) -> str | None:
    state = config.stash[SESSION]
    return f"resilience: {state.backend.describe()}" if state.started else None


def pytest_runtest_setup(item: pytest.Item) -> None:
    error = item.stash.get(MARKER_ERROR, None)
    if error:
        pytest.fail(error, pytrace=False)


class _ClockBlocks:
    """Opens a test's block on virtual time before its fixtures are set up (first of the
    setup hooks' wrappers), and closes it after its teardown (the last); on real time,
    the same span for the recording of its callers' sleeps."""

    open: contextlib.ExitStack | None = None
    paced: contextlib.ExitStack | None = None
    """A test's recording of its callers' sleeps, on real time (:mod:`.runtime.pacing`)."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        if item.stash.get(VIRTUAL, False) and MARKER_ERROR not in item.stash:
            from .runtime.virtual import virtual_time

            block = item.stash[CLOCK_BLOCK] = self.open = contextlib.ExitStack()
            block.enter_context(virtual_time())
        elif "resilience" in getattr(item, "fixturenames", ()):
            # On real time the timing verdicts read what the code's callers asked to
            # sleep (observe/pacing.py): noted from before the fixtures' setup to after
            # their teardown, so that a fixture's own patch of time.sleep is undone inside.
            from .runtime.pacing import PacingRecorder

            recorder = item.stash[PACING] = PacingRecorder()
            block = item.stash[CLOCK_BLOCK] = self.paced = contextlib.ExitStack()
            block.enter_context(recorder.recording())
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        failed = True
        try:
            result = yield
            failed = False
            return result
        finally:
            from .clock import CLOCK

            block = item.stash.get(CLOCK_BLOCK, None)
            if block is not None:
                del item.stash[CLOCK_BLOCK]
                self.open = self.paced = None
                block.close()
            if PACING in item.stash:  # it holds the test's services: let them go
                del item.stash[PACING]
            opener = None
            if CLOCK.virtual is not None:
                from .runtime.virtual import close_left_open

                opener = close_left_open()
            CLOCK.rewind()  # the next test's records compare with time.monotonic() again
            if opener is not None and not failed:  # else the teardown's own error stands
                raise ResilienceError(
                    f"a block on virtual time opened by thread {opener!r} was still open "
                    "after the test's teardown; the plugin closed it so that later tests "
                    "run on real time: end the `with virtual_time()` block (join the "
                    "thread that opened it) before the test returns."
                )

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any) -> Generator[None, object, object]:
        if self.open is None or fixturedef.scope == "function":
            return (yield)
        from .runtime.virtual import outside_the_block

        with outside_the_block():  # it outlives the test: real time, no participants
            return (yield)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """A run cut short (Ctrl-C) before a test's teardown: its block closes here, so
        that the patches go and open waits end in real time."""
        for block in (self.open, self.paced):
            if block is not None:
                block.close()
        self.open = self.paced = None
        from .runtime import pacing

        pacing.sweep()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    markers = item.stash.get(MARKERS, None)
    res: Resilience | None = getattr(item, "funcargs", {}).get("resilience")
    with _clock(item, res):
        if res is None:
            return (yield)
        with heap.frozen():  # a collection during the body walks only what the body makes
            if not markers or EXPLORE in item.stash:  # explore opens the windows per example
                return (yield)
            return (yield from _with_marker_windows(res, markers, item.nodeid))


def _clock(item: pytest.Item, res: Resilience | None) -> contextlib.AbstractContextManager[object]:
    """The body's clock: on virtual time (the test's block, opened at setup, which the
    ``resilience`` fixture's record then names), or left as it is."""
    if item.stash.get(VIRTUAL, False) and res is not None:
        return res.virtual_time()
    return contextlib.nullcontext()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    spec = pyfuncitem.stash.get(EXPLORE, None)
    if spec is None:
        return None
    from .explore.runner import explore

    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    res: Resilience = pyfuncitem.funcargs["resilience"]  # type: ignore[assignment]
    fixed: list[MarkerFault] = pyfuncitem.stash.get(MARKERS, [])
    explore(lambda: pyfuncitem.obj(**args), res, spec, fixed=fixed)
    return True


def _with_marker_windows(
    res: Resilience, markers: list[MarkerFault], nodeid: str
) -> Generator[None, object, object]:
    """The test body, with its fault markers' windows opened and closed around it."""
    from .markers import MarkerError
    from .markers.windows import missing_service, opened

    try:
        with opened(markers, res) as windows:
            result = yield
    except MarkerError as exc:
        unapplied = str(exc)
    else:
        unapplied = ""
    if unapplied:  # outside the except: no "during handling of the above exception"
        pytest.fail(f"{nodeid}: {unapplied}", pytrace=False)
    if windows.missing:
        pytest.fail(missing_service(windows.missing[0], res.services), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
        if call.excinfo is not None and report.failed:
            _backend_error_in_one_line(item, call.excinfo, report)
    record = item.stash.get(RECORD, None)
    if record is None and report.when == "teardown" and "resilience" in _fixtures(item):
        from .report.record import empty_record

        record = empty_record(item.config.stash[SESSION].seed, _backend(item.config))
    if report.when == "teardown" and record is not None:
        from .report.summary import sections_of

        # Plain attributes of a report travel to the xdist controller with it: the record
        # as JSON data, which the summary and the JSON report read back into its types.
        report.resilience = record.to_json()  # type: ignore[attr-defined]
        report.resilience_sections = sections_of(item.config.hook, item, record)  # type: ignore[attr-defined]
        from .report.html import add_extra, html_report_requested

        if item.stash.get(FAILED, False) and html_report_requested(item.config):
            from .report.svg import render_timeline

            with contextlib.suppress(Exception):  # a picture must not end the run
                add_extra(report, render_timeline(item.nodeid, record))
    return report


def _backend_error_in_one_line(
    item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException], report: pytest.TestReport
) -> None:
    """A Toxiproxy that stopped answering the body's call fails the test with its sentence
    and the test's line that made the call, not the plugin's frames (as in setup); with
    ``--tb=long`` or ``--full-trace``, the whole traceback."""
    from .errors import BackendError

    option = item.config.option
    if getattr(option, "tbstyle", "auto") == "long" or getattr(option, "fulltrace", False):
        return
    if excinfo.errisinstance(BackendError):
        mine = [e for e in excinfo.traceback if e.path == getattr(item, "path", None)]
        where = f"{item.path.name}:{mine[-1].lineno + 1}: " if mine else ""
        report.longrepr = f"{where}{excinfo.value}"


def _fixtures(item: pytest.Item) -> list[str]:
    return list(getattr(item, "fixturenames", ()))


def _report_path(config: pytest.Config) -> str | None:
    return getattr(config.option, "resilience_report", None) or config.getini(INI_REPORT) or None


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    state = config.stash[SESSION]
    try:
        path = _report_path(config)
        if path and not hasattr(config, "workerinput"):
            from pathlib import Path

            from .report.files import write_reports

            backend = state.backend.describe() if state.started else None
            config.stash[TIMELINES] = write_reports(
                Path(path), config.stash[COLLECTOR].entries, state.seed, backend
            )
    finally:
        # Safety net: fixtures are torn down by now; reap whatever a crash left behind.
        state.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    entries = config.stash[COLLECTOR].entries
    timelines = config.stash.get(TIMELINES, {})
    lines = summary_lines(entries, verbose=config.option.verbose > 0, timelines=timelines)
    path = _report_path(config)
    if not lines and not path:
        return
    terminalreporter.write_sep("=", "resilience")
    for line in lines:
        terminalreporter.write_line(line)
    if path:
        terminalreporter.write_line(f"resilience report: {path}")


def pytest_unconfigure(config: pytest.Config) -> None:
    watch = config.stash.get(ORPHAN_WATCH, None)
    if watch is not None:
        watch.stop()
    state = config.stash.get(SESSION, None)
    if state is not None:
        state.close()


def _one_line(call: Callable[[], T]) -> T:
    """``call()``; a Toxiproxy that cannot be reached fails the test with its sentence alone."""
    from .errors import BackendError

    try:
        return call()
    except BackendError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture(scope="session")
def toxiproxy(pytestconfig: pytest.Config) -> Backend:
    """The session's Toxiproxy control plane (real server, remote, or embedded engine)."""
    return _one_line(lambda: pytestconfig.stash[SESSION].backend)


@pytest.fixture
def resilience(request: pytest.FixtureRequest, toxiproxy: Backend) -> Iterator[Resilience]:
    """Services, faults and observations for one test; everything is undone afterwards."""
    res = _one_line(lambda: request.config.stash[SESSION].new_test(request.node.nodeid))
    res.pace(request.node.stash.get(PACING, None))
    extensions.watch_events(request.node, res)
    try:
        yield res
    finally:
        try:
            _keep_record(request.node, res)
        finally:
            _one_line(res.close)


def _backend(config: pytest.Config) -> str | None:
    """The backend the tests of this process run against (under xdist only the workers run
    one: each record names the one it used)."""
    state = config.stash[SESSION]
    return state.backend.describe() if state.started else None


def _keep_record(item: pytest.Item, res: Resilience) -> None:
    """The test's record, for its report; key figures as JUnit properties."""
    from .report.record import junit_properties, record_of

    # Answers still held by a fault in force are judged as they are after 0.2 s.
    record = record_of(res.evidence(settle=0.2), _backend(item.config), res.explored, res.clocks)
    item.stash[RECORD] = record
    item.user_properties.extend(junit_properties(record))


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Faker:
    """A Faker seeded from the run's seed and the test's id (replayable)."""
    from faker import Faker

    from .seed import derive

    faker = Faker()
    faker.seed_instance(derive(request.config.stash[SESSION].seed, request.node.nodeid))
    return faker
