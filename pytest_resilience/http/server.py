"""The HTTP layer behind a service's Toxiproxy proxy: HTTP/1.1 by h11, answers from the script.

It sees what the service processed: every request that got through Toxiproxy,
with the bytes of each answer counted on its connection, so the tap in front of
Toxiproxy can tell whether an answer reached the client.  Stub mode answers
from the :class:`~.script.Script` and applies side effects the way payment APIs
do (one effect per Idempotency-Key, a repeated key replays the stored answer);
forward mode relays what the script lets through to a real upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import h11

from ..clock import CLOCK
from ..runtime import wire
from ..runtime.ledger import LayerCounts
from ..runtime.timers import Timer
from .answers import Answer, Request
from .identity import fingerprint
from .records import (
    ANSWER_BODY_KEPT,
    UNSAFE_METHODS,
    Effect,
    Exchange,
    ExchangeEvent,
    ExchangeStep,
    requested_wait,
)
from .script import PAUSE, Script

MAX_REQUEST_BODY = 16 * 1024 * 1024
"""Bytes of request body the layer holds; a longer one gets 413 and the connection ends
(a body that never ends must not fill the test process's memory)."""
TOO_LARGE = (
    f"request body over {MAX_REQUEST_BODY // (1024 * 1024)} MiB refused by pytest-resilience"
)


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "expect",
}


@dataclass
class Pending:
    """An exchange being recorded (mutable until the answer is out)."""

    connection: int
    index: int
    started_at: float
    request: Request
    key: str | None
    fingerprint: str
    ended_at: float | None = None
    status: int | None = None
    scripted: bool = False
    step: str = ""
    retry_after: str | None = None
    retry_after_delay: float | None = None
    answer_headers: tuple[tuple[str, str], ...] = ()
    answer_body: bytes = b""
    answer_range: tuple[int, int] | None = None
    """Offsets of the answer's bytes in its connection's outgoing stream."""
    cut: bool = False
    """The answer was cut halfway on purpose (so it cannot have reached the client)."""
    cut_at: float | None = None

    def frozen(self, service: str) -> Exchange:
        """The record as it stands (a cut answer is known lost; others not yet known)."""
        return Exchange(
            service,
            self.connection,
            self.index,
            self.started_at,
            self.ended_at,
            self.request.method,
            self.request.path,
            tuple(self.request.headers),
            self.key,
            self.fingerprint,
            self.status,
            self.scripted,
            self.step,
            self.retry_after,
            self.retry_after_delay,
            False if self.cut else None,
            self.answer_headers,
            self.answer_body,
            self.cut_at,
        )


Record = Callable[[ExchangeEvent | Effect, "int | None"], None]
"""A sink for the layer's records: an event, and for an answer sent (not cut), the offset
of its last byte in its connection's outgoing stream."""


@dataclass
class ConnectionLog:
    id: int
    head: bytearray = field(default_factory=bytearray)
    digest: str | None = None
    sent: int = 0
    closed: bool = False
    accepted_at: float = field(default_factory=lambda: CLOCK.now())
    consumed: int = 0
    """Request bytes read."""
    settled: int = 0
    """Of those, the bytes acted on (:class:`~..runtime.ledger.LayerCounts`)."""
    peer_ended: bool = False
    """The client's end (a close, a reset) has come: what is sent from here on is lost."""
    ours_ended: bool = False
    """The layer ended its side (a close, or a half-close after a refusal)."""
    pausing: bool = False
    """A timer holds its answer, and the client has not ended: counted in the layer's."""


