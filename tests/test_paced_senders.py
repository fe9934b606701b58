"""Who sent a retry, and waits nothing notes: timing verdicts on real time
(``observe/pacing.py``; ``assertions/waits.py``: ``asked_sleeps``;
``assertions/backoff.py``: ``_over_the_cap``).

A retry whose sender is the caller that sent the attempt before it, and which asked no
noted sleep (``time.sleep``, ``asyncio.sleep``), waited on something nothing notes: an
event (OpenTelemetry's OTLP exporters back off on their shutdown event), a sleep in C, a
lock.  Nothing tells whether that was a backoff, a poll or work, so its spread is never
shown to be jitter on real time, and past ``max_delay`` it is insufficient evidence.
Before, the probe's model judged such waits alone, and cleared lockstep clients spread
by their own work.  A retry sent by another caller (aiohttp's task for a request body, a
pool's thread under ``asyncio.to_thread``) with no sleep noted has asked what the callers
in whose context it ran slept (``Sent.lent``: the task that made aiohttp's, the task that
awaited ``to_thread``); where none slept (``run_in_executor``) it is not known, and the
probe's model reads it, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from typing import Any

import aiohttp
import pytest
import requests
from paced import (
    SLEEPS,
    WORK,
    _charge,
    _jittered_fleet,
    _neither_clears,
    _work,
    _working_herd,
)
from real_clients import released_together

from pytest_resilience import HttpService, Resilience, ResilienceAssertionError
from pytest_resilience.assertions import InsufficientEvidence
from pytest_resilience.observe.join import Trace
from pytest_resilience.observe.pacing import Pacing
from pytest_resilience.runtime import pacing
from pytest_resilience.runtime.pacing import Sent, Sleep

NOTHING_ASKED = "asked no sleep the plugin notes"
"""What both verdicts say of retries whose senders asked no noted sleep."""


@pytest.mark.parametrize("pause", ["Event.wait", "sleep in C"])
def test_lockstep_clients_backing_off_in_a_wait_nothing_notes_are_not_shown_jittered(
    resilience: Resilience, pause: str
) -> None:
    """The six clients above, their 200 ms backoff a wait the plugin does not note: an
    interruptible one, ``Event.wait`` on a stop event that is never set, as
    OpenTelemetry's OTLP exporters back off (``opentelemetry/exporter/otlp/common/
    http.py``, ``_OTLPHTTPClient.export``: ``self._shutdown_event.wait(backoff)``), or a
    sleep in C.  With no sleep noted the probe's model judged the herd alone and both
    verdicts passed; a retry whose sender is known and asked no noted sleep waited on
    something else, and its spread is not shown to be jitter on real time."""
    wait = threading.Event().wait if pause == "Event.wait" else _work
    _neither_clears(resilience, _working_herd(resilience, wait), NOTHING_ASKED)


def test_a_jittered_fleet_waiting_on_events_is_insufficient_evidence_on_real_time(
    resilience: Resilience,
) -> None:
    """The same fleet, each client waiting its draw on a stop event (OpenTelemetry's
    exporters): nothing notes those waits, so nothing tells their spread from work or
    queueing on real time, and the message sends it to virtual time (next test)."""
    _neither_clears(resilience, _jittered_fleet(resilience, threading.Event().wait), "virtual time")


@pytest.mark.virtual_time
def test_a_jittered_fleet_waiting_on_events_is_cleared_on_virtual_time(
    resilience: Resilience,
) -> None:
    """The same fleet on virtual time: each wait held to the real time it took."""
    api = _jittered_fleet(resilience, threading.Event().wait)
    api.assert_backoff(jitter=True, min_factor=1)
    resilience.assert_no_retry_storm(api)


def test_a_wait_past_the_cap_with_no_sleep_noted_is_not_shown_either_way(
    resilience: Resilience,
) -> None:
    """A lone client waits 1.2 s on a lock with nothing noted before it, 0.8 s past a
    0.4 s cap: it was failed (nothing noted read as nothing known), though nothing tells
    that wait from a slot it queued for, as the 20 ms sleep above makes it insufficient
    evidence."""
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=1)
    assert _charge(api, "solo") == 503
    held = threading.Lock()
    held.acquire()
    assert not held.acquire(timeout=1.2)
    assert _charge(api, "solo") == 200
    with pytest.raises(InsufficientEvidence, match=NOTHING_ASKED):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


class _WorkingSession(requests.Session):
    """A session that, after a failed answer, works ``work`` s outside the interpreter
    before its next request (a credential provider's session refreshing its token)."""

    def __init__(self, work: float) -> None:
        super().__init__()
        self.work = work
        self.failed = False

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.failed:
            _work(self.work)
        response = super().request(*args, **kwargs)
        self.failed = response.status_code >= 500
        return response


def test_opentelemetry_exporters_spread_by_their_own_work_are_not_shown_jittered(
    resilience: Resilience,
) -> None:
    """Six OTLP/HTTP span exporters without jitter (the client's ``jitter=0``: each waits
    ``2 ** 0`` s on its shutdown event, ``_OTLPHTTPClient.export`` in
    ``opentelemetry/exporter/otlp/common/http.py``), their sessions working 0-500 ms
    after a failure (``OTLPSpanExporter(session=)``; a token refreshed from a slow
    identity provider): lockstep, spread by their work.  Nothing notes the event's wait,
    and with no sleep noted the probe's model judged the herd alone and cleared it."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider

    collector = resilience.http_service("collector")
    collector.respond(200, body=b"")
    collector.route("POST", "/v1/traces").fail(503, count=len(WORK))
    exporters, spans = [], []
    tracer = TracerProvider().get_tracer("paced")
    for work in (5 * w for w in WORK):
        exporter = OTLPSpanExporter(
            endpoint=f"{collector.url}/v1/traces", timeout=5, session=_WorkingSession(work)
        )
        exporter._client._jitter = 0.0
        exporters.append(exporter)
        with tracer.start_as_current_span("export") as span:
            spans.append(span)
    try:
        results = released_together(len(WORK), lambda n: exporters[n].export([spans[n]]))
    finally:
        for exporter in exporters:
            exporter.shutdown()
    assert [result.name for result in results] == ["SUCCESS"] * len(WORK)
    _neither_clears(resilience, collector, NOTHING_ASKED)


def _service(resilience: Resilience, failures: int) -> HttpService:
    api = resilience.http_service("payments")
    api.respond(200, json={"ok": True})
    api.route("POST", "/charges").fail(503, count=failures)
    return api


async def _aiohttp_charge(session: aiohttp.ClientSession, api: HttpService, key: str) -> int:
    """One POST with a JSON body: aiohttp writes it from a task of its own
    (``aiohttp/client_reqrep.py``, ``ClientRequest.send``: ``write_bytes`` in a task)."""
    headers = {"Idempotency-Key": key}
    async with session.post(f"{api.url}/charges", json={}, headers=headers) as response:
        await response.read()
        return response.status


def test_an_aiohttp_fleet_posting_bodies_with_jittered_sleeps_is_cleared(
    resilience: Resilience,
) -> None:
    """Found by the third review: eight aiohttp clients POSTing, each retrying once after
    an ``asyncio.sleep`` 150 ms from the next.  The body goes from aiohttp's own task,
    which slept nothing: read as a sender that asked nothing, the fleet was insufficient
    evidence; its sender is not the one that waited, so the probe's model clears it."""
    api = _service(resilience, len(SLEEPS))

    async def client(n: int, wait: float) -> None:
        async with aiohttp.ClientSession() as session:
            assert await _aiohttp_charge(session, api, f"a{n}") == 503
            await asyncio.sleep(wait)
            assert await _aiohttp_charge(session, api, f"a{n}") == 200

    async def fleet() -> None:
        await asyncio.gather(*(client(n, w) for n, w in enumerate(SLEEPS)))

    asyncio.run(fleet())
    api.assert_backoff(jitter=True, min_factor=1)
    resilience.assert_no_retry_storm(api)


def _breached(api: HttpService) -> None:
    with pytest.raises(ResilienceAssertionError, match="above the cap of 400 ms") as raised:
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)
    assert not isinstance(raised.value, InsufficientEvidence)


