"""Reads on virtual time (``runtime/virtual_sockets.py``, ``runtime/ledger.py``): an HTTP
``delay`` is a timer of the plugin's clock, and a participant reading a socket to an
HTTP stub waits on the virtual clock while every byte on the way is at rest, so that a
minute's delay, or the client's own read timeout against it, ends at once.  Where real
time acts (a fault of the proxy's, a server outside the plugin), reads stay real.

What each client does on a read timeout comes from its source: requests turns urllib3's
``ReadTimeoutError`` into ``requests.exceptions.ReadTimeout`` (``requests/adapters.py``,
``HTTPAdapter.send``), which urllib3 raises from the socket's ``TimeoutError``
(``urllib3/connectionpool.py``, ``HTTPConnectionPool._raise_timeout``); httpx raises
``httpx.ReadTimeout`` from httpcore's (``httpcore/_backends/sync.py``,
``SyncStream.read``; ``_backends/anyio.py`` for asyncio); aiohttp raises
``asyncio.TimeoutError`` when its ``ClientTimeout(sock_read=)`` timer fires
(``aiohttp/client_proto.py``, ``ResponseHandler._on_read_timeout``).
"""

from __future__ import annotations

import asyncio
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

import aiohttp
import httpx
import pytest
import requests

from pytest_resilience import HttpService, Resilience
from pytest_resilience.clock import CLOCK, real_monotonic, real_sleep
from pytest_resilience.runtime.virtual import virtual_time
from pytest_resilience.tap import relay


def _stub(resilience: Resilience, seconds: float) -> HttpService:
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    api.delay(seconds, count=1)
    return api


def test_a_read_timeout_against_a_minutes_delay_ends_on_the_virtual_clock(
    resilience: Resilience,
) -> None:
    api = _stub(resilience, 60)
    with virtual_time() as clock:
        started = time.monotonic()
        with pytest.raises(requests.ReadTimeout):
            requests.post(api.url + "/orders", json={}, timeout=30)
        timed_out_after = time.monotonic() - started
        retried = requests.post(api.url + "/orders", json={}, timeout=30)
    assert 30 <= timed_out_after < 31
    assert retried.status_code == 200
    assert clock.skipped >= 29  # 30 s of waiting in real time would skip nothing


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_an_answer_held_a_minute_comes_at_the_virtual_minute(
    resilience: Resilience, client: str
) -> None:
    api = _stub(resilience, 60)
    with virtual_time() as clock:
        started = time.monotonic()
        if client == "requests":
            status = requests.post(api.url + "/orders", json={}, timeout=90).status_code
        else:
            with httpx.Client(timeout=90) as session:
                status = session.post(api.url + "/orders", json={}).status_code
        took = time.monotonic() - started
    assert status == 200
    assert 60 <= took < 61
    (exchange,) = api.exchanges
    assert exchange.ended_at is not None and exchange.ended_at - exchange.started_at >= 60
    assert clock.skipped >= 59


def test_an_async_clients_read_against_a_delay_ends_on_the_virtual_clock(
    resilience: Resilience,
) -> None:
    api = _stub(resilience, 60)

    async def body() -> tuple[int, float, bool]:
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=90) as client:
            status = (await client.post(api.url + "/orders", json={})).status_code
        took = time.monotonic() - started
        api.delay(60, count=1)
        timeout = aiohttp.ClientTimeout(sock_read=20)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                async with session.post(api.url + "/orders", json={}) as answer:
                    await answer.read()
                timed_out = False
            except asyncio.TimeoutError:
                timed_out = True
        return status, took, timed_out

    with virtual_time() as clock:
        status, took, timed_out = asyncio.run(body())
    assert status == 200
    assert 60 <= took < 61
    assert timed_out
    assert clock.skipped >= 79


