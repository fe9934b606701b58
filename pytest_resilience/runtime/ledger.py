"""Whether a client socket's answer can come only from a timer of the plugin's, so that
virtual time may jump while the client reads it (an HTTP ``delay`` held for a minute
then ends at once, as a ``time.sleep`` does).

A client reading a socket waits on the kernel, and a jump while its answer is in real
transit would fire its own read timeout early (a false failure).  So a read may wait on
the virtual clock only when nothing is on its way: every byte between the client and
an HTTP stub service's layer has come to rest.  The bytes pass these stages, each of
which counts them, and a stage never holds more than the one before it passed on:

- the client's socket (sent, read: :mod:`.virtual_sockets` counts them, for sockets a
  participant connected in the block);
- the tap (:class:`~pytest_resilience.tap.relay.Tap`): per connection, what it took from
  the client and what the client's socket took from it; in all, what it took from
  clients and what it got back from the proxy.  An end (a close, a reset, a half-close)
  counts as one byte: the client's, passed on, unless the proxy's side had ended; the
  proxy's, got back, unless the client's had;
- the proxy (Toxiproxy or the embedded engine), which counts nothing;
- the HTTP layer (:class:`~pytest_resilience.http.server.HttpLayer`): request bytes it
  has acted on (it then waits for more, or for a timer; a request read after the one a
  timer holds is not acted on yet) and the client's end as it comes; answer bytes it
  wrote and an end of its own, unless the client's had come (then they are lost).

At rest means: the client's request has all reached the tap; everything the tap took,
the layer has acted on; everything the layer wrote, the tap got back; everything the
tap got back for this connection, the client has read; no answer is being made and no
refusal lingers (:attr:`~pytest_resilience.clock.Clock.held`); and the service has never
had a fault of the proxy's (a toxic acts on real time and counts nothing: its reads stay
real).  The counters are read twice and must agree: a change between the two reads is
traffic.  Drift between the counts must only ever keep them apart (slower), never bring
them together early; each rule above that skips a count has its mirror on the other side.

A timer holds an answer only for counted clients: while one holds an answer and a
connection no counted socket made is open on the service (a thread or a process outside
the block, a socket connected before it), that client waits in real time, so virtual
time does not jump (:func:`holding`).

The counts are totals over the service's connections, since the two sides of the proxy
cannot be paired while the bytes flow.  What never arrives (two ends that cross, one
from each side, neither counted by the other) leaves the totals apart, and reads keep
real time, until no connection is open on either side (:meth:`Path.rest`).  Slower,
never wrong.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..clock import CLOCK

if TYPE_CHECKING:
    from ..tap.relay import Tap


@dataclass
class LayerCounts:
    """What an HTTP layer counts, on the plugin's loop."""

    settled: int = 0
    """Request bytes acted on (the layer then waits for more, or for a timer), and one
    per client's end that came."""
    sent: int = 0
    """Answer bytes written, and one per end of the layer's own (a close, a half-close)."""
    pausing: int = 0
    """Exchanges whose answer a timer holds (a ``delay``) for a client still there."""
    accepted: int = 0
    """Connections accepted, in all."""
    open: int = 0
    """Connections not ended yet."""
    idle: Callable[[], None] | None = field(default=None, repr=False)
    """Called on the loop when the last open connection ended (:meth:`Path.rest`)."""


@dataclass
class SocketCounts:
    """What a client socket connected to a service sent and read, in the open block."""

    port: int
    """The tap's port it connected to."""
    sent: int = 0
    read: int = 0
    unknown: bool = False
    """A send failed part way (how much went is not known), or a thread outside the block
    used it: never at rest."""


