"""The child processes (the upstream, the load client) and the minimal relay of ``--floor``."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .client import OPS
from .plan import ROOT


class Child:
    """This benchmark run as ``--role ROLE`` in a child process, a pipe to talk to it."""

    def __init__(self, role: str) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.engine_vs_toxiproxy",
                    "--role",
                    role,
                    "--fd",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.pid = self.process.pid

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send("stop")
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


class Upstream(Child):
    def __init__(self) -> None:
        super().__init__("upstream")
        if not self.conn.poll(30):
            self.close()
            raise RuntimeError("the upstream process did not start within 30 s")
        self.echo, self.sink = self.conn.recv()


class RemoteClient(Child):
    """The load client in its own process (layout A)."""

    def __init__(self) -> None:
        super().__init__("client")

    def call(self, name: str, *args: Any, timeout: float = 120) -> Any:
        self.conn.send((name, args))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"client operation {name} took over {timeout} s")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(value)
        return value


class LocalClient:
    """The load client in this process's main thread (layout B: the plugin's)."""

    def call(self, name: str, *args: Any, timeout: float = 120) -> Any:
        return OPS[name](*args)


FLOOR_GO = """package main

// The least a user-space TCP proxy can do: accept, dial, io.Copy both ways.
import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func(c net.Conn) {
			u, err := net.Dial("tcp", os.Args[1])
			if err != nil {
				c.Close()
				return
			}
			go func() { io.Copy(u, c); u.Close(); c.Close() }()
			io.Copy(c, u)
			c.Close()
			u.Close()
		}(c)
	}
}
"""


class FloorRelay:
    """FLOOR_GO built with the local Go toolchain (standard library only) and started."""

    def __init__(self, upstream: str, workdir: Path) -> None:
        (workdir / "main.go").write_text(FLOOR_GO)
        (workdir / "go.mod").write_text("module floorrelay\n\ngo 1.21\n")
        binary = workdir / "floor-relay"
        subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=workdir,
            check=True,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
            timeout=120,
        )
        self.process = subprocess.Popen([str(binary), upstream], stdout=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class StandaloneEngine:
    """The engine on its own (``python -m pytest_resilience.engine``), a process as
    Toxiproxy is: its API's cost without this process's threads sharing its GIL."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest_resilience.engine", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        assert self.process.stdout is not None
        banner = self.process.stdout.readline()  # "... listening on http://127.0.0.1:PORT, seed N"
        if " on http://" not in banner:
            self.close()
            raise RuntimeError(f"the standalone engine did not start: {banner!r}")
        self.url = banner.split(" on ", 1)[1].split(",", 1)[0]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
