"""An engine proxy: a listener, its open links and its toxics."""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
from typing import TYPE_CHECKING, Any

from .link import Link
from .toxics import Toxic

if TYPE_CHECKING:
    from .lane import Lane


class ListenError(ValueError):
    """The proxy could not listen where it was asked to (answered as 500)."""


def split_address(address: str, what: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ListenError(f"{what} tcp: address {address}: missing port in address")
    try:
        number = int(port) if port else 0
    except ValueError:
        raise ListenError(f"{what} tcp: lookup port {port!r}: unknown port") from None
    if not 0 <= number < 65536:
        raise ListenError(f"{what} tcp: address {port}: invalid port")  # Go names the port
    return host.strip("[]"), number


WILDCARDS = ("", "0.0.0.0", "::")
"""Hosts that mean every interface: Go listens on one dual-stack socket for each."""
BACKLOG = 4096
"""Pending connections a proxy's listener queues (Go's net.Listen on Linux)."""


def _every_interface(port: int) -> socket.socket:
    """A socket bound to ``port`` on every interface, IPv4 and IPv6 alike, as Go binds
    ``:PORT``, ``0.0.0.0:PORT`` and ``[::]:PORT`` (reported as ``[::]:PORT``); IPv4 alone
    where the machine has no IPv6."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::" if sock.family == socket.AF_INET6 else "0.0.0.0", port))
    except BaseException:
        sock.close()
        raise
    return sock


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listener(host: str, port: int) -> socket.socket:
    """A non-blocking listening socket: on every interface for a wildcard host, else on
    one address of ``host``, its first IPv4 one if it has any (as Go's ``net.Listen``)."""
    if host in WILDCARDS:
        sock = _every_interface(port)
    else:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = next(
            (info for info in found if info[0] == socket.AF_INET), found[0]
        )
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
    try:
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
RETRY_ACCEPT = 1.0
"""Seconds a listener rests after the process ran out of descriptors (as asyncio's)."""


class Proxy:
    def __init__(
        self, name: str, listen: str, upstream: str, seed: int, lane: Lane | None = None
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.seed = seed
        self.lane = lane
        """Relays the links no toxic touches (None: every link on the event loop)."""
        self.enabled = False
        self.toxics: list[Toxic] = []
        self.links: set[Link] = set()
        self.counters: dict[str, list[int]] = {"upstream": [0, 0], "downstream": [0, 0]}
        """Per direction: bytes received from the source, bytes sent to the destination."""
        self.connections_total = 0
        self._listener: socket.socket | None = None
        self._ids = itertools.count(1)

    def upstream_address(self) -> tuple[str, int]:
        return split_address(self.upstream, "dial")

    def _accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(BACKLOG):
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_DESCRIPTORS:
                    loop = asyncio.get_running_loop()
                    loop.remove_reader(listener.fileno())
                    loop.call_later(RETRY_ACCEPT, self._resume_accepting, listener)
                return  # else: the connection was gone before it was accepted
            client.setblocking(False)
            self.connections_total += 1
            Link(self, next(self._ids)).start(client)

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._listener is listener:
            asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)

    async def start(self) -> None:
        if self.enabled:
            return
        host, port = split_address(self.listen or ":0", "listen")  # Go's "": any port
        try:
            listener = _listener(host, port)
        except (OSError, socket.gaierror) as exc:
            # Go's error is the system's message alone.
            reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise ListenError(f"listen tcp {self.listen}: bind: {reason}") from None
        self._listener = listener
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept)
        bound = listener.getsockname()
        self.listen = format_address(bound[0], bound[1])
        self.enabled = True

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        self.enabled = False
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()
        express = [link for link in self.links if link.express]
        for link in express:
            link.closing = True
        if express and self.lane is not None:
            self.lane.close(express)
        for link in list(self.links):
            if not link.express:
                link.close()

    # -- toxics -------------------------------------------------------------------

    def find(self, name: str) -> Toxic | None:
        return next((t for t in self.toxics if t.name == name), None)

    async def add_toxic(self, toxic: Toxic) -> None:
        """Add ``toxic`` to every link: one in the express lane comes onto the event loop
        with the proxy's toxics attached, before the API answers."""
        self.toxics.append(toxic)
        express = [link for link in self.links if link.express]
        on_loop = [link for link in self.links if link.pipes]
        for link in on_loop:
            link.pipes[toxic.direction].attach(toxic, live=True)
        if express and self.lane is not None:
            handed = list(self.lane.release(express).items())
            for link, _ in handed:
                link.express = False
            try:
                while handed:
                    link, released = handed[0]
                    del handed[0]
                    await link.leave_lane(released)
            finally:  # cancelled (the engine is stopping): close what was not handed over
                for link, (client, upstream, *_) in handed:
                    client.close()
                    upstream.close()
                    link.ended()

    def update_toxic(self, toxic: Toxic) -> None:
        """New attributes apply to the next chunk on every connection; timers restart."""
        for link in self.links:
            for stage in link.pipes[toxic.direction].stages if link.pipes else ():
                if stage.toxic is toxic:
                    stage.attached()

    def remove_toxic(self, toxic: Toxic) -> None:
        self.toxics.remove(toxic)
        for link in list(self.links):
            if link.pipes:
                link.pipes[toxic.direction].detach(toxic.name)

    def remove_all_toxics(self) -> None:
        for toxic in list(self.toxics):
            self.remove_toxic(toxic)

    def toxics_json(self) -> list[dict[str, Any]]:
        # Toxiproxy lists the upstream chain first, then the downstream one.
        ordered = sorted(self.toxics, key=lambda t: t.direction != "upstream")
        return [t.to_json() for t in ordered]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.listen,
            "upstream": self.upstream,
            "enabled": self.enabled,
            "toxics": self.toxics_json(),
        }
