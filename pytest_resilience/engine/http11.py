"""The API's HTTP/1.1 bytes: request heads read by h11 (and remembered, as most clients
send the same few again and again), answers written as Go's net/http writes them, and
Toxiproxy's request ids."""

from __future__ import annotations

import base64
import os
import posixpath
import re
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import quote, unquote, unquote_to_bytes

import h11

from ..clock import real_wall
from ..runtime import wire
from . import gojson
from .collection import ERROR_TYPE, Answer

HEAD_LIMIT = 8192
"""Request heads up to this size are remembered by :class:`Heads`; longer ones are h11's
to read each time."""
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
"""A percent sign that does not start an escape, which Go's URL parsing refuses."""
BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n400 Bad Request"
)
"""Go's net/http answer to a request it cannot parse, word for word (its server writes
these bytes itself, before any handler); it closes the connection."""


def response(
    method: str, answer: Answer, date: str, close: bool = False, request_id: str | None = None
) -> bytes:
    """The bytes of ``answer`` to a ``method`` request, as Go's net/http writes them (h11
    reads the requests; an answer's few fixed headers are written here, which costs a
    tenth of framing them with h11)."""
    if answer.status == 204:
        payload = b""
    elif isinstance(answer.body, str):
        payload = answer.body.encode()
    else:
        payload = gojson.dumps(answer.body).encode()
    head = f"HTTP/1.1 {answer.status} {wire.reason(answer.status).decode()}\r\n"
    if answer.location is not None:
        head += f"Location: {answer.location}\r\n"
    head += f"Date: {date}\r\n"
    if payload:
        head += f"Content-Type: {answer.content_type}\r\n"
        if answer.content_type == ERROR_TYPE:
            head += "X-Content-Type-Options: nosniff\r\n"  # as http.Error sets
    if request_id is not None:
        head += f"X-Toxiproxy-Request-Id: {request_id}\r\n"
    # Go sends no length with a 204, which has no body, nor with an empty HEAD answer.
    if answer.status != 204 and (payload or method != "HEAD"):
        head += f"Content-Length: {len(payload)}\r\n"
    if close:
        head += "Connection: close\r\n"
    head += "\r\n"
    # A HEAD answer has headers only.
    return head.encode("latin-1") + (payload if method != "HEAD" else b"")


class Request(NamedTuple):
    """What the routes read of a request."""

    method: str
    path: str | None
    """Decoded, as gorilla/mux routes on Go's URL.Path (a proxy named "a b" lives at
    /proxies/a%20b); None: a target Go's URL parsing refuses."""
    user_agent: str
    early: Answer | None = None
    """What is answered before any route (:func:`early_answer`), or None."""

    @classmethod
    def of(cls, request: h11.Request) -> Request:
        target = request.target.decode("ascii", "replace")
        method = request.method.decode("ascii", "replace")
        agent = next((v for n, v in request.headers if n == b"user-agent"), b"").decode("latin-1")
        if _BAD_ESCAPE.search(target):
            return cls(method, None, agent)
        # Go routes an absolute-form target (GET http://host/path) on its path.
        absolute = _ABSOLUTE.fullmatch(target)
        origin = f"{absolute[1].lower()}://{absolute[2]}" if absolute else ""
        raw_path, question, query = (absolute[3] if absolute else target).partition("?")
        early = early_answer(method, target, origin, raw_path, question + query)
        return cls(method, unquote(raw_path), agent, early)


_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?]*)(.*)", re.DOTALL)
"""A request target in absolute form: scheme, host and the rest."""
_PATH_SAFE = "/$&+,:;=@"
"""What Go's ``URL.String`` leaves unescaped in a path, beyond letters, digits and
``-._~`` (``shouldEscape`` in net/url, for a path)."""