def test_a_close_the_proxy_makes_in_real_time_is_not_jumped_over(
    resilience: Resilience,
) -> None:
    """The request reaches the layer and rests there (a 10 s delay), while the proxy closes
    the connection 0.3 s later, in real time (Toxiproxy's ``timeout`` toxic closes at its
    timeout whether data came or not: ``toxics/timeout.go``, ``TimeoutToxic.Pipe``).  Had
    the read waited on the virtual clock, the client's 5 s timeout would have come first:
    a timeout where real time gives a closed connection (a fault of the proxy's acts on
    real time and counts nothing)."""
    api = _stub(resilience, 10)
    api.timeout(300, stream="downstream")
    with virtual_time(), pytest.raises(requests.ConnectionError) as caught:
        requests.post(api.url + "/orders", json={}, timeout=5)
    assert not isinstance(caught.value, requests.ReadTimeout), caught.value


class _SlowEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(64)
        real_sleep(0.3)
        self.request.sendall(b"late")


def test_a_read_from_a_server_outside_the_plugin_keeps_real_time() -> None:
    """Nothing counts the bytes of a server the plugin does not run: its answer may be on
    its way, so the read is real and the clock waits for it, however long another
    participant sleeps."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SlowEcho)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        got: list[bytes] = []

        def read() -> None:
            with socket.create_connection(server.server_address, timeout=2) as sock:
                sock.sendall(b"hello")
                got.append(sock.recv(64))

        with virtual_time():
            reader = threading.Thread(target=read)
            reader.start()
            time.sleep(100)
            reader.join()
        assert got == [b"late"]
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


def test_a_delay_cut_short_by_the_services_end_leaves_the_clock_free(
    resilience: Resilience,
) -> None:
    """The delay lets go of the exchange's hold while it waits, and takes it back once,
    whether its timer fires or the layer closes first: a hold left taken would keep every
    later test on real time."""
    api = _stub(resilience, 3600)
    with pytest.raises(requests.ReadTimeout):
        requests.post(api.url + "/orders", json={}, timeout=0.2)
    api.close()
    assert not CLOCK.held


def test_answers_a_delay_sends_after_the_client_gave_up_leave_the_next_reads_virtual(
    resilience: Resilience,
) -> None:
    """Every answer comes a minute late; the client gives up after 40 s and tries again.
    Each late answer goes to a connection the client closed: the layer counts the close's
    arrival, so that it knows the answer lost, and the next read still waits on the
    virtual clock (counted as sent, the lost answer held every later read to real time:
    here 40 s of it)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    api.delay(60)
    with virtual_time() as clock:
        for _ in range(3):
            with pytest.raises(requests.ReadTimeout):
                requests.post(api.url + "/orders", json={}, timeout=40)
            time.sleep(1)
    assert clock.virtual >= 123
    assert clock.skipped >= 120


CHILD = """
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/orders", timeout=0.5).read()
    print("answered")
except TimeoutError:
    print("timed out")
"""


@pytest.mark.parametrize("where", ["thread", "process"])
def test_a_client_outside_the_block_gets_its_timeout_in_real_time(
    resilience: Resilience, where: str
) -> None:
    """A client the block does not count (a thread started before it, another process)
    reads in real time: while its answer is held by a delay, the test's own polling must
    not jump the clock to the delay's end (it got the answer where real time gives its
    0.5 s timeout)."""
    api = _stub(resilience, 10)
    outcome: list[str] = []
    go = threading.Event()

    def client() -> None:
        go.wait()
        try:
            requests.post(api.url + "/orders", json={}, timeout=0.5)
            outcome.append("answered")
        except requests.ReadTimeout:
            outcome.append("timed out")

    child: subprocess.Popen[str] | None = None
    thread = threading.Thread(target=client)
    if where == "thread":
        thread.start()
    with virtual_time():
        if where == "thread":
            go.set()
        else:
            argv = [sys.executable, "-c", CHILD, api.url]
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        while not outcome and (child is None or child.poll() is None):
            time.sleep(0.25)
    if child is not None:
        out, _ = child.communicate()
        outcome.append(out.strip())
    else:
        thread.join()
    assert outcome == ["timed out"]


