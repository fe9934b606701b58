"""asyncio on virtual time (``runtime/virtual_loops.py``): a participant's loop waits in
its selector as a virtual wait, unless an answer it asked for is on its way."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import threading
import time

import pytest

from pytest_resilience import ConfigurationError
from pytest_resilience.clock import real_monotonic, real_sleep
from pytest_resilience.runs import drive, load
from pytest_resilience.runtime.virtual import virtual_time


def test_a_loops_sleeps_and_timeouts_jump_the_clock() -> None:
    async def body() -> tuple[float, bool]:
        started = time.monotonic()
        await asyncio.gather(*(asyncio.sleep(s) for s in (5, 30, 60)))
        try:
            await asyncio.wait_for(asyncio.sleep(600), timeout=120)
            timed_out = False
        except asyncio.TimeoutError:
            timed_out = True
        return time.monotonic() - started, timed_out

    with virtual_time() as clock:
        took, timed_out = asyncio.run(body())
    assert timed_out
    assert 180 <= took < 181
    assert clock.real < 5  # 180 s of waits in real time would be 180 s
    assert clock.jumps >= 4


def test_a_loop_and_a_thread_share_one_clock() -> None:
    """The thread's 20 s sleep and the loop's 30 s one overlap: 30 s pass, not 50."""
    woke: dict[str, float] = {}

    def sleeper() -> None:
        time.sleep(20)
        woke["thread"] = time.monotonic()

    async def body() -> None:
        await asyncio.sleep(30)
        woke["loop"] = time.monotonic()

    with virtual_time() as clock:
        started = time.monotonic()
        thread = threading.Thread(target=sleeper)
        thread.start()
        asyncio.run(body())
        thread.join()
    assert 20 <= woke["thread"] - started < 21
    assert 30 <= woke["loop"] - started < 31
    assert clock.real < 5


def _slow_echo(delay: float) -> tuple[socket.socket, threading.Thread]:
    """A server outside any block that answers each line after ``delay`` real seconds."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = conn.recv(1024)
            real_sleep(delay)
            conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_no_jump_fires_a_timeout_while_an_answer_is_on_its_way() -> None:
    """The hazard of a jump during real I/O: a client waits 5 s (virtual) for an answer
    that takes 0.3 s of real time while another task sleeps 10 s.  Jumping the loop's
    wait to its first deadline would time the read out before the answer could come."""
    listener, server = _slow_echo(0.3)
    port = listener.getsockname()[1]

    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"ping\n")
        try:
            return await asyncio.wait_for(reader.readline(), timeout=5)
        finally:
            writer.close()

    async def body() -> tuple[bytes, None]:
        return await asyncio.gather(ask(), asyncio.sleep(10))  # type: ignore[return-value]

    with listener, virtual_time() as clock:
        answer, _ = asyncio.run(body())
    server.join(5)
    assert answer == b"ping\n"
    assert clock.virtual >= 10
    assert clock.real < 5


def test_a_loop_waiting_only_on_io_is_woken_by_it() -> None:
    """No timer: the loop waits (virtually, with no deadline) until bytes come from a
    thread outside the block, in real time; no jump, no hang."""
    left, right = socket.socketpair()

    def send_later() -> None:
        real_sleep(0.2)
        right.send(b"x")

    async def body() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        started = real_monotonic()
        left.setblocking(False)
        data = await loop.sock_recv(left, 1)
        return data, real_monotonic() - started

    sender = threading.Thread(target=send_later, daemon=True)
    sender.start()  # before the block: not a participant, its sleep is real
    with left, right, virtual_time() as clock:
        data, took = asyncio.run(body())
    sender.join(5)
    assert data == b"x"
    assert took < 5
    assert clock.jumps == 0


def test_the_plugins_loops_and_loops_outside_the_block_keep_real_time() -> None:
    """A loop run by a thread started before the block is no participant: its sleep is
    real (0.2 s), and the selector's patch is gone after the block."""
    real_select = selectors.DefaultSelector.select
    took: list[float] = []

    def outside() -> None:
        started = real_monotonic()
        asyncio.run(asyncio.sleep(0.2))
        took.append(real_monotonic() - started)

    go = threading.Event()
    thread = threading.Thread(target=lambda: (go.wait(), outside()), daemon=True)
    thread.start()
    with virtual_time():
        go.set()
        thread.join(10)
    assert took and took[0] >= 0.2
    assert selectors.DefaultSelector.select is real_select


