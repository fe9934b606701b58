"""The per-test ``resilience`` object: services, faults and the timeline of one test."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from . import validate
from .clock import CLOCK
from .errors import ConfigurationError, ResilienceError, UnknownServiceError
from .evidence import Evidence
from .faults import kinds
from .faults.fault import Fault, FaultGroup
from .http.records import Exchange
from .observe import Timeline
from .observe.noise import NoiseProbe
from .observe.pacing import Pacing
from .observe.records import FaultEvent, RunEvent
from .observe.settle import LONGEST_SETTLE, ExchangeRecorder
from .runtime.pacing import PacingRecorder
from .services.http import HttpService
from .services.tcp import TcpService
from .tap import Tap
from .verdicts import Verdicts

if TYPE_CHECKING:
    from .adapters import Intent
    from .explore import Exploration
    from .runs import Run
    from .runtime.scheduler import VirtualClock
    from .session import ResilienceSession

S = TypeVar("S", bound=TcpService)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def join_address(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (``[::1]:0``), as Toxiproxy reads it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Resilience:
    """Services, faults and observations for one test (the ``resilience`` fixture)."""

    def __init__(self, session: ResilienceSession, test_id: str) -> None:
        self.session = session
        self.test_id = test_id
        self.timeline = Timeline()
        self._recorder = ExchangeRecorder(self.timeline)
        self._verdicts = Verdicts(self.timeline, session.seed)
        """Runs every verdict of this test (see :mod:`pytest_resilience.verdicts`)."""
        self._services: dict[str, TcpService] = {}
        self._prefix = session.proxy_prefix(test_id)
        self._created_listeners: list[Callable[[TcpService], None]] = []
        self._closed = False
        self._noise = NoiseProbe()
        self._pacing: PacingRecorder | None = None
        self._exploration: Exploration | None = None
        self._clocks: list[VirtualClock] = []

    @property
    def runs(self) -> list[Run]:
        """Every ``drive`` and ``load`` of this test, in order (from the timeline)."""
        return self.timeline.snapshot().runs()

    @property
    def explored(self) -> Exploration | None:
        """What ``explore`` ran in this test (the marker, or the last :meth:`explore` call);
        None if it did not explore."""
        return self._exploration

    @property
    def clocks(self) -> list[VirtualClock]:
        """The blocks of this test on virtual time (the body under the marker or
        ``--resilience-clock=virtual``, and each :meth:`virtual_time`), in order."""
        return list(self._clocks)

    @contextlib.contextmanager
    def virtual_time(self) -> Iterator[VirtualClock]:
        """Run the block on virtual time: ``time.sleep`` in the calling thread and in the
        threads it starts ends at once, and moves the clock forward (the one the plugin
        records with, ``time.monotonic`` and ``time.time``); fault windows open and heal
        at virtual instants.  Inside a block already on virtual time, that block goes on."""
        from .runtime.virtual import virtual_time

        with virtual_time() as clock:
            if clock not in self._clocks:
                self._clocks.append(clock)
            yield clock

    def pace(self, recorder: PacingRecorder | None) -> None:
        """Read the sleeps and sends ``recorder`` notes for this test (the plugin records
        them on real time, from setup to teardown: :mod:`.observe.pacing`)."""
        self._pacing = recorder
        if recorder is not None:
            recorder.tapped = self._tapped

    def _tapped(self, address: object) -> int | None:
        """The tap port of this test's HTTP service at socket ``address``, or None."""
        if not isinstance(address, tuple) or len(address) < 2:
            return None
        for service in list(self._services.values()):
            if isinstance(service, HttpService) and address[1] == service.port:
                return service.port if address[0] == service.host else None
        return None

    @property
    def seed(self) -> int:
        """The run's seed (``--resilience-seed``)."""
        return self.session.seed

    # -- services -----------------------------------------------------------------

    @property
    def services(self) -> dict[str, TcpService]:
        return dict(self._services)

    def service(self, name: str) -> TcpService:
        """The service called ``name``; the error lists the ones that exist."""
        try:
            return self._services[name]
        except KeyError:
            existing = ", ".join(repr(n) for n in self._services) or "none"
            raise UnknownServiceError(
                f"no service named {name!r} in this test (services: {existing}); create it with "
                f"resilience.tcp_service({name!r}, upstream=...) or "
                f"resilience.http_service({name!r}) in the test or a fixture."
            ) from None

    def tcp_service(self, name: str, upstream: str | tuple[str, int]) -> TcpService:
        """Put Toxiproxy (and the tap) between the code under test and ``upstream``."""
        self._check_new(name)
        host, port = validate.address(upstream, f"upstream of service {name!r}")
        return self._add(self._wire(name, join_address(host, port), TcpService))

    def http_service(
        self,
        name: str,
        forward_to: str | None = None,
        *,
        idempotency_header: str = "Idempotency-Key",
        error: Any = None,
        failure_statuses: Iterable[Any] | None = None,
    ) -> HttpService:
        """An HTTP service behind Toxiproxy: a scripted stub, or a reverse proxy to ``forward_to``.

        ``idempotency_header`` names the header whose value groups a request's retries
        and makes the stub apply its side effect once.  ``error`` is the JSON body of
        fault answers that give none: data, or a function of the status returning data.
        ``failure_statuses`` (statuses and predicates over an exchange) says which answers its
        verdicts count as failed attempts; by default ``DEFAULT_FAILURES``.
        """
        from .assertions.operations import FailureSet
        from .http.answers import error_body
        from .http.script import Script
        from .http.server import HttpLayer

        self._check_new(name)
        validate.header_name(idempotency_header, "idempotency_header")
        failure_set = FailureSet(failure_statuses, "failure_statuses of http_service()")
        errors = error_body(error)
        target = (
            validate.http_url(forward_to, "forward_to", base_path=True)
            if forward_to is not None
            else None
        )
        reach = self.session.reach_host
        layer = HttpLayer(
            name,
            Script(errors),
            self._recorder.record,
            host=reach,
            forward_to=target,
            key_header=idempotency_header,
        )
        port = self.session.loop.run(layer.start())
        try:
            service = self._wire(
                name,
                join_address(reach, port),
                HttpService,
                layer=layer,
                trace_heads=True,
                failure_statuses=failure_set,
                noise=self._noise,
                recorder=self._recorder,
            )
        except BaseException:
            self.session.loop.run(layer.close())
            raise
        self._noise.start()
        return self._add(service)

    def _check_new(self, name: str) -> None:
        if self._closed:
            raise ResilienceError(f"the test {self.test_id!r} has ended; no new services.")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(
                f"service name {name!r} must be 1-63 letters, digits, '.', '_' or '-'."
            )
        if name in self._services:
            raise ConfigurationError(
                f"a service named {name!r} already exists in this test; pick another name."
            )

    def _wire(
        self,
        name: str,
        upstream: str,
        kind: type[S],
        *,
        trace_heads: bool = False,
        **extra: Any,
    ) -> S:
        """Create the proxy to ``upstream`` and the tap in front of it."""
        backend = self.session.backend
        proxy = f"{self._prefix}-{name}"
        created = backend.client.create_proxy(proxy, upstream, join_address(backend.listen_host, 0))
        self.session.live_proxies.add(proxy)
        try:
            _, proxy_port = validate.address(created["listen"], "Toxiproxy's listen address")
            tap = Tap(
                self.session.loop,
                name,
                (backend.proxy_host, proxy_port),
                self.timeline.add,
                trace_heads=trace_heads,
            )
            tap.start()
        except BaseException:
            backend.client.delete_proxy(proxy)
            self.session.live_proxies.discard(proxy)
            raise
        return kind(
            name,
            upstream,
            proxy=proxy,
            client=backend.client,
            tap=tap,
            timeline=self.timeline,
            verdicts=self._verdicts,
            evidence=self.evidence,
            seed=self.seed,
            label=f"{self.test_id}::{name}",
            fault_kinds=self.session.fault_kinds,
            **extra,
        )

    def _add(self, service: S) -> S:
        self._services[service.name] = service
        for listener in list(self._created_listeners):
            listener(service)
        return service

    def _on_service_created(self, listener: Callable[[TcpService], None]) -> Callable[[], None]:
        """Call ``listener`` for each service created from now on (marker windows use it);
        return what stops it."""
        self._created_listeners.append(listener)
        return lambda: self._created_listeners.remove(listener)

    def _restarter(self) -> Callable[[], None]:
        """What brings this test back to how it is now, before each example of explore:
        faults applied since healed and forgotten, services made since closed, every
        connection cut, idempotency stores emptied, HTTP scripts as now, a new timeline."""
        kept = dict(self._services)
        restores = [service._snapshot() for service in kept.values()]

        def restart() -> None:
            for name in [n for n in self._services if n not in kept]:
                service = self._services.pop(name)
                service.close()
                self.session.live_proxies.discard(service.proxy)
            for restore in restores:
                restore()
            self._recorder.forget()
            self.timeline.restart()

        return restart

    # -- faults -------------------------------------------------------------------

    def _resolve(self, service: str | TcpService) -> TcpService:
        if isinstance(service, str):
            return self.service(service)
        return validate.instance(  # type: ignore[no-any-return]
            service,
            TcpService,
            "service",
            "a service name or a service resilience.tcp_service() or http_service() made",
        )

    def fault(self, service: str | TcpService, kind: str, *args: Any, **kwargs: Any) -> Fault:
        """Apply fault ``kind`` (e.g. ``"latency"``, or ``"chaos"`` with ``type=``) to a service."""
        return self._resolve(service).fault(kind, *args, **kwargs)

    def partition(
        self,
        *services: str | TcpService,
        direction: str = "both",
        mode: str = "blackhole",
        toxicity: float = 1.0,
    ) -> FaultGroup:
        """Cut several services at once; heal them together (or use ``with``)."""
        if not services:
            raise ConfigurationError("partition() needs at least one service to cut.")
        plan = kinds.plan("partition", (direction, mode), {"toxicity": toxicity})
        resolved = [self._resolve(service) for service in services]  # all checked first
        applied: list[Fault] = []
        try:
            for service in resolved:
                applied.append(service.apply(plan))
        except BaseException:
            FaultGroup(applied).heal()
            raise
        return FaultGroup(applied)

    # -- driving the code under test, and verdicts across services ----------------------

    def _faults(self) -> list[FaultEvent]:
        """The faults applied and healed, as the test's evidence says (what a run's
        recovery is judged from)."""
        return self.evidence(settle=0.0).events.faults()

    def evidence(self, *services: str, settle: float = 1.0) -> Evidence:
        """The test's records now, frozen: the HTTP services' exchanges once each answer's
        delivery is known (at most ``settle`` s each), their effects, then the timeline's
        events and the runs; of the ``services`` named only, if any are."""
        validate.seconds(settle, "evidence: settle", maximum=LONGEST_SETTLE)
        https = [
            s
            for s in self._services.values()
            if isinstance(s, HttpService) and (not services or s.name in services)
        ]
        for service in https:
            service.check()
        events = self._recorder.settled([s.name for s in https], settle)
        sends = [] if self._pacing is None else self._pacing.sends()
        return Evidence(
            self.timeline.started_at,
            CLOCK.now(),
            self.seed,
            {
                n: "http" if isinstance(s, HttpService) else "tcp"
                for n, s in self._services.items()
                if not services or n in services
            },
            events,
            {s.name: events.exchanges(s.name) for s in https},
            {s.name: tuple(events.effects(s.name)) for s in https},
            {s.name: s._failure_set for s in https},
            tuple(events.runs()),
            tuple(CLOCK.jumps),
            {
                s.name: Pacing.join(
                    sends, self._recorder.traced(s.name), self.timeline.started_at, s.port
                )
                for s in https
                if sends  # none on virtual time, where the jumps tell a wait's real time
            },
        )

    def drive(self, fn: Callable[[], Any], calls: int) -> Run:
        """Call ``fn`` (sync or async) ``calls`` times in a row and record each call."""
        from .runs import drive

        self._noise.start()  # the run's verdicts read the noise of the run
        run = drive(
            fn, calls, faults=self._faults, verdicts=self._verdicts, noise=self._noise.samples
        )
        self.timeline.add(RunEvent(CLOCK.now(), "", run))
        return run

    def load(
        self, fn: Callable[[], Any], duration: float, rate: float, concurrency: int = 1
    ) -> Run:
        """Call ``fn`` ``rate`` times a second for ``duration`` s on ``concurrency`` threads."""
        from .runs import load

        self._noise.start()  # the run's verdicts read the noise of the run
        run = load(
            fn,
            duration,
            rate,
            concurrency,
            faults=self._faults,
            verdicts=self._verdicts,
            noise=self._noise.samples,
        )
        self.timeline.add(RunEvent(CLOCK.now(), "", run))
        return run

    def explore(self, fn: Callable[[], object], **options: Any) -> Exploration:
        """Call ``fn`` under many fault schedules drawn on this test's services, as
        ``@pytest.mark.explore(**options)`` runs a body; a failing schedule is shrunk and
        raised with the markers that reproduce it."""
        __tracebackhide__ = True
        from .explore import ExploreSpec
        from .explore.runner import explore

        return explore(fn, self, ExploreSpec.of(options))

    def _http(self, service: str | TcpService, what: str) -> HttpService:
        resolved = self._resolve(service)
        if not isinstance(resolved, HttpService):
            raise ConfigurationError(
                f"{what} judges HTTP exchanges; {resolved.name!r} is a TCP service "
                "(create it with resilience.http_service())."
            )
        return resolved

    def assert_no_retry_storm(
        self,
        service: str | TcpService,
        *,
        min_herd: int = 3,
        group: Callable[[Exchange], Hashable] | None = None,
        failure_statuses: Iterable[Any] | None = None,
    ) -> None:
        """Operations on ``service`` that failed together did not retry in lockstep."""
        __tracebackhide__ = True
        from .assertions import check_no_retry_storm

        http = self._http(service, "assert_no_retry_storm")
        evidence = self.evidence(http.name)
        self._verdicts.judge_exchanges(
            evidence,
            http.name,
            check_no_retry_storm,
            min_herd=min_herd,
            group=group,
            failure_statuses=failure_statuses,
            noise=self._noise.samples_during(evidence.exchanges[http.name]),
            jumps=evidence.jumps,
            calls=evidence.calls(http.name),
            pacing=evidence.pacing.get(http.name),
            blind=evidence.blind(http.name),
        )

    def assert_amplification(
        self,
        service: str | TcpService,
        run: Run,
        max: float,
        *,
        group: Callable[[Exchange], Hashable] | None = None,
        failure_statuses: Iterable[Any] | None = None,
    ) -> None:
        """Requests that reached ``service`` per client call in ``run`` stay at most ``max``."""
        __tracebackhide__ = True
        from .assertions import check_amplification

        http = self._http(service, "assert_amplification")
        _check_run(run)
        if not run.calls:
            raise ConfigurationError("assert_amplification needs a run with at least one call.")
        evidence = self.evidence(http.name)
        self._verdicts.judge_exchanges(
            evidence,
            http.name,
            check_amplification,
            len(run.calls),
            max,
            exchanges=run.requests(evidence.exchanges[http.name]),
            group=group,
            failure_statuses=failure_statuses,
        )

    def intent(self, service: str | TcpService) -> Intent:
        """Adapters for ``service``'s client libraries (tenacity, stamina, backoff, pybreaker)
        that record what they intend: planned waits, breaker states."""
        from .adapters import Intent

        return Intent(self.timeline, self._resolve(service).name)

    def assert_breaker_respected(
        self, service: str | TcpService, run: Run | None = None, *, tolerance: float = 0.05
    ) -> None:
        """While the client's breaker said open (``intent(service).breaker_listener()``), no
        request reached ``service``; to pass, ``run`` (a ``load`` or ``drive``) called the
        client then."""
        __tracebackhide__ = True
        from .assertions import check_breaker_respected

        http = self._http(service, "assert_breaker_respected")
        if run is not None:
            _check_run(run)
        evidence = self.evidence(http.name)
        self._verdicts.judge(
            http.name,
            check_breaker_respected,
            evidence.exchanges[http.name],
            evidence.events.intents(http.name),
            None if run is None else run.calls,
            tolerance=tolerance,
            blind=evidence.blind(http.name),
            noise=self._noise.samples,
            jumps=evidence.jumps,
        )

    def assert_breaker_opened(
        self,
        service: str | TcpService,
        run: Run,
        after_failures: int,
        cooldown: float,
        *,
        tolerance: float = 0.05,
        failure_statuses: Iterable[Any] | None = None,
    ) -> None:
        """After ``after_failures`` consecutive failures, ``service`` heard nothing for
        ``cooldown`` s while the client kept being called; then one probe at a time."""
        __tracebackhide__ = True
        from .assertions import check_breaker_opened

        http = self._http(service, "assert_breaker_opened")
        _check_run(run)
        evidence = self.evidence(http.name)
        self._verdicts.judge_exchanges(
            evidence,
            http.name,
            check_breaker_opened,
            run.calls,
            after_failures,
            cooldown,
            tolerance=tolerance,
            failure_statuses=failure_statuses,
            blind=evidence.blind(http.name),
            noise=self._noise.samples,
            jumps=evidence.jumps,
        )

    # -- teardown -----------------------------------------------------------------

    def close(self) -> None:
        """Heal every fault and delete every proxy of this test; errors after cleanup."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for service in reversed(list(self._services.values())):
            try:
                service.close()
            except Exception as exc:
                errors.append(exc)
            else:
                self.session.live_proxies.discard(service.proxy)
        self._noise.stop()
        try:
            # Last: closing the services adds events (faults healed, connections closed).
            self.timeline.close()
        except BaseException as exc:
            errors.append(exc)
        if errors:
            raise errors[0]


def _check_run(run: object) -> None:
    """``run=``: what ``drive()`` or ``load()`` returned."""
    from .runs import Run

    validate.instance(run, Run, "run", "a Run (what resilience.drive() or load() returns)")