class HttpLayer:
    """An HTTP/1.1 server on ``host:0`` that answers from ``script`` or forwards upstream."""

    def __init__(
        self,
        service: str,
        script: Script,
        record: Record,
        *,
        host: str = "127.0.0.1",
        forward_to: tuple[str, int, str] | None = None,
        key_header: str = "Idempotency-Key",
    ) -> None:
        self.service = service
        self.script = script
        self.host = host
        self.port = 0
        self.forward_to = forward_to
        self.key_header = key_header
        self.record = record
        """Where each exchange's steps and each effect go, as they happen (on the loop
        thread); an exchange cancelled because the layer closed does not end."""
        self.connections: dict[int, ConnectionLog] = {}
        self.errors: list[BaseException] = []
        self.counts = LayerCounts()
        """What virtual time reads to tell an answer held by a timer (:meth:`pause`) from
        one on its way (:mod:`~..runtime.ledger`)."""
        self._timer = Timer(self.errors.append, f"pytest-resilience-delays-{service}")
        self._stored: dict[str, Answer] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._connections = wire.Connections()

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        server, self._server = self._server, None
        await self._connections.close(server)
        self._timer.stop()

    async def restart(self) -> None:
        """Cut every connection and forget them and every stored answer (explore's next
        example: fresh connections, an empty idempotency store)."""
        with self._lock:
            for log in self.connections.values():
                log.closed = True  # the tap's links are cut too, and count nothing
        await self._connections.cut_all()
        with self._lock:
            self.connections.clear()
            self._stored.clear()

    def heads(self) -> list[tuple[int, str | None, float | None]]:
        """Each connection so far: its id, the hash of its first request head (to pair it
        with the tap's, :func:`~pytest_resilience.observe.join.pair`), when it was accepted."""
        with self._lock:
            return [(c.id, c.digest, c.accepted_at) for c in self.connections.values()]

    # -- one connection -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log = ConnectionLog(next(self._ids))
        with self._lock:
            self.connections[log.id] = log
        conn = h11.Connection(h11.SERVER)
        PAUSE.set(lambda seconds: self.pause(log, conn, seconds))  # this connection's task only
        self.counts.accepted += 1
        self.counts.open += 1
        self._notice_end(reader, log)
        try:
            with self._connections.open(writer):
                await self._cycle_all(conn, log, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client (or a fault) ended the connection
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: hand it to the test
            self.errors.append(exc)
        finally:
            self._hang_up(writer, log)
            self.counts.open -= 1
            if not self.counts.open and self.counts.idle is not None:
                self.counts.idle()

    def _hang_up(self, writer: asyncio.StreamWriter, log: ConnectionLog) -> None:
        """End the connection: what it read is acted on (nothing more will be), its end
        counted (:meth:`_end_ours`), then it closes."""
        self._settle(log)
        self._end_ours(log)
        log.closed = True
        writer.transport.abort() if writer.transport.is_closing() else writer.close()

    def _end_ours(self, log: ConnectionLog) -> None:
        """Our side ends (a close, or a half-close): once, unless the client's end came
        first, it is counted as a byte on its way, before it goes; the tap counts its
        arrival so."""
        if not (log.ours_ended or log.peer_ended):
            self.counts.sent += 1
        log.ours_ended = True

    def _received(self, log: ConnectionLog) -> Callable[[bytes], None]:
        """What keeps the head of the connection's first bytes, to join it with the tap."""

        def keep(data: bytes) -> None:
            log.consumed += len(data)
            if log.digest is None and len(log.head) < wire.HEAD_LIMIT:
                log.head += data
                log.digest = wire.head_digest(bytes(log.head))

        return keep

    def _send(self, writer: asyncio.StreamWriter, log: ConnectionLog, data: bytes) -> None:
        log.sent += len(data)
        if not log.peer_ended:
            self.counts.sent += len(data)  # before the write: never counted after it arrived
        writer.write(data)

    def _notice_end(self, reader: asyncio.StreamReader, log: ConnectionLog) -> None:
        """Count the client's end as it comes (the tap counted it as one byte passed on),
        even while the connection's task waits on a delay: from then on, what the layer
        sends on it is lost, and is not counted."""

        def ended(real: Callable[..., None]) -> Callable[..., None]:
            def end(*args: object) -> None:
                if not (log.peer_ended or log.ours_ended or log.closed):
                    self.counts.settled += 1  # the tap counted it, unless ours had come
                log.peer_ended = True
                self._pausing(log, False)  # nobody waits for its answer now
                real(*args)

            return end

        reader.feed_eof = ended(reader.feed_eof)  # type: ignore[method-assign]
        reader.set_exception = ended(reader.set_exception)  # type: ignore[method-assign]

    def _settle(self, log: ConnectionLog, unread: int = 0) -> None:
        """The connection's bytes read so far, but the last ``unread`` (a request sent
        after the one answered, not looked at yet), are acted on: it waits for more, or
        for a timer."""
        settled = log.consumed - unread
        if settled > log.settled:
            self.counts.settled += settled - log.settled
            log.settled = settled

    async def pause(self, log: ConnectionLog, conn: h11.Connection, seconds: float) -> None:
        """Hold the answer being made on ``log``'s connection ``seconds`` on the plugin's
        clock: a timer, so that virtual time may jump to its end.  Meanwhile no answer is
        being made (the exchange's :meth:`~..clock.Clock.hold` is let go), and the timer
        takes it back as it fires, before the thread that jumped to it goes on."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        claim = threading.Lock()
        claimed: list[bool] = []

        def take() -> bool:  # the hold is taken back once: by the timer, or after a cancel
            with claim:
                first = not claimed
                claimed.append(True)
                return first

        def resume() -> None:
            if not done.done():
                done.set_result(None)

        def fire() -> None:
            if not take():
                return
            CLOCK.hold()
            try:
                loop.call_soon_threadsafe(resume)
            except RuntimeError:  # the loop has closed: no answer will be made
                CLOCK.release()

        self._settle(log, len(conn.trailing_data[0]))
        self._pausing(log, True)
        # The timer first: from the release on, a jump may come, and must see it.
        self._timer.at(CLOCK.now() + seconds, fire, lambda: not log.peer_ended)
        CLOCK.release()
        try:
            await done
        finally:
            self._pausing(log, False)
            if take():
                CLOCK.hold()

    def _pausing(self, log: ConnectionLog, pausing: bool) -> None:
        """A timer holds ``log``'s answer (True), or no longer does: counted while the
        client may still want it (:attr:`~..runtime.ledger.LayerCounts.pausing`)."""
        if pausing and not log.peer_ended:
            log.pausing = True
            self.counts.pausing += 1
        elif not pausing and log.pausing:
            log.pausing = False
            self.counts.pausing -= 1

    async def _cycle_all(
        self,
        conn: h11.Connection,
        log: ConnectionLog,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        received = self._received(log)
        for index in itertools.count():
            refusal: tuple[int, str] | None = None
            try:
                got = await wire.next_request(
                    conn,
                    reader,
                    lambda data: self._send(writer, log, data),
                    MAX_REQUEST_BODY,
                    received,
                    lambda: self._settle(log),
                )
            except wire.TooLarge:
                refusal = (413, TOO_LARGE)
            except h11.RemoteProtocolError as exc:
                refusal = (exc.error_status_hint, f"bad request: {exc}")
            if refusal is not None:  # outside the except: the body read so far is freed
                CLOCK.hold()  # it lingers in real time, uncounted
                try:
                    await self._refuse(conn, log, reader, writer, *refusal)
                finally:
                    CLOCK.release()
                return
            if got is None:
                return
            event, body = got
            request = Request(
                event.method.decode("ascii", "replace").upper(),
                event.target.decode("ascii", "replace"),
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
                body,
            )
            if not await self._exchange(conn, log, writer, index, request):
                return
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                await writer.drain()
                return
            conn.start_next_cycle()

    async def _refuse(
        self,
        conn: h11.Connection,
        log: ConnectionLog,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        reason: str,
    ) -> None:
        """Answer ``status`` with ``reason`` and end the connection (not an exchange), after
        draining what the client still sends, so that the answer is not lost to a reset."""
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = f"{reason}\n".encode()
        headers = [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
        with contextlib.suppress(h11.LocalProtocolError):
            self._send(
                writer,
                log,
                conn.send(h11.Response(status_code=status, headers=headers)),
            )
            self._send(writer, log, conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        await wire.linger(reader, writer, lambda: self._end_ours(log))

    async def _exchange(
        self,
        conn: h11.Connection,
        log: ConnectionLog,
        writer: asyncio.StreamWriter,
        index: int,
        request: Request,
    ) -> bool:
        """Answer one request; False when the connection must end (a cut)."""
        record = Pending(
            log.id,
            index,
            CLOCK.now(),
            request,
            request.header(self.key_header),
            fingerprint(
                request.method,
                request.path.split("?", 1)[0],
                request.body,
                request.header("Content-Type"),
            ),
        )
        self._step("received", record)
        CLOCK.hold()  # an answer in the making (held by a delay, perhaps): no jump meanwhile
        try:
            keep = await self._answer(conn, log, writer, request, record)
        except asyncio.CancelledError:
            raise  # the layer is closing: this exchange never finished
        except BaseException:
            self._step("ended", record)
            raise
        finally:
            CLOCK.release()
        self._step("ended", record)
        return keep

    def _step(self, step: ExchangeStep, record: Pending) -> None:
        # An answer sent (whole, or until the connection failed) awaits its delivery; a cut
        # one is known lost.
        end = None
        if step != "received" and record.answer_range is not None and not record.cut:
            end = record.answer_range[1]
        event = ExchangeEvent(CLOCK.now(), self.service, step, record.frozen(self.service))
        try:
            self.record(event, end)
        except Exception as exc:  # a bug of ours: hand it to the test
            self.errors.append(exc)

    async def _answer(
        self,
        conn: h11.Connection,
        log: ConnectionLog,
        writer: asyncio.StreamWriter,
        request: Request,
        record: Pending,
    ) -> bool:
        try:
            answer = await self.script.run(request, lambda r: self._last(r, record))
        except Exception as exc:
            self.errors.append(exc)
            answer = Answer(
                500,
                [("Content-Type", "text/plain")],
                f"pytest-resilience: {exc!r}\n".encode(),
                "error",
            )
        record.status = answer.status
        record.scripted = answer.scripted
        record.step = answer.step
        headers = [
            (k, v)
            for k, v in answer.headers
            if k.lower() not in ("content-length", "transfer-encoding")
        ]
        record.answer_headers = tuple(headers)
        record.answer_body = answer.body[:ANSWER_BODY_KEPT]
        record.retry_after = answer.header("Retry-After")
        record.retry_after_delay = requested_wait(headers, CLOCK.wall)[0]
        headers.append(("Content-Length", str(len(answer.body))))
        reason = wire.reason(answer.status)
        start = log.sent
        head = conn.send(h11.Response(status_code=answer.status, headers=headers, reason=reason))
        body = b"" if request.method == "HEAD" else answer.body
        if answer.cut:
            # Halfway through the body; with no body, inside the status code ("HTTP/1.1 5"),
            # so no client can take what arrived for an answer.
            partial = head + body[: len(body) // 2] if body else head[: len(b"HTTP/1.1 ") + 1]
            self._send(writer, log, partial)
            record.answer_range = (start, start + len(head) + len(body))
            record.cut, record.cut_at = True, CLOCK.now()
            self._step("answered", record)
            await writer.drain()
            self._hang_up(writer, log)
            return False
        out = (
            head + (conn.send(h11.Data(data=body)) if body else b"") + conn.send(h11.EndOfMessage())
        )
        self._send(writer, log, out)
        record.answer_range = (start, log.sent)
        self._step("answered", record)  # known before a slow reader has taken it all
        await writer.drain()
        record.ended_at = CLOCK.now()
        return True

    # -- the last step: the default answer, or the upstream's --------------------------

    async def _last(self, request: Request, record: Pending) -> Answer:
        if self.forward_to is not None:
            answer = await self._forward(request)
            if request.method in UNSAFE_METHODS and 200 <= answer.status < 300:
                self._apply(record, answer.status)
            return answer
        answer = replace(self.script.default_for(request))
        if request.method not in UNSAFE_METHODS:
            return answer
        key = record.key
        with self._lock:
            stored = self._stored.get(key) if key else None
            if stored is None and key:
                self._stored[key] = answer
        if stored is not None:
            return replace(stored, step="replay")
        self._apply(record, answer.status)
        return answer

    def _apply(self, record: Pending, status: int) -> None:
        request = record.request
        effect = Effect(
            self.service,
            CLOCK.now(),
            request.method,
            request.path.split("?", 1)[0],
            record.key,
            record.fingerprint,
            status,
            (record.connection, record.index),
        )
        self.record(effect, None)

    async def _forward(self, request: Request) -> Answer:
        assert self.forward_to is not None
        host, port, base = self.forward_to
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            body = f"pytest-resilience: upstream {host}:{port} refused: {exc.strerror}\n".encode()
            return Answer(502, [("Content-Type", "text/plain")], body, "forward")
        try:
            conn = h11.Connection(h11.CLIENT)
            headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
            headers += [("Host", f"{host}:{port}"), ("Content-Length", str(len(request.body)))]
            target = base.rstrip("/") + request.path
            out = conn.send(h11.Request(method=request.method, target=target, headers=headers))
            if request.body:
                out += conn.send(h11.Data(data=request.body))
            writer.write(out + conn.send(h11.EndOfMessage()))
            status, answer_headers, received = 502, [], bytearray()
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    answer_headers = [
                        (k.decode("latin-1"), v.decode("latin-1"))
                        for k, v in event.headers
                        if k.decode("latin-1").lower() not in _HOP_BY_HOP
                    ]
                elif isinstance(event, h11.Data):
                    received += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            return Answer(status, answer_headers, bytes(received), "forward")
        except (OSError, h11.ProtocolError) as exc:
            text = f"pytest-resilience: upstream {host}:{port} failed: {exc}\n".encode()
            return Answer(502, [("Content-Type", "text/plain")], text, "forward")
        finally:
            writer.close()
