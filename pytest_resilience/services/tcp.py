"""A TCP service: a Toxiproxy proxy with a tap in front, and a method per fault."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..clock import CLOCK
from ..errors import ConfigurationError, ResilienceError
from ..faults import kinds
from ..faults.fault import Fault, FaultGroup
from ..faults.kinds import FaultKind
from ..faults.plan import FaultPlan
from ..observe import ConnectionList, FaultEvent, Timeline
from ..tap import Tap
from ..toxiproxy.client import ToxiproxyAPIError, ToxiproxyClient

if TYPE_CHECKING:
    from ..evidence import Evidence
    from ..verdicts import Verdicts

_fault_ids = itertools.count(1)
T = TypeVar("T")


class TcpService:
    """A named service the code under test reaches at :attr:`address`.

    Every fault method applies at once and returns a :class:`Fault`; the fault
    lasts until the test ends, or use it as a context manager to confine it.
    """

    def __init__(
        self,
        name: str,
        upstream: str,
        *,
        proxy: str,
        client: ToxiproxyClient,
        tap: Tap,
        timeline: Timeline,
        verdicts: Verdicts,
        evidence: Callable[..., Evidence],
        seed: int = 0,
        label: str | None = None,
        fault_kinds: Mapping[str, FaultKind] | None = None,
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.proxy = proxy
        """The Toxiproxy proxy's name (unique per test and xdist worker)."""
        self._client = client
        self._tap = tap
        self._timeline = timeline
        self._verdicts = verdicts
        self._evidence = evidence
        """The test's evidence (``Resilience.evidence``): what this service's verdicts judge."""
        self._seed = seed
        self._label = label or proxy
        """Names this service's random streams: the same in every run of its test."""
        self._kinds = fault_kinds
        """Fault kinds plugins added (``pytest_resilience_fault_kinds``), for :meth:`fault`."""
        self._faults: list[Fault] = []
        self._disabled_by: set[int] = set()
        self._toxic_ids = itertools.count(1)
        self._lock = threading.RLock()
        self._closed = False

    # -- where the client connects ----------------------------------------------

    @property
    def host(self) -> str:
        return self._tap.host

    @property
    def port(self) -> int:
        return self._tap.port

    @property
    def address(self) -> str:
        """``host:port`` for the code under test."""
        return f"{self.host}:{self.port}"

    # -- observations -------------------------------------------------------------

    @property
    def connections(self) -> ConnectionList:
        """Client connections through this service, oldest first."""
        return self._timeline.connections(self.name)

    @property
    def faults(self) -> list[Fault]:
        """Faults applied to this service during the test, healed ones included."""
        return list(self._faults)

    def assert_connections(self, max: int | None = None, min: int | None = None) -> None:
        """Assert how many client connections the code under test opened."""
        __tracebackhide__ = True
        from .. import validate
        from ..assertions.connections import check_connections

        validate.bound(max, "assert_connections: max")
        validate.bound(min, "assert_connections: min")
        evidence = self._evidence(self.name, settle=0.0)  # no exchange is read
        self._verdicts.judge(
            self.name,
            check_connections,
            self.name,
            evidence.events.connections(self.name),
            evidence.events.faults(self.name),
            evidence.refusing(self.name),
            max,
            min,
        )

    # -- faults -------------------------------------------------------------------

    def latency(self, ms: int, jitter: int = 0, **options: Any) -> Fault:
        """Delay data by ``ms`` milliseconds (plus or minus ``jitter``)."""
        return self.apply(kinds.latency(ms, jitter, **options))

    def bandwidth(self, rate: int, **options: Any) -> Fault:
        """Cap throughput at ``rate`` KB/s."""
        return self.apply(kinds.bandwidth(rate, **options))

    def slow_close(self, delay: int, **options: Any) -> Fault:
        """Delay each close by ``delay`` milliseconds."""
        return self.apply(kinds.slow_close(delay, **options))

    def timeout(self, ms: int = 0, **options: Any) -> Fault:
        """Drop data and close after ``ms`` milliseconds (0: hang until healed)."""
        return self.apply(kinds.timeout(ms, **options))

    def reset_peer(self, timeout: int = 0, **options: Any) -> Fault:
        """Reset connections (RST) after ``timeout`` milliseconds."""
        return self.apply(kinds.reset_peer(timeout, **options))

    def slicer(
        self, average_size: int, size_variation: int = 0, delay: int = 0, **options: Any
    ) -> Fault:
        """Deliver data in small slices (``delay`` in microseconds)."""
        return self.apply(kinds.slicer(average_size, size_variation, delay, **options))

    def limit_data(self, bytes: int, **options: Any) -> Fault:
        """Close connections after ``bytes`` bytes."""
        return self.apply(kinds.limit_data(bytes, **options))

    def down(self) -> Fault:
        """Refuse new connections and close open ones."""
        return self.apply(kinds.down())

    def partition(
        self, direction: str = "both", mode: str = "blackhole", *, toxicity: float = 1.0
    ) -> Fault:
        """Cut the service off: ``blackhole`` hangs, ``refuse`` and ``reset`` fail fast."""
        return self.apply(kinds.plan("partition", (direction, mode), {"toxicity": toxicity}))

    def fault(self, kind: str, *args: Any, **kwargs: Any) -> Fault:
        """Apply fault ``kind`` by name (``"chaos"`` takes any Toxiproxy toxic type).

        Kinds other plugins add through ``pytest_resilience_fault_kinds`` work here too.
        """
        return self.apply(kinds.plan(kind, args, kwargs, self._kinds))

    def apply(self, plan: FaultPlan) -> Fault:
        """Apply a planned fault to this service."""

        def add(fault_id: int) -> list[str]:
            added: list[str] = []
            try:
                if plan.disable:
                    self._disable(fault_id)
                for spec in plan.toxics:
                    name = f"{spec.type}_{spec.stream}_{next(self._toxic_ids)}"
                    try:
                        self._client.add_toxic(
                            self.proxy,
                            name=name,
                            type=spec.type,
                            stream=spec.stream,
                            toxicity=spec.toxicity,
                            attributes=spec.as_dict(),
                        )
                    except ToxiproxyAPIError as exc:
                        if exc.status != 400:
                            raise
                        raise ConfigurationError(
                            f"Toxiproxy at {self._client.url} refused the {spec.type!r} toxic of "
                            f"the {plan.kind} fault on {self.name!r} ({exc.detail}); check its "
                            "type and attributes."
                        ) from None
                    added.append(name)
            except BaseException:
                self._undo(fault_id, added)
                raise
            return added

        return self._apply_with(plan, add, self._undo)

    def _apply_with(
        self,
        plan: FaultPlan,
        do: Callable[[int], T],
        undo: Callable[[int, T], None],
        made: Callable[[Fault], None] | None = None,
    ) -> Fault:
        """Run ``do`` as fault ``plan``: recorded now, and ``undo`` when healed; ``made``
        gets the fault before anyone else can heal it (healing takes the same lock)."""
        with self._lock:
            if self._closed:
                raise ResilienceError(
                    f"service {self.name!r} is closed (its test ended); create services and "
                    "faults inside the test or its function-scoped fixtures."
                )
            fault_id = next(_fault_ids)
            state = do(fault_id)
            fault = Fault(
                fault_id,
                self.name,
                plan,
                lambda: self._heal(fault_id, plan, lambda: undo(fault_id, state)),
            )
            self._faults.append(fault)
            self._record(fault_id, plan, "applied")
            if made is not None:
                made(fault)
            return fault

    def _heal(self, fault_id: int, plan: FaultPlan, undo: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                return
            undo()
            self._record(fault_id, plan, "healed")

    def _undo(self, fault_id: int, toxics: list[str]) -> None:
        for name in reversed(toxics):
            self._client.delete_toxic(self.proxy, name)
        if fault_id in self._disabled_by:
            self._disabled_by.discard(fault_id)
            if not self._disabled_by:
                self._client.set_enabled(self.proxy, True)
                self._tap.resume_listening()

    def _disable(self, fault_id: int) -> None:
        if not self._disabled_by:
            # Stop the tap first, so no connection slips in between the two.
            self._tap.stop_listening()
            self._client.set_enabled(self.proxy, False)
        self._disabled_by.add(fault_id)

    def _record(self, fault_id: int, plan: FaultPlan, action: str) -> None:
        self._timeline.add(
            FaultEvent(
                CLOCK.now(),
                self.name,
                plan.kind,
                action,  # type: ignore[arg-type]
                fault_id,
                plan.detail,
                refuses=plan.disable,
            )
        )

    def _snapshot(self) -> Callable[[], None]:
        """What puts this service back as it is now, before each example of explore:
        every connection cut, Toxiproxy's included, and the faults applied since healed
        and forgotten."""
        with self._lock:
            kept = list(self._faults)
            active = [f.active for f in kept]

        def restore() -> None:
            self._tap.cut_all()
            with self._lock:
                later = self._faults[len(kept) :]
                if not self._disabled_by:  # drops the links Toxiproxy holds, with their data
                    self._client.set_enabled(self.proxy, False)
                    self._client.set_enabled(self.proxy, True)
            FaultGroup(f for f in later if f.active).heal()
            with self._lock:
                del self._faults[len(kept) :]
            self._rearm([f for f, was in zip(kept, active, strict=True) if was and not f.active])

        return restore

    def _rearm(self, healed: list[Fault]) -> None:
        """Faults applied before the body and healed during an example: a Toxiproxy fault
        cannot be put back."""
        if healed:
            raise ConfigurationError(
                f"explore cannot put back {healed[0]!r}, applied before the body and healed "
                "during it; apply it in the body, or as a marker."
            )

    def close(self) -> None:
        """Heal every fault, delete the proxy and stop the tap (end of test)."""
        with self._lock:
            if self._closed:
                return
            errors: list[BaseException] = []
            try:
                FaultGroup(f for f in self._faults if f.active).heal()
            except Exception as exc:
                errors.append(exc)
            self._closed = True
            steps: list[Callable[[], None]] = [
                lambda: self._client.delete_proxy(self.proxy),
                self._tap.close,
            ]
            for step in steps:
                try:
                    step()
                except Exception as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]

    def __repr__(self) -> str:
        return f"<TcpService {self.name!r} at {self.address} -> {self.upstream}>"