def test_an_aiohttp_client_posting_after_a_sleep_past_the_cap_is_failed(
    resilience: Resilience,
) -> None:
    """Found by the third review: one aiohttp client, ``asyncio.sleep(1.0)`` before its
    POST's retry, under a 0.4 s cap: a breach, which was called insufficient evidence."""
    api = _service(resilience, 1)

    async def client() -> None:
        async with aiohttp.ClientSession() as session:
            assert await _aiohttp_charge(session, api, "late") == 503
            await asyncio.sleep(1.0)
            assert await _aiohttp_charge(session, api, "late") == 200

    asyncio.run(client())
    _breached(api)


def test_a_client_sending_from_a_pool_thread_after_a_sleep_past_the_cap_is_failed(
    resilience: Resilience,
) -> None:
    """Found by the third review: a sync call run with ``asyncio.to_thread``, the retry
    loop's ``asyncio.sleep(1.0)`` in the task (tenacity's ``AsyncRetrying`` around a sync
    client), under a 0.4 s cap: a breach, which was called insufficient evidence."""
    api = _service(resilience, 1)

    async def client() -> None:
        assert await asyncio.to_thread(_charge, api, "late") == 503
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(_charge, api, "late") == 200

    asyncio.run(client())
    _breached(api)


def test_a_client_sending_from_an_executor_after_a_sleep_past_the_cap_is_failed(
    resilience: Resilience,
) -> None:
    """The same with ``loop.run_in_executor``, which runs the call in the pool's thread
    without a context of its own: each call a pool runs sends as a caller of its own."""
    api = _service(resilience, 1)

    async def client() -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, _charge, api, "late") == 503
        await asyncio.sleep(1.0)
        assert await loop.run_in_executor(None, _charge, api, "late") == 200

    asyncio.run(client())
    _breached(api)