def test_a_connect_not_yet_done_is_waited_for_in_real_time() -> None:
    """Nothing written yet, the connect in progress (a full accept queue drops the SYN; a
    thread outside the block drains it after 0.3 s): a jump fired the 5 s timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filling = []
    while True:
        try:
            filling.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
        except OSError:
            break
    stop = threading.Event()

    def drain() -> None:
        real_sleep(0.3)
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):  # a timeout: look at stop again
                listener.accept()[0].close()

    async def body() -> None:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.close()

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    try:
        with virtual_time():
            asyncio.run(body())
    finally:
        stop.set()
        drainer.join(5)
        for conn in filling:
            conn.close()
        listener.close()


def test_work_in_an_executor_made_before_the_block_is_waited_for_in_real_time() -> None:
    """The loop's default executor started its worker before the block: 0.3 s of real
    work in it, under a 5 s timeout, timed out at once."""

    async def body() -> None:
        await asyncio.to_thread(lambda: None)  # the default executor's worker starts
        with virtual_time():
            await asyncio.wait_for(asyncio.to_thread(real_sleep, 0.3), timeout=5)

    asyncio.run(body())


def test_a_transport_made_before_the_block_leaves_flight_once_answered() -> None:
    """Its read callback was bound before the block: after one request it stayed in
    flight for good, and every later sleep took real time."""

    served: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served.append(writer)
        while line := await reader.readline():
            writer.write(line)

    async def connect() -> tuple[asyncio.Server, asyncio.StreamReader, asyncio.StreamWriter]:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        return server, reader, writer

    async def ask_then_sleep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        await asyncio.sleep(3)  # the server, on this loop, wrote last: no matter

    async def close(server: asyncio.Server, writer: asyncio.StreamWriter) -> None:
        # Each transport closed and told so before the loop closes: else it warns when
        # collected, maybe during another test.
        for each in (writer, *served):
            each.close()
            await each.wait_closed()
        server.close()
        await server.wait_closed()

    loop = asyncio.new_event_loop()
    try:
        server, reader, writer = loop.run_until_complete(connect())  # before the block
        with virtual_time() as clock:
            loop.run_until_complete(ask_then_sleep(reader, writer))
        loop.run_until_complete(close(server, writer))
    finally:
        loop.close()
    assert clock.real < 2


def _split_answers() -> tuple[socket.socket, threading.Thread]:
    """A server outside any block answering each request on one connection in two pieces,
    0.3 s apart."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(4096):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
                real_sleep(0.3)
                conn.sendall(b"world")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_a_kept_alive_connection_is_framed_afresh_in_each_block() -> None:
    """Wrapped in the first block, its protocol kept a wrapper fed into that block's
    framing, which never saw the second block's request: the answer's first piece ended
    its flight, and a jump fired the 5 s read timeout.  Also: a memoryview written."""
    listener, server = _split_answers()

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(memoryview(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        await reader.readuntil(b"\r\n\r\n")
        return await asyncio.wait_for(reader.readexactly(10), timeout=5)

    async def beside_a_sleep(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        answer, _ = await asyncio.gather(ask(reader, writer), asyncio.sleep(10))
        return answer

    loop = asyncio.new_event_loop()
    try:
        reader, writer = loop.run_until_complete(
            asyncio.open_connection(*listener.getsockname()[:2])
        )
        for _ in range(2):
            with virtual_time() as clock:
                assert loop.run_until_complete(beside_a_sleep(reader, writer)) == b"helloworld"
            assert clock.virtual >= 10 and clock.real < 5
        writer.close()
        loop.run_until_complete(writer.wait_closed())
    finally:
        loop.close()
        listener.close()
    server.join(5)


def test_the_loops_of_drive_and_load_are_on_virtual_time() -> None:
    """``runs._caller`` runs a coroutine function on a loop of the calling thread:
    ``drive``'s (the test's thread) and ``load``'s workers (started in the block)."""

    async def call() -> None:
        await asyncio.sleep(30)

    with virtual_time() as clock:
        driven = drive(call, calls=3)
        loaded = load(call, duration=60, rate=0.1, concurrency=2)  # 6 calls, 10 s apart
    assert not driven.errors and not loaded.errors
    assert len(loaded) == 6
    # drive: 3 x 30 s.  load: two workers take the slots (0, 10, ... 50 s) as they come
    # free, at 0, 10, 30, 40, 60 and 70 s: the last call ends at 100 s.
    assert 190 <= clock.virtual < 191
    assert clock.real < 5


SLICED = """
import httpx
import pytest

BODY = "x" * 2000


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.virtual_time
@pytest.mark.slicer("api", average_size=64, delay=20000)
async def test_sliced(resilience):
    api = resilience.http_service("api")
    api.route("GET", "/big").respond(200, body=BODY)
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
        assert (await client.get("/big")).text == BODY
"""


def test_an_answer_sliced_by_a_fault_is_waited_for_in_real_time(
    inner: pytest.Pytester, url: str
) -> None:
    """Slices 20 ms apart: the first one cleared the transport's flight, and a jump fired
    httpx's 5 s read timeout before the rest came."""
    inner.makepyfile(SLICED)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=1)


LARGE_ANSWERS = """
import asyncio

import aiohttp
import pytest

from pytest_resilience.assertions.operations import answered_at, operations
from pytest_resilience.assertions.timing import real_between
from pytest_resilience.clock import CLOCK
from pytest_resilience.runtime import virtual_loops

CLIENTS, FAILURES, WAIT = 5, 3, 1.0


@pytest.mark.virtual_time
@pytest.mark.parametrize("run", range(3))
def test_a_lockstep_herd_with_large_answers(resilience, run):
    api = resilience.http_service("api")
    api.respond(200, json={})
    api.fail(503, count=CLIENTS * FAILURES, body=b"x" * 2_000_000)

    async def client(session, n):
        while True:
            headers = {"Idempotency-Key": f"op{n}"}
            async with session.post(api.url + "/x", headers=headers) as answer:
                await answer.read()
                if answer.status == 200:
                    return
            await asyncio.sleep(WAIT)  # no jitter: a lockstep herd

    async def herd():
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(session, n) for n in range(CLIENTS)))

    asyncio.run(herd())
    # Every connection's HTTP was read to its end (aiohttp calls data_received(b"") itself
    # when it resumes reading: read as the end of the stream, it made the framing opaque,
    # and the first piece of each answer ended its flight again).
    assert [f for f in virtual_loops._FRAMINGS.values() if f.opaque] == []
    for op in operations(api.exchanges):
        for before, after in zip(op.attempts, op.attempts[1:]):
            noise = after.started_at - answered_at(before) - WAIT
            real = real_between(answered_at(before), after.started_at, CLOCK.jumps)
            assert noise <= real + 0.001, (op.label, noise, real)
    with pytest.raises(AssertionError, match="^retry storm"):
        resilience.assert_no_retry_storm(api)
"""


def test_a_large_answer_in_pieces_holds_the_jumps_until_it_has_all_come(
    inner: pytest.Pytester, url: str
) -> None:
    """2 MB answers reach an aiohttp client in pieces (through Toxiproxy, more than through
    the engine): its first piece ended the request's flight, a jump to another client's
    sleep landed in the wait, and the noise bound of the timing verdicts (a wait's real
    time) then cleared a lockstep herd.  Each wait's noise must stay within its real time."""
    inner.makepyfile(LARGE_ANSWERS)
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=3)


ASYNC_TESTS = """
import time

import anyio
import httpx
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.virtual_time
async def test_retry_after_a_minute(resilience):
    api = resilience.http_service("api")
    api.route("GET", "/quote").rate_limit(burst=1, retry_after=60)
    async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:
        answer = await client.get("/quote")
        assert answer.status_code == 429
        await anyio.sleep(float(answer.headers["Retry-After"]))
        assert (await client.get("/quote")).status_code == 200
    api.assert_retry_after_honoured()
"""


def test_a_coroutine_test_under_the_marker_runs_on_virtual_time(
    inner: pytest.Pytester, url: str
) -> None:
    """anyio's plugin runs the test's loop on the test's thread, inside its block."""
    inner.makepyfile(ASYNC_TESTS)
    # In a process of its own: in process, pytester takes out the modules the run imported
    # when it ends, and an httpx imported again later no longer maps httpcore's errors.
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", f"--toxiproxy={url}", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  clock:    6*.* s virtual in ?.* s real"])


def test_a_uvloop_loop_on_virtual_time_is_refused_in_one_sentence() -> None:
    """uvloop waits in C (its ``Loop.run_forever`` runs libuv), where no patch reaches its
    timers: on virtual time a 60 s sleep would take 60 real seconds.  Its loop is refused
    as it is made, with what to do; on real time it runs as ever."""
    import uvloop

    with virtual_time(), pytest.raises(ConfigurationError, match="uvloop's event loop"):
        uvloop.new_event_loop()
    assert uvloop.run(asyncio.sleep(0, result="ran")) == "ran"
