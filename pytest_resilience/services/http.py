"""An HTTP service: the TCP service's faults, plus HTTP answers, routes and records."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .. import validate
from ..assertions.operations import FailureSet, Grouping
from ..errors import ResilienceError
from ..faults.fault import Fault
from ..faults.plan import FaultPlan
from ..http.answers import make_answer, shape
from ..http.records import Effect, ExchangeList
from ..http.script import Route, Step, cut_step, delay_step, fail_step, rate_limit_step
from ..runtime import ledger
from .tcp import TcpService

if TYPE_CHECKING:
    from ..http.server import HttpLayer
    from ..observe.noise import NoiseProbe
    from ..observe.settle import ExchangeRecorder


class _Scripting:
    """The script calls, for the whole service or for one route.

    Each fault call applies at once and returns a :class:`Fault`: it lasts until
    it has answered its ``count`` requests, is healed, or the test ends; use it
    as a context manager to confine it to a block.
    """

    _service: HttpService
    _route: Route | None

    def respond(
        self,
        status: int = 200,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        content_type: str | None = None,
    ) -> None:
        """The default answer (to requests no fault answers)."""
        answer = make_answer(status, shape(json, body, content_type, headers))
        self._service._script.set_default(answer, self._route)

    def fail(
        self,
        status: int = 503,
        count: int | None = None,
        *,
        rate: float | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer ``status`` to the next ``count`` requests (None: every request).

        ``rate=0.3`` fails that share of requests instead, drawn from the run's seed.
        The answer carries ``headers`` and ``json``/``body``, else the service's error body.
        """
        step, detail = fail_step(
            status,
            count,
            rate=rate,
            json=json,
            body=body,
            content_type=content_type,
            headers=headers,
            error=self._service._script.error,
            route=self._route,
            rng=self._service._rng("fail"),
        )
        return self._add(step, "fail", detail)

    def rate_limit(
        self,
        burst: int | None = None,
        retry_after: int | dt.datetime | None = None,
        status: int = 429,
        *,
        rate: float | None = None,
        retry_after_ms: float | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """``rate_limit(burst=3, retry_after=1)``: the next 3 requests get 429 + Retry-After.

        ``retry_after`` is whole seconds, or a timezone-aware datetime sent as an HTTP-date;
        ``retry_after_ms=250`` sends ``retry-after-ms: 250`` (alone or beside Retry-After).
        ``rate_limit(rate=5, burst=2)``: a token bucket of 5 requests a second (bursts of
        2); the rest get 429 with the Retry-After a real limiter would send.
        """
        step, detail = rate_limit_step(
            burst,
            retry_after,
            status,
            rate=rate,
            retry_after_ms=retry_after_ms,
            json=json,
            body=body,
            content_type=content_type,
            headers=headers,
            error=self._service._script.error,
            route=self._route,
        )
        return self._add(step, "rate_limit", detail)

    def delay(
        self,
        seconds: float,
        count: int | None = None,
        *,
        status: int | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Hold the next ``count`` answers (None: every answer) for ``seconds``.

        With ``status=`` the held request gets that answer (a slow 504, say) instead of
        the usual one; ``headers``/``json``/``body`` alone reshape the usual answer.
        """
        step, detail = delay_step(
            seconds,
            count,
            status=status,
            json=json,
            body=body,
            content_type=content_type,
            headers=headers,
            error=self._service._script.error,
            route=self._route,
        )
        return self._add(step, "delay", detail)

    def cut(
        self,
        count: int | None = 1,
        *,
        status: int | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Close the connection halfway through the next ``count`` answers.

        With ``status=`` the cut answer is that one (nothing applied) instead of the usual
        one; ``headers``/``json``/``body`` alone reshape the usual answer before the cut.
        """
        step, detail = cut_step(
            count,
            status=status,
            json=json,
            body=body,
            content_type=content_type,
            headers=headers,
            error=self._service._script.error,
            route=self._route,
        )
        return self._add(step, "cut", detail)

    def _add(self, step: Step, kind: str, detail: str) -> Fault:
        where = f" route={self._route!r}" if self._route is not None else ""
        return self._service._apply_step(step, FaultPlan(kind, detail=detail + where))


class RouteScript(_Scripting):
    """``payments.route("POST", "/charges")``: script calls for one method and path."""

    def __init__(self, service: HttpService, route: Route) -> None:
        self._service = service
        self._route = route


class HttpService(TcpService, _Scripting):
    """A named HTTP service; the code under test uses :attr:`url`.

    Stub mode answers from a script (``respond``, ``fail``, ``rate_limit``,
    ``delay``, ``cut``, per route with ``route()``); forward mode relays to a real
    upstream.  Every TCP fault applies too.
    """

    def __init__(
        self,
        name: str,
        upstream: str,
        *,
        layer: HttpLayer,
        failure_statuses: FailureSet,
        noise: NoiseProbe,
        recorder: ExchangeRecorder,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, upstream, **kwargs)
        self._layer = layer
        self._failure_set = failure_statuses
        self._noise = noise
        self._script = layer.script
        self._service = self
        self._route = None
        self._recorder = recorder
        self._step_faults: set[int] = set()
        """The ids of the faults that are script steps (they heal by themselves)."""
        self._healing = threading.Condition()
        self._heals_due = 0
        """Spent steps whose heal has not run yet."""
        recorder.watch(name, layer.heads, self._tap.traces)
        self._tap.on_progress = recorder.changed
        self._path: ledger.Path | None = None
        if layer.forward_to is None:  # a stub: its answers come from the plugin alone
            self._path = ledger.Path(self._tap, layer.counts, self._proxy_faulted)
            ledger.watch(self._path)

    def _proxy_faulted(self) -> bool:
        """Whether a fault of the proxy's (a toxic, a disabled proxy) was ever applied:
        it acts on real time, so reads through this service stay real from then on."""
        return any(f.plan.toxics or f.plan.disable for f in list(self._faults))

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` for the code under test."""
        return f"http://{self.address}"

    @property
    def forward_to(self) -> str | None:
        if self._layer.forward_to is None:
            return None
        host, port, base = self._layer.forward_to
        return f"http://{host}:{port}{base}"

    def route(self, method: str, path: str) -> RouteScript:
        """Script calls that apply only to ``method path`` (the query string is ignored)."""
        return RouteScript(self, Route(method, path))

    def _apply_step(self, step: Step, plan: FaultPlan) -> Fault:
        """Add a script step as a fault: recorded on the timeline, healed by retiring it,
        and by itself once it has answered its count."""
        script = self._script
        made: list[Fault] = []

        def heal() -> None:  # off the loop, on its executor
            try:
                with self._lock:  # held by _apply_with until the fault is made
                    fault = made[0]
                fault.heal()
            except Exception as exc:  # handed to the test thread by check()
                self._layer.errors.append(exc)
            finally:
                with self._healing:
                    self._heals_due -= 1
                    self._healing.notify_all()

        def spent() -> None:  # on the loop: healing takes the lock a test thread may hold
            with self._healing:
                self._heals_due += 1
            asyncio.get_running_loop().run_in_executor(None, heal)

        step.on_spent = spent  # before the step is live: a request may spend it at once
        fault = self._apply_with(
            plan,
            lambda _id: script.add(step),
            lambda _id, added: script.remove(added),
            made=made.append,
        )
        self._step_faults.add(fault.id)
        return fault

    def _rng(self, purpose: str) -> random.Random:
        from ..seed import rng

        return rng(self._seed, self._label, purpose, str(len(self._faults)))

    def _snapshot(self) -> Callable[[], None]:
        restore_tcp = super()._snapshot()
        restore_script = self._script.snapshot()

        def restore() -> None:
            restore_tcp()
            self._tap.loop.run(self._layer.restart())
            with self._healing:  # the steps spent so far heal on this example's timeline
                self._healing.wait_for(lambda: self._heals_due == 0, timeout=5.0)
            restore_script()

        return restore

    def _rearm(self, healed: list[Fault]) -> None:
        # A script step's fault is put back with the step's count (Script.snapshot).
        for fault in healed:
            if fault.id in self._step_faults:
                fault.active = True
        super()._rearm([f for f in healed if f.id not in self._step_faults])

    def reset_script(self) -> None:
        """Forget every step and default answer (the default becomes an empty 200)."""
        self._script.clear()

    # -- records --------------------------------------------------------------------

    def check(self) -> None:
        """Raise an error the HTTP layer met on its thread, if any."""
        if self._layer.errors:
            error = self._layer.errors[0]
            raise ResilienceError(
                f"the HTTP layer of service {self.name!r} failed: {error!r}"
            ) from error

    @property
    def exchanges(self) -> ExchangeList:
        """Every request the service received, with whether its answer reached the client
        as far as is known now (``settled()`` waits for that)."""
        return self.settled(0.0)

    def settled(self, timeout: float = 1.0) -> ExchangeList:
        """The exchanges once each answered one knows whether its answer reached the client.

        The tap learns it a moment after the client read the answer, so a verdict right
        after the client returned would see ``delivered=None``; an answer held by a fault
        still in force stays ``None`` and is judged as it is after ``timeout`` seconds.
        """
        from ..observe.settle import LONGEST_SETTLE

        validate.seconds(timeout, "settled: timeout", maximum=LONGEST_SETTLE)
        self.check()
        return self._recorder.settled([self.name], timeout).exchanges(self.name)

    @property
    def effects(self) -> list[Effect]:
        """Side effects applied: unsafe requests processed (once per Idempotency-Key)."""
        self.check()
        return self._timeline.snapshot().effects(self.name)

    # -- verdicts ----------------------------------------------------------------------

    def _judge(
        self,
        check: Callable[..., None],
        *args: Any,
        blind: bool = False,
        calls: bool = False,
        **kwargs: Any,
    ) -> None:
        """Run ``check`` over this service's settled exchanges, through the one runner;
        with ``blind``, it also gets the spans in which attempts could leave no record;
        with ``calls``, the client's calls (``resilience.drive``, ``load``) beside them."""
        __tracebackhide__ = True
        evidence = self._evidence(self.name)
        if blind:
            kwargs["blind"] = evidence.blind(self.name)
        if calls:
            kwargs["calls"] = evidence.calls(self.name)
        self._verdicts.judge_exchanges(evidence, self.name, check, *args, **kwargs)

    def assert_attempts(
        self,
        max: int | None = None,
        min: int | None = None,
        *,
        group: Grouping | None = None,
        failure_statuses: Iterable[Any] | None = None,
    ) -> None:
        """Each operation made between ``min`` and ``max`` attempts."""
        __tracebackhide__ = True
        from ..assertions import check_attempts

        self._judge(
            check_attempts, max, min, group=group, failure_statuses=failure_statuses, blind=True
        )

    def assert_retry_after_honoured(
        self,
        tolerance: float = 0.05,
        *,
        group: Grouping | None = None,
        failure_statuses: Iterable[Any] | None = None,
    ) -> None:
        """No retry came before the Retry-After of the answer before it allowed."""
        __tracebackhide__ = True
        from ..assertions import check_retry_after_honoured

        self._judge(
            check_retry_after_honoured,
            tolerance,
            group=group,
            failure_statuses=failure_statuses,
            blind=True,
        )

    def assert_no_duplicate_side_effects(
        self, key: Callable[[Effect], Hashable] | None = None
    ) -> None:
        """No business action was applied twice (same method, path and body, or ``key``)."""
        __tracebackhide__ = True
        from ..assertions import check_no_duplicate_side_effects

        effects = self._evidence(self.name, settle=0.0).effects[self.name]  # applied ones
        self._verdicts.judge(self.name, check_no_duplicate_side_effects, effects, key)

    def assert_stable_idempotency_key(
        self, *, group: Grouping | None = None, failure_statuses: Iterable[Any] | None = None
    ) -> None:
        """Retries of one logical operation reused its Idempotency-Key."""
        __tracebackhide__ = True
        from ..assertions import check_stable_idempotency_key

        self._judge(
            check_stable_idempotency_key,
            group=group,
            failure_statuses=failure_statuses,
            calls=True,
        )

    def assert_backoff(
        self,
        jitter: bool = True,
        min_factor: float = 1.5,
        max_delay: float | None = None,
        *,
        tolerance: float = 0.02,
        group: Grouping | None = None,
        failure_statuses: Iterable[Any] | None = None,
    ) -> None:
        """Retry waits grow (by ``min_factor``), carry jitter and stay under ``max_delay``;
        growth and jitter are statistical tests against the timing noise of this run."""
        __tracebackhide__ = True
        from ..assertions import check_backoff

        evidence = self._evidence(self.name)
        self._verdicts.judge_exchanges(
            evidence,
            self.name,
            check_backoff,
            jitter,
            min_factor,
            max_delay,
            tolerance=tolerance,
            group=group,
            failure_statuses=failure_statuses,
            noise=self._noise.samples_during(evidence.exchanges[self.name]),
            jumps=evidence.jumps,
            calls=evidence.calls(self.name),
            pacing=evidence.pacing.get(self.name),
            blind=evidence.blind(self.name),
        )

    def close(self) -> None:
        if self._path is not None:
            ledger.forget(self._path)
        try:
            super().close()
        finally:
            loop = self._tap.loop
            if loop.running:
                loop.run(self._layer.close())
        self.check()

    def __repr__(self) -> str:
        mode = f"forward to {self.forward_to}" if self.forward_to else "stub"
        return f"<HttpService {self.name!r} at {self.url} ({mode})>"
