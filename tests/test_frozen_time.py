"""A test that freezes or moves time for its own code, with freezegun or time-machine,
leaves the plugin's records, fault timers and verdicts on real time.

The defect: freezegun's ``freeze_time`` replaces ``time.monotonic``, which the plugin's
clock and its event loops read.  Every record was stamped with the frozen time, so a
client that waited the 300 ms an answer asked for was judged to have retried after 0 ms,
and no timer of the plugin's loops fired (an answer held by ``delay`` was never sent).
The plugin now reads ``time.clock_gettime(CLOCK_MONOTONIC)`` (``clock.real_monotonic``),
which neither library touches.  Wall time stays the test's own: an HTTP-date the service
sends is read by the client against its clock.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import socket
import time

import pytest
import requests
import time_machine
from freezegun import freeze_time
from net import read_until

from pytest_resilience.clock import real_monotonic


def _get_honouring_retry_after(url: str) -> requests.Response:
    """A client that waits what a 429 asks: retry-after-ms, else an HTTP-date Retry-After
    read against its own clock."""
    for _ in range(3):
        response = requests.get(url, timeout=5)
        if response.status_code != 429:
            return response
        if "retry-after-ms" in response.headers:
            time.sleep(int(response.headers["retry-after-ms"]) / 1000)
        else:
            when = email.utils.parsedate_to_datetime(response.headers["Retry-After"])
            time.sleep(max((when - dt.datetime.now(dt.timezone.utc)).total_seconds(), 0.0))
    raise AssertionError("still limited after 3 attempts")


def test_a_client_under_frozen_time_is_judged_on_what_it_waited(resilience) -> None:
    api = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    api.rate_limit(1, retry_after_ms=300)

    with freeze_time("2026-01-01 00:00:00"):
        assert _get_honouring_retry_after(api.url + "/x").status_code == 200

    limited, answered = api.settled()
    assert answered.started_at - limited.ended_at >= 0.3
    api.assert_retry_after_honoured()


def test_fault_timers_keep_real_time_under_frozen_time(resilience, echo_server) -> None:
    api = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    api.delay(0.2, count=1)  # held on the plugin's event loop
    echo = resilience.tcp_service("echo", echo_server.address)
    echo.latency(100)  # the embedded engine's loop, or Toxiproxy

    with freeze_time("2026-01-01 00:00:00"):
        began = real_monotonic()
        assert requests.get(api.url + "/x", timeout=5).status_code == 200
        held = real_monotonic() - began
        host, port = echo.address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            began = real_monotonic()
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
            trip = real_monotonic() - began

    assert 0.2 <= held < 5
    assert 0.1 <= trip < 5


def test_an_http_date_is_read_against_the_clock_the_test_moved(resilience) -> None:
    """Under time-machine's travel to 2030, the Retry-After date the client is sent and
    the wait the verdict expects are both in the moved clock, as the client reads them."""
    api = resilience.http_service("api")
    api.respond(200, json={"ok": True})

    with time_machine.travel(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), tick=True):
        api.rate_limit(1, retry_after=dt.datetime(2030, 1, 1, 0, 0, 1, tzinfo=dt.timezone.utc))
        assert _get_honouring_retry_after(api.url + "/x").status_code == 200

    api.assert_retry_after_honoured()


def test_load_keeps_its_schedule_when_a_test_skips_its_sleeps(
    resilience, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test that makes ``time.sleep`` return at once, to skip its client's waits, does not
    collapse ``load``'s schedule: its calls still start ``1 / rate`` apart."""
    monkeypatch.setattr(time, "sleep", lambda seconds: None)

    run = resilience.load(lambda: None, duration=0.2, rate=20)

    starts = [call.started_at for call in run.calls]
    assert len(starts) == 4
    # Planned 0.15 s from the first to the last; with the sleeps skipped, under 1 ms.
    assert starts[-1] - starts[0] >= 2 / 20


def test_answers_without_a_date_do_not_move_a_clock_that_ticks_at_each_read(resilience) -> None:
    """freezegun's ``auto_tick_seconds`` moves the test's clock at each ``time.time()``;
    the service reads the wall clock only for an HTTP-date, so three plain answers leave
    it where the test's own two reads put it."""
    api = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    host, port = api.address.rsplit(":", 1)

    with freeze_time("2026-01-01 00:00:00", auto_tick_seconds=1):
        before = time.time()
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            for _ in range(3):
                conn.sendall(b"GET /x HTTP/1.1\r\nHost: api\r\n\r\n")
                assert read_until(conn, b'{"ok":true}').startswith(b"HTTP/1.1 200 ")
        after = time.time()

    assert after - before == 1.0


def test_a_toxiproxy_starts_while_the_test_has_replaced_time_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Starting polls the server's API every 20 ms: with ``time.sleep`` made instant (as a
    test skipping its waits does, or virtual time's jumps) it spun; it waits for real."""
    import shutil

    from pytest_resilience.toxiproxy.spawn import SpawnedToxiproxy

    binary = shutil.which("toxiproxy-server")
    if binary is None:
        pytest.skip("toxiproxy-server is not on PATH (bash .ci/install-toxiproxy)")
    polls: list[float] = []
    monkeypatch.setattr(time, "sleep", polls.append)
    server = SpawnedToxiproxy(binary)
    try:
        server.start()
    finally:
        server.stop()
    assert polls == []