def test_a_breach_slept_in_a_virtual_block_of_a_real_time_test_is_failed(
    resilience: Resilience,
) -> None:
    """Found by the third review: in a block on virtual time, sleeps are virtual and
    nothing is noted; read as a sender that asked nothing, a 5 s sleep under a 0.4 s cap
    was insufficient evidence.  On virtual time what clients asked is not read."""
    api = _service(resilience, 1)
    with resilience.virtual_time():
        assert _charge(api, "late") == 503
        time.sleep(5.0)
        assert _charge(api, "late") == 200
    _breached(api)


def test_a_virtual_block_is_never_sent_to_virtual_time(resilience: Resilience) -> None:
    """Found by the third review: three clients sleeping 1.0, 0.98 and 0.96 s in a block
    on virtual time, too alike to show jitter: the message told them they asked no sleep
    and to use virtual time, which they were on."""
    api = _service(resilience, 3)

    def client(n: int, wait: float) -> None:
        assert _charge(api, f"v{n}") == 503
        time.sleep(wait)
        assert _charge(api, f"v{n}") == 200

    with resilience.virtual_time():
        clients = [
            threading.Thread(target=client, args=(n, w)) for n, w in enumerate((1.0, 0.98, 0.96))
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
    with pytest.raises(InsufficientEvidence) as raised:
        api.assert_backoff(jitter=True, min_factor=1)
    assert "asked no sleep" not in str(raised.value)


def test_a_pool_calls_sleep_is_not_lent_to_the_next_call(resilience: Resilience) -> None:
    """Found by the fourth review: a call a pool ran that ended in a sleep lent it to the
    next call on that thread, and a 1 s wait past a 0.4 s cap was insufficient evidence
    ("slept no longer than 200 ms"); each call starts with no sleep noted."""
    api = _service(resilience, 1)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert pool.submit(_charge, api, "late").result() == 503
        pool.submit(time.sleep, 0.2).result()  # another job's pause
        time.sleep(0.8)  # the client's own wait, on this thread
        assert pool.submit(_charge, api, "late").result() == 200
    _breached(api)


def test_the_pool_call_wrapper_takes_what_later_pythons_pass() -> None:
    """Found by the fourth review: Python 3.14's pool workers call ``work_item.run(ctx)``;
    a wrapper taking the item alone would end every worker while a test records."""
    ran = []

    class Item:
        def run(self, *args: object) -> None:
            ran.append(args)

    wrapped = pacing._work_item(Item.run)
    wrapped(Item())
    wrapped(Item(), "context")
    assert ran == [(), ("context",)]


def test_an_anyio_worker_threads_sender_is_not_told_from_the_task_that_slept(
    resilience: Resilience,
) -> None:
    """Found by the fourth review, a known limit: anyio keeps its worker threads between
    calls, and nothing tells one call from the next, so the retry's sender looks like the
    caller that sent the attempt before, with no sleep; the task slept 1 s past a 0.4 s
    cap, and the verdict cannot tell: insufficient evidence, which names the worker
    thread (never a pass).  ``asyncio.to_thread`` is told apart (the test above)."""
    import anyio
    import anyio.to_thread

    api = _service(resilience, 1)

    async def client() -> None:
        assert await anyio.to_thread.run_sync(_charge, api, "late") == 503
        await anyio.sleep(1.0)
        assert await anyio.to_thread.run_sync(_charge, api, "late") == 200

    anyio.run(client)
    with pytest.raises(InsufficientEvidence, match="anyio worker thread"):
        api.assert_backoff(jitter=False, min_factor=1, max_delay=0.4)


async def _aiohttp_working_client(api: HttpService, key: str, work: float) -> None:
    """An aiohttp client of a lockstep herd: 200 ms twice, after its own work in a pool
    thread (``WORK``), which nothing notes."""
    async with aiohttp.ClientSession() as session:
        for attempt in range(3):
            if await _aiohttp_charge(session, api, key) != 503 or attempt == 2:
                return
            await asyncio.to_thread(_work, work)
            await asyncio.sleep(0.2)


def test_a_lockstep_aiohttp_herd_spread_by_its_own_work_is_not_shown_jittered(
    resilience: Resilience,
) -> None:
    """Six aiohttp clients POSTing, 200 ms twice, spread up to 100 ms by their own work:
    each retry's body goes from a task aiohttp made (``aiohttp/client_reqrep.py``,
    ``ClientRequest.send``), which slept nothing, so the sender was not known and the
    probe's model cleared the herd (the working herd of threads in
    ``test_paced_verdicts.py``, through aiohttp).  The task that made it slept 200 ms,
    and the body's task runs in a copy of its context: that sleep is what it asked."""
    api = _service(resilience, 2 * len(WORK))

    async def herd() -> None:
        await asyncio.gather(
            *(_aiohttp_working_client(api, f"h{n}", w) for n, w in enumerate(WORK))
        )

    asyncio.run(herd())
    _neither_clears(resilience, api, "slept from 200 to 200 ms")


def test_a_lockstep_herd_sending_from_to_thread_is_not_shown_jittered(
    resilience: Resilience,
) -> None:
    """The same herd, its requests sent with ``asyncio.to_thread`` (a sync client under an
    async retry loop): each call runs in a pool's thread, a caller of its own that slept
    nothing, in a copy of the awaiting task's context, where the task's sleep is found."""
    api = _service(resilience, 2 * len(WORK))

    async def client(key: str, work: float) -> None:
        for attempt in range(3):
            if await asyncio.to_thread(_charge, api, key) != 503 or attempt == 2:
                return
            await asyncio.to_thread(_work, work)
            await asyncio.sleep(0.2)

    async def herd() -> None:
        await asyncio.gather(*(client(f"t{n}", w) for n, w in enumerate(WORK)))

    asyncio.run(herd())
    _neither_clears(resilience, api, "slept from 200 to 200 ms")


def test_a_task_is_lent_only_what_its_creator_had_slept_when_it_was_made(
    resilience: Resilience,
) -> None:
    """Found by review: the lineage held the creator itself, so a task was lent every
    sleep its creator made later too (a test body or supervisor polling while its
    clients retry).  Now a context holds the creator's sleeps as they stood when it was
    copied: the child made after the parent's first sleep is lent that one, not the
    parent's later poll, and never its own sleeps."""
    resilience.http_service("payments")
    lent: list[list[float]] = []

    async def child(made: asyncio.Event, polled: asyncio.Event) -> None:
        made.set()
        await polled.wait()
        await asyncio.sleep(0.03)  # its own: never lent to itself
        lent.append([sleep.seconds for sleep in pacing._lent(pacing._ACTIVE)])

    async def parent() -> None:
        await asyncio.sleep(0.01)
        made, polled = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(child(made, polled))
        await made.wait()
        await asyncio.sleep(0.02)  # the parent's poll, after the child was made
        polled.set()
        await task

    asyncio.run(parent())
    assert lent == [[0.01]]


def test_what_another_recording_slept_is_not_lent(resilience: Resilience) -> None:
    """A context can outlive its test (a thread's, a long-lived task's): its lenders of
    an earlier recording are not this one's."""
    resilience.http_service("payments")
    other = pacing.PacingRecorder()
    link = pacing._Link(Sleep(0.0, 0.2), None)
    token = pacing._LINEAGE.set((pacing._Lender(-1, weakref.ref(other), link),))
    try:
        assert pacing._lent(pacing._ACTIVE) == []
        assert pacing._lent(other) == [Sleep(0.0, 0.2)]
    finally:
        pacing._LINEAGE.reset(token)


def test_what_a_sender_that_slept_nothing_is_lent_counts_only_where_another_sent_before() -> None:
    """``Pacing.asked`` reads ``Sent.lent`` (what the callers in whose context the sender
    ran slept) only where the sender slept nothing and another caller sent the attempt
    before: the same caller with nothing noted waited on something nothing notes (0),
    whatever its context slept, and a sender's own sleeps are what it asked."""
    trace = Trace(1, "d", 0, True, opened_at=10.0, ended_at=20.0, port=5000)
    first = Sent(5000, 80, 10.1, 7, 0, ())
    lent = (Sleep(10.3, 0.2),)

    def asked(retry: Sent, since: float = 10.25) -> float | None:
        return Pacing.join([first, retry], {3: trace}, 0.0, 80).asked(3, 11.02, since, (3, 10.15))

    assert asked(Sent(5000, 80, 11.0, 12, 1, (), lent)) == pytest.approx(0.2)
    assert asked(Sent(5000, 80, 11.0, 7, 1, (), lent)) == 0.0
    assert asked(Sent(5000, 80, 11.0, 12, 1, (Sleep(10.4, 0.1),), lent)) == pytest.approx(0.1)
    assert asked(Sent(5000, 80, 11.0, 12, 1, (), lent), since=10.35) is None
    two = (Sleep(10.3, 0.2, site=1), Sleep(10.5, 0.05, site=2))  # a backoff, a poll
    assert asked(Sent(5000, 80, 11.0, 12, 1, (), two)) == pytest.approx(0.05)
    paced = Pacing.join([first, Sent(5000, 80, 11.0, 12, 1, (), two)], {3: trace}, 0.0, 80)
    assert paced.places(3, 11.02, 10.25, (3, 10.15)) == 2
