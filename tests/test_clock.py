"""One clock: every record of a test is stamped by ``pytest_resilience.clock.CLOCK``."""

from __future__ import annotations

import time
import urllib.request

import pytest

from pytest_resilience.clock import CLOCK

LATER = 1e6
"""Seconds the patched clock runs ahead of ``time.monotonic`` (no record can be that late)."""


def test_every_record_of_a_test_is_stamped_by_the_one_clock(
    resilience, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = resilience.http_service("api")
    api.respond(json={"ok": True})
    intent = resilience.intent(api)
    monkeypatch.setattr(CLOCK, "now", lambda: time.monotonic() + LATER)

    def call() -> bytes:
        with urllib.request.urlopen(api.url + "/items", timeout=5) as answer:
            return answer.read()

    with api.latency(1):
        run = resilience.drive(call, calls=2)
    intent.backoff_on_backoff({"wait": 0.1, "tries": 1})  # as backoff calls it
    api.assert_attempts(max=1)
    run.assert_availability(min=1.0)

    exchanges = api.settled()
    stamps = {
        "exchange started": [e.started_at for e in exchanges],
        "exchange ended": [e.ended_at for e in exchanges],
        "connection": [c.opened_at for c in api.connections],
        "call": [c.started_at for c in run.calls] + [c.ended_at for c in run.calls],
        "timeline event": [e.at for e in resilience.timeline.events],
        # The HTTP layer's side of each connection, which pairs it with the tap's.
        "accepted": [log.accepted_at for log in api._layer.connections.values()],
    }
    assert len(exchanges) == 2 and len(resilience.timeline.verdicts()) == 2
    for what, times in stamps.items():
        assert times and all(t is not None and t >= LATER for t in times), (what, times)
