"""Listeners for retry and breaker libraries: what the client *intended*, on the timeline.

The traffic shows what a client did; these show what its library meant to do (the wait
it planned, the state its breaker says it is in), so a verdict can compare the two::

    intent = resilience.intent("payments")
    tenacity.Retrying(..., before_sleep=intent.tenacity_before_sleep)
    backoff.on_exception(..., on_backoff=intent.backoff_on_backoff)
    with intent.stamina():                      # stamina's retry hooks, for the block
        ...
    pybreaker.CircuitBreaker(..., listeners=[intent.breaker_listener()])
    ...
    run = resilience.load(call_through_the_breaker, duration=2, rate=20)
    resilience.assert_breaker_respected("payments", run)

None of the libraries is imported until its adapter is used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from .clock import CLOCK
from .observe.records import IntentEvent

if TYPE_CHECKING:
    from .observe.timeline import Timeline


class Intent:
    """Adapters recording, for one service, what its client's libraries intend."""

    def __init__(self, timeline: Timeline, service: str) -> None:
        self._timeline = timeline
        self.service = service

    def _add(
        self,
        source: str,
        kind: Literal["wait", "breaker"],
        value: float | str | None,
        attempt: int | None = None,
    ) -> None:
        self._timeline.add(IntentEvent(CLOCK.now(), self.service, source, kind, value, attempt))

    def tenacity_before_sleep(self, retry_state: Any) -> None:
        """tenacity's ``before_sleep=``: the wait it is about to sleep."""
        action = retry_state.next_action
        self._add("tenacity", "wait", action.sleep if action else None, retry_state.attempt_number)

    def backoff_on_backoff(self, details: Mapping[str, Any]) -> None:
        """backoff's ``on_backoff=``: the wait it is about to sleep."""
        self._add("backoff", "wait", details.get("wait"), details.get("tries"))

    @contextmanager
    def stamina(self) -> Iterator[Intent]:
        """stamina's on-retry hooks record each planned wait during the block (stamina's hooks
        are process-wide: the ones set before are kept, and restored after)."""
        import stamina.instrumentation as instrumentation

        before = instrumentation.get_on_retry_hooks()

        def hook(details: Any) -> None:
            self._add("stamina", "wait", details.wait_for, details.retry_num)

        instrumentation.set_on_retry_hooks([*before, hook])
        try:
            yield self
        finally:
            instrumentation.set_on_retry_hooks(before)

    def breaker_listener(self) -> Any:
        """A ``pybreaker.CircuitBreakerListener`` recording each state change."""
        import pybreaker

        intent = self

        class Listener(pybreaker.CircuitBreakerListener):
            def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
                intent._add("pybreaker", "breaker", str(new_state.name))

        return Listener()
