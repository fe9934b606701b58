"""Socket details shared by the tap and the engine."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


def reset_on_close(sock: socket.socket) -> None:
    """Make closing ``sock`` send an RST (SO_LINGER 0) rather than a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def abort_with_reset(transport: asyncio.BaseTransport) -> None:
    """Close ``transport`` with an RST (SO_LINGER 0) rather than a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        reset_on_close(sock)
    transport.abort()  # type: ignore[attr-defined]
