"""HTTP/1.1 framing of one client connection, read from the bytes it sends and receives:
whether an answer is still to come.

Virtual time's event loops (:mod:`.virtual_loops`) must not jump while an answer is on
its way, and an answer may come in pieces (a slicer fault, a large body relayed by
Toxiproxy): its first piece is no sign that it is complete.  h11 reads the requests the
client sends (as a server would) and each answer to them (as the client does), so the
connection waits for an answer from a request's first byte until that answer's end.
Bytes that are not HTTP/1.1 as h11 reads it (another protocol, pipelined requests) make
the framing **opaque**: the caller falls back to its own rule.
"""

from __future__ import annotations

import re

import h11

_METHOD = re.compile(rb"[A-Z]+( |$)")
"""How a request line begins (``GET /``): the first bytes of another protocol do not."""
_ENDED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
_MIRRORED = (h11.Request, h11.InformationalResponse, h11.Response, h11.Data, h11.EndOfMessage)


class Framing:
    """The HTTP/1.1 exchanges of one client connection, as far as its bytes show them."""

    def __init__(self) -> None:
        self._requests = h11.Connection(h11.SERVER)
        """Reads what the client sends."""
        self._answers = h11.Connection(h11.CLIENT)
        """Reads what comes back; told each request :attr:`_requests` read."""
        self.opaque = False

    def waiting(self) -> bool:
        """Whether a request was (at least partly) sent whose answer has not ended."""
        if self._requests.their_state is h11.SEND_BODY or self._requests.trailing_data[0]:
            return True
        return self._answers.our_state is not h11.IDLE and self._answers.their_state not in _ENDED

    def sent(self, data: bytes) -> None:
        starting = self._requests.their_state is h11.IDLE and not self._requests.trailing_data[0]
        if starting and data and not _METHOD.match(bytes(data[:16])):
            self.opaque = True  # not a request line: another protocol
        self._feed(self._requests, data)

    def received(self, data: bytes) -> None:
        self._feed(self._answers, data)

    def _feed(self, reader: h11.Connection, data: bytes) -> None:
        if self.opaque or (reader is self._requests and not data):
            return  # nothing sent is no end of the client's stream
        try:
            reader.receive_data(bytes(data))
            while (
                self._step(self._requests, self._answers)
                | self._step(self._answers, self._requests)
                or self._cycle()
            ):
                pass
        except Exception:  # h11 refused what it read: not HTTP/1.1 as it reads it
            self.opaque = True
        if h11.SWITCHED_PROTOCOL in (self._answers.our_state, self._answers.their_state):
            self.opaque = True  # a websocket or a CONNECT tunnel: no more HTTP/1.1

    @staticmethod
    def _step(reader: h11.Connection, mirror: h11.Connection) -> bool:
        """Pass what ``reader`` can read now on to ``mirror``; whether it read anything."""
        moved = False
        while isinstance(event := reader.next_event(), _MIRRORED):
            mirror.send(event)
            moved = True
        return moved

    def _cycle(self) -> bool:
        """Both sides ended the exchange on a kept-alive connection: begin the next (a
        request sent behind it is then read)."""
        if (self._requests.our_state, self._requests.their_state) != (h11.DONE, h11.DONE):
            return False
        self._requests.start_next_cycle()
        self._answers.start_next_cycle()
        return True