@dataclass(eq=False)
class Path:
    """An HTTP stub service's path: its tap, its layer's counts, and whether a fault of
    the proxy's was ever applied to it."""

    tap: Tap
    layer: LayerCounts
    faulted: Callable[[], bool]
    up_offset: int = 0
    down_offset: int = 0
    """What the counts were apart by when the path last came to rest (:meth:`rest`)."""

    def rest(self) -> None:
        """On the loop, when a connection ended: if none is open on either side of the
        proxy, and the layer accepted as many as the tap made (none is still on its way
        through the proxy), what is still apart was lost with them.  From here the counts
        start together (so that lost bytes keep reads real only until then)."""
        tap, layer = self.tap, self.layer
        if tap.links or layer.open or layer.pausing or tap.connected != layer.accepted:
            return
        self.up_offset = (tap.up_total - tap.up_lost) - layer.settled
        self.down_offset = layer.sent - tap.down_total

    def _snapshot(self, local: object, counts: SocketCounts) -> tuple[int, ...] | None:
        # Each stage is read before the one that feeds it, so that bytes moving on
        # between two reads show as bytes not yet arrived, never as bytes that were not.
        tap, layer = self.tap, self.layer
        up_offset, down_offset = self.up_offset, self.down_offset
        link = tap.by_peer.get(local)
        if link is None or link.ended or link.upstream_eof or link.client_eof:
            # Not taken yet; or ended, which the client sees in real time; or the client
            # half-closed, after which the answer's bytes are counted on neither side.
            return None
        read, delivered, got = counts.read, link.delivered(), link.bytes_down
        answered, sent = tap.down_total, layer.sent
        settled = layer.settled
        taken = tap.up_total - tap.up_lost  # what the tap holds is not at rest
        took, asked = link.bytes_up, counts.sent
        answered += down_offset
        settled += up_offset
        return (read, delivered, got, answered, sent, settled, taken, took, asked)

    def at_rest(self, local: object, counts: SocketCounts) -> bool:
        """Whether nothing is on its way to or from the client socket ``counts`` tells of
        (its local address ``local``) along this path, and nothing is being made."""
        if counts.unknown or CLOCK.held or self.faulted():
            return False
        first = self._snapshot(local, counts)
        if first is None or first != self._snapshot(local, counts) or CLOCK.held:
            return False
        read, delivered, got, answered, sent, settled, taken, took, asked = first
        return read == delivered == got and answered == sent and settled == taken and took == asked

    def holds_for_others(self) -> bool:
        """Whether a timer holds an answer while a connection is open that no counted
        socket made (a thread or process outside the block, a socket connected before
        it): its client waits in real time, so no jump may fire the timer early."""
        if not self.layer.pausing:
            return False
        counted = _COUNTED.get(self.tap.port, set())
        return any(link.peer not in counted for link in list(self.tap.links))


_PATHS: weakref.WeakValueDictionary[int, Path] = weakref.WeakValueDictionary()
"""Per tap port: the path of the HTTP stub service listening there."""
_COUNTED: dict[int, set[object]] = {}
"""Per tap port: the local addresses of the sockets counted in the open block."""
_LOCK = threading.Lock()


def counted(port: int, local: object) -> None:
    """A participant connected a socket from ``local`` to the tap at ``port``: counted."""
    with _LOCK:
        _COUNTED.setdefault(port, set()).add(local)


def uncounted(port: int, local: object) -> None:
    """The socket from ``local`` to ``port`` is no longer counted."""
    with _LOCK:
        _COUNTED.get(port, set()).discard(local)


def forget_counted() -> None:
    """A block begins: no socket is counted yet."""
    with _LOCK:
        _COUNTED.clear()


def holding() -> bool:
    """Whether some stub holds an answer on a timer that a client outside the block may
    wait for (:meth:`Path.holds_for_others`): virtual time does not jump meanwhile."""
    return any(path.holds_for_others() for path in list(_PATHS.values()))


def watch(path: Path) -> None:
    """Count ``path``'s bytes: its reads may wait on virtual time when at rest."""
    path.tap.on_idle = path.rest
    path.layer.idle = path.rest
    with _LOCK:
        _PATHS[path.tap.port] = path


def forget(path: Path) -> None:
    """``path``'s service has closed: its port may be another's next."""
    with _LOCK:
        if _PATHS.get(path.tap.port) is path:
            del _PATHS[path.tap.port]


def stub_port(address: object) -> int | None:
    """The tap port of an HTTP stub service at ``address`` (a socket address a client
    connects to), or None."""
    if not isinstance(address, tuple) or len(address) < 2:
        return None
    host, port = address[0], address[1]
    path = _PATHS.get(port) if isinstance(port, int) else None
    return port if path is not None and path.tap.host == host else None


def at_rest(counts: SocketCounts, local: object) -> bool:
    """Whether the socket ``counts`` tells of (local address ``local``) has nothing on
    its way along its service's path (module doc)."""
    path = _PATHS.get(counts.port)
    return path is not None and path.at_rest(local, counts)