def test_a_refused_request_sent_after_a_delayed_one_is_waited_for(
    resilience: Resilience,
) -> None:
    """A request the client sent right after a delayed one (pipelined), malformed: the
    layer refuses it after the delay, then lingers in real time before it closes.  The
    delay must not count it acted on, nor the linger go uncounted: the read of the close
    timed out on the virtual clock instead."""
    api = _stub(resilience, 0.3)
    with virtual_time(), socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nBOGUS\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):  # raises TimeoutError if the jump came first
            received += chunk
    assert received.startswith(b"HTTP/1.1 200")


def test_a_request_the_tap_still_holds_is_not_at_rest(
    resilience: Resilience, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tap read the request before its leg to the proxy was up (CPython 3.11.2 reads
    a paused transport; a proxy slow to accept): those bytes are on their way, although
    the layer has acted on all it got (from a review; the read timed out at once)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    connect = relay._Link.connect

    async def slow(link: relay._Link) -> None:
        link.client.resume_reading()
        await asyncio.sleep(0.3)
        await connect(link)

    monkeypatch.setattr(relay._Link, "connect", slow)
    with virtual_time():
        assert requests.get(api.url + "/x", timeout=5).status_code == 200


def test_the_counts_stay_together_through_explores_restarts(resilience: Resilience) -> None:
    """explore cuts every connection before each example (the tap's and the layer's):
    the layer counted each cut's arrival, the tap nothing, and every read after the
    first example kept real time (from a review)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    restore = api._snapshot()
    with requests.Session() as kept:
        for _ in range(3):
            kept.get(api.url + "/warm", timeout=5)
            restore()
    api.delay(30, count=1)
    with virtual_time() as clock:
        assert requests.get(api.url + "/y", timeout=60).status_code == 200
    assert clock.skipped >= 29


def test_a_pooled_connection_a_thread_outside_the_block_uses_reads_in_real_time(
    resilience: Resilience,
) -> None:
    """A participant made the pooled connection (counted); a thread started before the
    block sends a delayed request on it with a 0.5 s timeout while the test sleeps 30 s:
    that thread waits in real time, so the delay must not end at a jump (from a review)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    go = threading.Event()
    outcome: list[str] = []
    with requests.Session() as session:

        def worker() -> None:
            go.wait()
            try:
                session.get(api.url + "/w", timeout=0.5)
                outcome.append("answered")
            except requests.ReadTimeout:
                outcome.append("timed out")

        thread = threading.Thread(target=worker)
        thread.start()
        with virtual_time():
            session.get(api.url + "/warm", timeout=5)
            api.delay(10, count=1)
            go.set()
            while not outcome:
                time.sleep(0.25)
        thread.join()
    assert outcome == ["timed out"]


@pytest.mark.parametrize("first", ["connection close", "cut"])
def test_a_close_crossing_the_clients_leaves_the_next_delay_virtual(
    resilience: Resilience, first: str
) -> None:
    """The layer closes after its answer while the client closes after reading it: each
    end crosses the other, so neither side counts the other's (the counts stay apart by
    one).  Once no connection is open on either side, what is apart was lost with them,
    and the next delay waits on the virtual clock again (from a review: 10 s real).  A
    connection opened before the first one has ended on both sides keeps the service
    from coming to rest: its reads stay real (slower, as the README says)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    if first == "cut":
        api.cut(count=1)
    with virtual_time() as clock:
        if first == "cut":
            with pytest.raises(requests.RequestException):
                requests.get(api.url + "/a", timeout=5)
        else:
            requests.get(api.url + "/a", headers={"Connection": "close"}, timeout=5)
        # Both sides let go of the connection (as a test's next step usually comes later):
        # a request made sooner keeps the service from coming to rest, and real, meanwhile.
        deadline = real_monotonic() + 5
        while api._tap.links or api._layer.counts.open:
            assert real_monotonic() < deadline, "the first connection never ended"
            real_sleep(0.01)
        api.delay(10, count=1)
        started = clock.skipped
        assert requests.get(api.url + "/b", timeout=60).status_code == 200
        assert clock.skipped - started >= 9


def test_an_abandoned_delay_holds_no_jump(resilience: Resilience) -> None:
    """A client gave up on a delayed answer: nobody waits for it any more, so neither does
    the clock, though a connection made before the block (a pool's, idle) is open (from a
    review: the 20 s sleep took 20 s real)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    with requests.Session() as pool:
        pool.get(api.url + "/warm", timeout=5)
        api.delay(600, count=1)
        with virtual_time() as clock:
            with pytest.raises(requests.ReadTimeout):
                requests.get(api.url + "/x", timeout=1)
            time.sleep(20)
    assert clock.skipped >= 19


def test_a_client_that_resets_before_the_proxy_is_reached_keeps_the_counts_together(
    resilience: Resilience, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client resets before the tap's leg to the proxy is up: the tap passes its end
    on as the leg's reset, which the layer counts; counted on one side only, it put the
    counts apart the wrong way (the layer ahead, from a review)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    connect = relay._Link.connect

    async def slow(link: relay._Link) -> None:
        await asyncio.sleep(0.1)
        await connect(link)

    monkeypatch.setattr(relay._Link, "connect", slow)
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", api.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    tap, layer = api._tap, api._layer.counts
    deadline = real_monotonic() + 5
    while layer.accepted < 3 or layer.open:
        assert real_monotonic() < deadline, "the layer never saw the three connections end"
        real_sleep(0.01)
    assert layer.settled == tap.up_total - tap.up_lost == 3


def test_a_connection_that_ends_after_its_request_leaves_it_acted_on(
    resilience: Resilience,
) -> None:
    """A request with ``Connection: close`` (urllib sends it): the connection ends after its
    answer, with no read after it, so its request was never counted as acted on, and
    while a pooled connection stayed open every later read kept real time (from a
    review: 10 s).  The client reads to the end before it closes: a close of its own
    crossing the layer's would keep the counts apart anyway, until no connection is open
    (``test_a_close_crossing_the_clients_leaves_the_next_delay_virtual``)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    with virtual_time() as clock, requests.Session() as pooled:
        pooled.get(api.url + "/warm", timeout=5)
        with socket.create_connection(("127.0.0.1", api.port), timeout=5) as once:
            once.sendall(b"GET /once HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while once.recv(65536):
                pass
        api.delay(10, count=1)
        started = clock.skipped
        assert pooled.get(api.url + "/b", timeout=60).status_code == 200
        assert clock.skipped - started >= 9


def test_readers_against_delays_either_side_of_their_timeout_get_what_real_time_gives(
    resilience: Resilience,
) -> None:
    """Six clients, each with a pooled session and a 2.5 s read timeout, against answers
    held 0, 1, 2 and 3 s: each answer held less than the timeout comes, the 3 s one times
    out, whatever the others do meanwhile (a review's stress case; under the suite's
    stress run it also looks for jumps taken while bytes are on their way)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    held = {"/d0": 0.0, "/d1": 1.0, "/d2": 2.0, "/d3": 3.0}
    for path, seconds in held.items():
        if seconds:
            api.route("GET", path).delay(seconds)
    wrong: list[str] = []

    def client(i: int) -> None:
        with requests.Session() as session:
            for n in range(15):
                path = list(held)[(i + n) % 4]
                try:
                    session.get(api.url + path, timeout=2.5)
                    if held[path] > 2.5:
                        wrong.append(f"{path} answered")
                except requests.ReadTimeout:
                    if held[path] < 2.5:
                        wrong.append(f"{path} timed out")
                time.sleep(0.5 * (i % 3))

    with virtual_time() as clock:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
    assert wrong == []
    assert clock.skipped > 0
    deadline = real_monotonic() + 5  # an answer a last jump's timer began may be in the making
    while CLOCK.held:
        assert real_monotonic() < deadline, "a hold was never let go"
        real_sleep(0.01)