def early_answer(method: str, target: str, origin: str, raw_path: str, query: str) -> Answer | None:
    """What Go's server or Toxiproxy's router answers before any route, or None: for a
    request ``target`` whose absolute form gave ``origin`` (scheme and host, else ""),
    ``raw_path`` as it came and ``query`` (from its ``?``, else "").

    ``OPTIONS *`` is Go's server's own: 200, empty.  Otherwise the router (gorilla/mux
    1.8, ``Router.ServeHTTP`` and ``cleanPath``) cleans the decoded path as Go's
    ``path.Clean`` does (a leading slash added; no ``.``, ``..`` or empty segment; a
    trailing slash kept) and, where that changes it, answers 301 to the cleaned path as
    ``URL.String`` writes it: escaped, with the scheme and host of an absolute target
    and the query as they came.  So a proxy named ``..`` is created but no address
    reaches it: ``/proxies/..`` is moved to ``/``."""
    if target == "*" and method == "OPTIONS":
        return Answer(200, "")
    path = unquote_to_bytes(raw_path)  # bytes: an escape that is no UTF-8 comes back as it was
    cleaned = posixpath.normpath(b"/" + path.lstrip(b"/"))
    if path.endswith(b"/") and cleaned != b"/":
        cleaned += b"/"
    if cleaned == path:
        return None
    return Answer(301, "", location=origin + quote(cleaned, safe=_PATH_SAFE) + query)


class Known(NamedTuple):
    """A head seen before: its request, its size, and the body it frames."""

    request: Request
    size: int
    """Bytes of the head."""
    length: int
    """Bytes of the body that follows it (its Content-Length)."""
    close: bool
    """Whether the client asked to close after the answer (or spoke HTTP/1.0)."""


class Heads:
    """h11's reading of the request heads seen, by their bytes: most API clients send the
    same few heads again and again (``GET /version``, the plugin's calls on its proxies),
    and h11 took half of the API's work per request reading them anew.  Still h11 reads
    every head the first time; the same bytes, on a connection between requests, read the
    same.  Heads with a Transfer-Encoding or an Expect header are not kept (the body is
    not framed by a length; h11 answers ``100 Continue``): a kept head's body is its
    Content-Length, or none.  Up to :data:`SIZE` heads are kept, and all are forgotten
    when it is full.
    """

    SIZE = 256

    def __init__(self) -> None:
        self._known: dict[bytes, Known] = {}

    def match(self, data: bytearray) -> Known | None:
        """The known head ``data`` begins with, if any."""
        end = data.find(b"\r\n\r\n", 0, HEAD_LIMIT)
        return None if end < 0 else self._known.get(bytes(data[: end + 4]))

    def learn(self, head: bytes, parsed: h11.Request, request: Request, close: bool) -> None:
        """Remember h11's reading of ``head`` on a fresh connection: ``parsed``, and what
        the API reads of it, ``request`` (:meth:`Request.of`)."""
        if (
            head in self._known
            or len(head) > HEAD_LIMIT  # never matched
            or head.find(b"\r\n\r\n") != len(head) - 4  # h11 ended it otherwise
            or any(name in (b"transfer-encoding", b"expect") for name, _ in parsed.headers)
        ):
            return
        if len(self._known) >= self.SIZE:
            self._known.clear()
        length = wire.declared_length(parsed)
        self._known[head] = Known(request, len(head), length, close)


def request_ids() -> Iterator[str]:
    """Request ids shaped as Toxiproxy's (github.com/rs/xid): 4 bytes of the time, 5 of
    this process, a 3-byte counter from a random start, in lowercase base32hex.  The first
    14 letters (70 bits: the time and most of the process) are made again only when the
    second changes."""
    process = int.from_bytes(os.urandom(3) + (os.getpid() & 0xFFFF).to_bytes(2, "big"), "big")
    counter = int.from_bytes(os.urandom(3), "big")
    second, prefix = -1, ""
    while True:
        counter = (counter + 1) & 0xFFFFFF
        now = int(real_wall())
        if now != second:
            second = now
            raw = (second << 64 | process << 24).to_bytes(12, "big")
            prefix = base64.b32hexencode(raw).decode("ascii")[:14].lower()
        # The last 6 letters: 2 bits of the process, the counter, 4 bits of padding.
        rest = ((process & 3) << 24 | counter) << 4
        yield prefix + _PAIRS[rest >> 20] + _PAIRS[rest >> 10 & 1023] + _PAIRS[rest & 1023]


_PAIRS = [
    a + b for a in "0123456789abcdefghijklmnopqrstuv" for b in "0123456789abcdefghijklmnopqrstuv"
]
"""Two base32hex letters for each 10 bits."""
