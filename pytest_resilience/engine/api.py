"""The engine's HTTP front end: Toxiproxy's routes, served on the engine's loop.

Requests are read by h11 and answers written as Go writes them (:mod:`.http11`), on the
engine's event loop beside its proxies; the operations run one at a time (a lock), so
no two ever interleave on proxy state.  The listen backlog is Go's (``somaxconn``), so a
burst of API clients is queued as Toxiproxy queues it, not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import re
import selectors
import socket
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import h11

from ..clock import real_wall
from ..runtime import wire
from .collection import ERROR_TYPE, Answer, ApiError, Collection, bad_body
from .http11 import BAD_REQUEST, HEAD_LIMIT, Heads, Request, request_ids, response

MAX_BODY = 16 << 20
"""Larger request bodies are refused as a bad request body (Toxiproxy sets no limit)."""
BACKLOG = 4096
"""Pending connections the API's listener queues (Go's net.Listen on Linux)."""
ACCEPT_RETRY = 1.0
"""Seconds before accepting again when out of file descriptors (asyncio's delay)."""
DEFER_ACCEPT: int | None = getattr(socket, "TCP_DEFER_ACCEPT", None)
"""Linux's option to report a connection to accept once its first bytes arrive (one that
sends nothing is handed over after about a second all the same), so that accepting,
reading and answering a request on a new connection take one turn of the loop, not two."""

_PROXY = r"/proxies/(?P<proxy>[^/]+)"
_TOXIC = _PROXY + r"/toxics/(?P<toxic>[^/]+)"
ROUTES: list[tuple[re.Pattern[str], dict[str, str]]] = [
    (re.compile(r"/version"), {"GET": "get_version"}),
    (re.compile(r"/reset"), {"POST": "reset"}),
    (re.compile(r"/metrics"), {"GET": "metrics"}),
    (re.compile(r"/populate"), {"POST": "populate"}),
    (re.compile(r"/proxies"), {"GET": "index", "POST": "create"}),
    (re.compile(_PROXY), {"GET": "show", "POST": "update", "PATCH": "update", "DELETE": "delete"}),
    (re.compile(_PROXY + r"/toxics"), {"GET": "toxics", "POST": "add_toxic"}),
    (
        re.compile(_TOXIC),
        {
            "GET": "show_toxic",
            "POST": "update_toxic",
            "PATCH": "update_toxic",
            "DELETE": "delete_toxic",
        },
    ),
]
_TAKES_BODY = {"create", "update", "populate", "add_toxic", "update_toxic"}
NO_ROUTE = Answer(404, "404 page not found\n", ERROR_TYPE)
NO_METHOD = Answer(405, "")


class ApiServer:
    """Toxiproxy's HTTP API over ``collection``, served on the running event loop."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._listeners: list[socket.socket] = []
        self._operations = asyncio.Lock()
        self._open: set[_ApiConnection] = set()
        self._poll: selectors.DefaultSelector | None = None
        """The connections being read, in a selector of their own (epoll on Linux) that the
        loop watches as one reader (:meth:`_dispatch`): registering a socket there costs
        half of what the loop's ``add_reader`` costs (a handle, a key, a repr formatted into
        a KeyError on each new fd), and every new connection is registered and removed."""
        self._watched: dict[int, Callable[[], None]] = {}
        """The callback of each fd in :attr:`_poll`."""
        self._ids = request_ids()
        self.heads = Heads()
        self._date = (0, "")

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: the OS chooses) and return the port: on each address
        ``host`` names, as asyncio's servers bind (an IPv6 address without IPv4)."""
        loop = asyncio.get_running_loop()
        # In this thread, as asyncio does for an address (a name: /etc/hosts, at once).
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                try:
                    listener = socket.socket(family, kind, proto)
                except OSError:
                    continue  # a family this host lacks (IPv6), skipped as asyncio skips it
                self._listeners.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                # As Go sets it on each connection; the connections accepted inherit it.
                listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if DEFER_ACCEPT is not None:
                    with contextlib.suppress(OSError):  # a speed-up only, where refused
                        listener.setsockopt(socket.IPPROTO_TCP, DEFER_ACCEPT, 1)
                listener.bind(address)
                listener.listen(BACKLOG)
                listener.setblocking(False)
                loop.add_reader(listener, self._accept, listener, loop)
        except OSError:
            self._close_listeners(loop)
            raise
        if not self._listeners:
            raise OSError(f"no address of {host!r} can be listened on here")
        # Last, so that a start that fails leaves nothing open; no connection is accepted
        # before this coroutine returns (the listeners are read on a later turn).
        self._poll = selectors.DefaultSelector()
        loop.add_reader(self._poll.fileno(), self._dispatch, loop)
        return int(self._listeners[0].getsockname()[1])

    def _accept(self, listener: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """Take one connection (the event loop reports the listener readable).  While more
        wait, the loop reports it again on its next turn: accepting until told that none
        is left would cost each new connection a failed accept."""
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # none waits now, or the client gave up before it was taken
        except OSError:
            # Out of fds: the rest stay queued; listening again in a second, as asyncio
            # does, rather than being told at once, again and again, on every turn.
            loop.remove_reader(listener)
            loop.call_later(ACCEPT_RETRY, self._listen_again, listener, loop)
            return
        try:
            connection = _ApiConnection(self, sock, peer, loop)
        except OSError:
            sock.close()  # reset before it could be set up
            return
        if DEFER_ACCEPT is not None:
            connection._readable()  # its first bytes are here already: no turn waited

    def _listen_again(self, listener: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        if listener in self._listeners:
            loop.add_reader(listener, self._accept, listener, loop)

    def _close_listeners(self, loop: asyncio.AbstractEventLoop) -> None:
        for listener in self._listeners:
            loop.remove_reader(listener)
            listener.close()
        self._listeners = []

    def _watch(self, fd: int, readable: Callable[[], None]) -> None:
        """Call ``readable`` whenever ``fd`` has bytes to read or has ended."""
        assert self._poll is not None, "watched before start() or after stop()"
        self._poll.register(fd, selectors.EVENT_READ)
        self._watched[fd] = readable

    def _unwatch(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed)."""
        del self._watched[fd]
        if self._poll is not None:
            self._poll.unregister(fd)

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's callback for :attr:`_poll`: each connection that is ready is called
        (level-triggered: what one callback leaves unread is reported again).  A callback
        that raises is reported as the loop reports its own, and the others still run."""
        if self._poll is None:
            return
        for key, _ in self._poll.select(0):
            # None: cut by a callback just before (its fd is not reused meanwhile: nothing
            # is accepted in this callback).
            readable = self._watched.get(key.fd)
            if readable is None:
                continue
            try:
                readable()
            except Exception as exc:
                loop.call_exception_handler(
                    {"message": "Exception in an API connection's callback", "exception": exc}
                )

    async def stop(self) -> None:
        """Stop listening, end every connection, and wait for the operations under way."""
        loop = asyncio.get_running_loop()
        self._close_listeners(loop)
        pending = [c.pending for c in self._open if c.pending is not None]
        try:
            for connection in list(self._open):
                connection.cut()
        finally:
            if self._poll is not None:
                loop.remove_reader(self._poll.fileno())
                self._poll.close()
                self._poll = None
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def date(self) -> str:
        """The Date header's value, made once a second."""
        second = int(real_wall())
        if second != self._date[0]:
            self._date = (second, email.utils.formatdate(second, usegmt=True))
        return self._date[1]

    async def _answer(self, method: str, path: str, user_agent: str, body: bytes) -> Answer:
        for pattern, methods in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            operation = methods.get(method)
            if operation is None:
                return NO_METHOD
            if "Mozilla/" in user_agent:
                # Toxiproxy's guard (a middleware on its routes) against requests a
                # browser was tricked into sending.
                return Answer(403, "User agent not allowed\n", ERROR_TYPE)
            args: list[Any] = list(match.groupdict().values())
            if operation in _TAKES_BODY:
                args.append(body)
            try:
                async with self._operations:
                    answer: Answer = await getattr(self.collection, operation)(*args)
                return answer
            except ApiError as exc:
                return exc.answer()
        return NO_ROUTE


class _ApiConnection:
    """One API connection on its socket, read when the API's selector says it is readable
    (:meth:`ApiServer._dispatch`, on the event loop): a
    request whose operation finishes without waiting (most do) is answered in the callback
    that read it, and on a new connection that is the callback that accepts it
    (:data:`DEFER_ACCEPT`).  (On asyncio's streams a request took two loop turns on a
    kept-alive connection and about seven on a new one, and the API's cost per request
    was 1.3-1.6x Toxiproxy's.)  An operation that
    waits finishes in a task; meanwhile, and while an answer waits to be sent, nothing more
    is read (a client that sends and never reads is not answered into memory without end).
    Run eagerly, an operation's first part has no current task: it must not use
    ``asyncio.timeout`` or a TaskGroup before its first wait (none does).
    """

    def __init__(
        self, api: ApiServer, sock: socket.socket, peer: Any, loop: asyncio.AbstractEventLoop
    ):
        self.api = api
        self.sock = sock
        self.loop = loop
        self.inbox = bytearray()
        """Bytes read and not yet given to a reading of the request they begin."""
        self.ended = False
        """Whether the client ended its side."""
        self.received = 0
        """Bytes read from the client."""
        self.peer = peer
        """The client's address."""
        self.conn: h11.Connection | None = None
        """h11 reading the current request: one whose head is not known (:class:`.Heads`), or
        arrived in parts, or whose body the client's end cut short."""
        self.fed = bytearray()
        """The first bytes :attr:`conn` was given (reads are kept until it holds
        :data:`HEAD_LIMIT`), from which the head it reads is learned."""
        self.fed_size = 0
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.unsent = bytearray()
        """Answers the socket did not take yet."""
        self.pending: asyncio.Task[None] | None = None
        """The task finishing an operation that waited; None when none is under way."""
        self.lingering: asyncio.TimerHandle | None = None
        self.closing = False
        """Whether the socket closes once :attr:`unsent` is sent."""
        self.closed = False
        sock.setblocking(False)
        self.fd = sock.fileno()
        """What the selectors watch (the API's for reading, the loop's for writing): the fd
        number, not the socket, as registering a socket the first time formats its repr
        into a KeyError (``selectors.get_key``)."""
        api._open.add(self)
        self._reading = False
        self._read(True)

    @property
    def held(self) -> bool:
        """Whether answers wait to be sent, so that no request is read meanwhile."""
        return bool(self.unsent)

    def _read(self, on: bool) -> None:
        if on and not self._reading and not self.closed:
            self.api._watch(self.fd, self._readable)
        elif not on and self._reading:
            self.api._unwatch(self.fd)
        self._reading = on and not self.closed

    def cut(self) -> None:
        """Close at once, whatever is unsent or unread."""
        if self.closed:
            return
        self.closed = True
        self._read(False)
        if self.unsent:
            self.loop.remove_writer(self.fd)
        if self.lingering is not None:
            self.lingering.cancel()
        self.api._open.discard(self)
        self.sock.close()

    def _close(self) -> None:
        """Close once every answer is sent."""
        self.closing = True
        self._read(False)
        if not self.unsent:
            self.cut()

    def _send(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.unsent:
            try:
                data = data[self.sock.send(data) :]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.cut()
                return
            if not data:
                return
            self.loop.add_writer(self.fd, self._writable)
            self._read(False)
        self.unsent += data

    def _writable(self) -> None:
        try:
            del self.unsent[: self.sock.send(self.unsent)]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.cut()
            return
        if self.unsent:
            return
        self.loop.remove_writer(self.fd)
        if self.closing:
            self.cut()
        elif self.pending is None:
            self._read(True)
            self._advance()

    def _readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.cut()
            return
        if self.lingering is not None:  # what a refused client still sends is dropped
            if data:
                self._linger()
            else:
                self.cut()
            return
        self.received += len(data)
        self.ended = not data
        if self.conn is None:
            self.inbox += data
        else:
            self.conn.receive_data(data)  # b"": the end of the stream, for h11 too
            self.fed_size += len(data)
            if len(self.fed) < HEAD_LIMIT:
                self.fed += data
        self._advance()

    def _advance(self) -> None:
        """Handle every whole request received, until one waits or more bytes are needed."""
        while not self.unsent and self.pending is None and self.lingering is None:
            if self.closing or self.closed:
                return
            if self.conn is None:
                known = self.api.heads.match(self.inbox)
                if known is not None and len(self.inbox) >= known.size + known.length:
                    end = known.size + known.length
                    body = bytes(self.inbox[known.size : end])
                    del self.inbox[:end]
                    self._handle(known.request, body, known.close)
                    continue
                if not self.inbox and self.ended:
                    self._close()  # ended between requests, as h11 would say
                    return
                if not self.ended and (known is not None or not self.inbox):
                    return  # the rest of a known request's body, or a request, is to come
                # A head not known, or not whole yet (h11 judges a part: garbage is refused
                # at its first byte), or a known one whose body the client's end cut short.
                self.conn = h11.Connection(h11.SERVER)
                self.conn.receive_data(bytes(self.inbox))
                self.fed, self.fed_size = self.inbox[:HEAD_LIMIT], len(self.inbox)
                self.inbox = bytearray()
                if self.ended:
                    self.conn.receive_data(b"")  # h11's word for the end of the stream
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:
                self._refuse(BAD_REQUEST)
                return
            if event is h11.NEED_DATA:
                if self.conn.they_are_waiting_for_100_continue:
                    continuing = h11.InformationalResponse(
                        status_code=100, headers=[], reason=b"Continue"
                    )
                    self._send(self.conn.send(continuing))
                return
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                self._close()
                return
            if isinstance(event, h11.Request):
                if wire.declared_length(event) > MAX_BODY:
                    self._too_large()
                    return
                self.request, self.body = event, bytearray()
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > MAX_BODY:
                    self._too_large()
                    return
            elif isinstance(event, h11.EndOfMessage) and self.request is not None:
                parsed, body = self.request, bytes(self.body)
                self.request, self.body = None, bytearray()
                request = Request.of(parsed)
                # The next request starts a new cycle, on a new h11 connection or none
                # (h11 frames one exchange; the answer is not framed by it).
                close = self.conn.their_state is h11.MUST_CLOSE
                unread, _ = self.conn.trailing_data
                # The head's size, if the body came framed by its length (a chunked body's
                # framing is not counted, but Heads.learn keeps no chunked head).
                head = self.fed_size - len(unread) - len(body)
                if head <= len(self.fed):
                    self.api.heads.learn(bytes(self.fed[:head]), parsed, request, close)
                self.conn, self.inbox = None, bytearray(unread)
                self._handle(request, body, close)

    def _handle(self, request: Request, body: bytes, close: bool) -> None:
        if request.path is None:
            self._refuse(BAD_REQUEST)  # Go's URL parsing refuses the request line
            return
        method = request.method
        if request.early is not None:  # before any route or middleware
            self._answer(method, request.early, close, routed=False)
            return
        operation = self.api._answer(method, request.path, request.user_agent, body)
        try:
            waited_on = operation.send(None)
        except StopIteration as done:
            self._answer(method, done.value, close)
            return
        except BaseException:
            self.cut()  # a defect of the engine: the connection ends, as Go's server ends it
            raise
        self._read(False)
        self.pending = self.loop.create_task(
            self._finish(method, _Resumed(operation, waited_on), close)
        )
        # Cancelled before its first step (stop() in the same turn), the task never resumes
        # the operation: closing it runs its cleanup (the lock, the sockets it holds).
        self.pending.add_done_callback(lambda _: operation.close())

    async def _finish(self, method: str, operation: _Resumed, close: bool) -> None:
        try:
            answer = await operation
        except BaseException:
            self.cut()
            raise
        finally:
            self.pending = None
        if self.closed:
            return
        self._answer(method, answer, close)
        if not self.unsent and not self.closing:
            self._read(True)
            self._advance()

    def _answer(self, method: str, answer: Answer, close: bool, routed: bool = True) -> None:
        """Send ``answer``, then close if the client asked to (or spoke HTTP/1.0)."""
        # Toxiproxy's middleware stamps each request its router took on.
        routed = routed and answer is not NO_ROUTE and answer is not NO_METHOD
        request_id = next(self.api._ids) if routed else None
        self._send(response(method, answer, self.api.date(), close, request_id))
        if close:
            self._close()

    def _too_large(self) -> None:
        answer = bad_body(f"larger than {MAX_BODY} bytes").answer()
        self._refuse(response("POST", answer, self.api.date(), close=True))

    def _refuse(self, payload: bytes) -> None:
        """Answer ``payload`` and close: what the client still sends is read and dropped
        until it pauses (:data:`wire.QUIET`), then our side ends and the rest is dropped for
        :data:`wire.LINGER` s.  Closing with unread data would reset the connection and
        could lose the answer just sent."""
        self._send(payload)
        self.body = bytearray()
        self.loop.call_later(wire.LINGER, self.cut)
        self._linger()
        self._read(True)

    def _linger(self) -> None:
        if self.lingering is not None:
            self.lingering.cancel()
        self.lingering = self.loop.call_later(wire.QUIET, self._end_our_side)

    def _end_our_side(self) -> None:
        if self.closed:
            return
        if self.unsent:  # the answer first
            self._linger()
        else:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)


class _Resumed:
    """A coroutine that has run to its first wait, finished by the task that awaits this:
    the future it waits on is handed to the task, and each wake-up sent back in."""

    def __init__(self, coroutine: Coroutine[Any, Any, Answer], waited_on: Any) -> None:
        self.coroutine = coroutine
        self.waited_on = waited_on

    def __await__(self) -> Generator[Any, Any, Answer]:
        waited_on = self.waited_on
        while True:
            try:
                sent = yield waited_on
            except BaseException as exc:
                try:
                    waited_on = self.coroutine.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    waited_on = self.coroutine.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
