"""An engine proxy: a listener, its open links and its toxics."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from typing import Any

from .link import Link
from .toxics import Toxic


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


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str, seed: int) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.seed = seed
        self.enabled = False
        self.toxics: list[Toxic] = []
        self.links: set[Link] = set()
        self.counters: dict[str, list[int]] = {"upstream": [0, 0], "downstream": [0, 0]}
        """Per direction: bytes received from the source, bytes sent to the destination."""
        self.connections_total = 0
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)

    def upstream_address(self) -> tuple[str, int]:
        return split_address(self.upstream, "dial")

    def _new_link(self) -> asyncio.Protocol:
        self.connections_total += 1
        return Link(self, next(self._ids)).client_protocol()

    async def start(self) -> None:
        if self.enabled:
            return
        host, port = split_address(self.listen or ":0", "listen")  # Go's "": any port
        loop = asyncio.get_running_loop()
        try:
            if host in WILDCARDS:
                self._server = await loop.create_server(
                    self._new_link, sock=_every_interface(port), backlog=BACKLOG
                )
            else:
                self._server = await loop.create_server(
                    self._new_link, host, port, reuse_address=True, backlog=BACKLOG
                )
        except (OSError, socket.gaierror) as exc:
            # asyncio words the error its own way; Go's is the system's message alone.
            reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
            raise ListenError(f"listen tcp {self.listen}: bind: {reason}") from None
        bound = self._server.sockets[0].getsockname()
        self.listen = format_address(bound[0], bound[1])
        self.enabled = True

    async def stop(self) -> None:
        server, self._server = self._server, None
        self.enabled = False
        if server is not None:
            server.close()
        for link in list(self.links):
            link.close()

    # -- toxics -------------------------------------------------------------------

    def find(self, name: str) -> Toxic | None:
        return next((t for t in self.toxics if t.name == name), None)

    def add_toxic(self, toxic: Toxic) -> None:
        self.toxics.append(toxic)
        for link in self.links:
            if link.pipes:
                link.pipes[toxic.direction].attach(toxic, live=True)

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
