"""Each TCP fault on real sockets: client -> tap -> Toxiproxy -> echo server."""

from __future__ import annotations

import contextlib
import re
import socket
import time

import pytest
from net import read_at_most, refused_port
from processes import wait_for

from pytest_resilience import ConfigurationError, UnknownServiceError
from pytest_resilience.assertions import InsufficientEvidence

PAYLOAD = b"x" * 1024
WAIT = 3.0
"""Seconds a test waits for a record before it fails."""


def connect(address: str, timeout: float = 2.0) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def round_trip(address: str, payload: bytes = PAYLOAD, timeout: float = 2.0) -> float:
    """Send ``payload`` and read the echo; return the seconds it took."""
    with connect(address, timeout) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        assert read_at_most(sock, len(payload)) == payload
        return time.monotonic() - started


@pytest.fixture
def echo(resilience, echo_server):  # type: ignore[no-untyped-def]
    return resilience.tcp_service("echo", upstream=echo_server.address)


def test_service_relays_data_and_records_the_connection(echo):  # type: ignore[no-untyped-def]
    round_trip(echo.address)

    connection = wait_for(lambda: echo.connections.closed(), WAIT, what="the close")[0]
    assert (connection.bytes_up, connection.bytes_down) == (1024, 1024)
    assert connection.closed_by == "client"
    assert connection.duration is not None and connection.duration >= 0
    assert echo.host == "127.0.0.1" and echo.address == f"127.0.0.1:{echo.port}"


def test_latency_adds_at_least_its_delay(echo):  # type: ignore[no-untyped-def]
    with echo.latency(150):
        assert round_trip(echo.address) >= 0.150
    assert round_trip(echo.address) < 0.150


def test_latency_on_the_upstream_stream_delays_requests(echo):  # type: ignore[no-untyped-def]
    with echo.latency(150, stream="upstream"):
        assert round_trip(echo.address) >= 0.150


def test_zero_toxicity_fault_does_not_fire(echo):  # type: ignore[no-untyped-def]
    with echo.latency(300, toxicity=0.0):
        assert round_trip(echo.address) < 0.300


def test_reset_peer_resets_the_client_connection(echo):  # type: ignore[no-untyped-def]
    with echo.reset_peer(), connect(echo.address) as sock, pytest.raises(ConnectionResetError):
        sock.sendall(PAYLOAD)
        sock.recv(10)
    wait_for(lambda: echo.connections.reset(), WAIT, what="the reset record")
    assert echo.connections.reset()[0].closed_by == "upstream"
    round_trip(echo.address)


def test_blackhole_partition_hangs_then_heals(echo):  # type: ignore[no-untyped-def]
    with connect(echo.address, timeout=0.3) as held:
        with echo.partition():
            held.sendall(PAYLOAD)
            with pytest.raises(socket.timeout):
                held.recv(10)
        # As in Toxiproxy, healing the partition closes the connections it held.
        held.settimeout(2.0)
        assert held.recv(10) == b""
    round_trip(echo.address)


def test_downstream_partition_delivers_the_request_and_loses_the_answer(
    echo,
    echo_server,  # type: ignore[no-untyped-def]
):
    with echo.partition(direction="downstream"), connect(echo.address, timeout=0.3) as sock:
        sock.sendall(PAYLOAD)
        with pytest.raises(socket.timeout):
            sock.recv(10)
    record = wait_for(lambda: echo.connections.closed() or echo.connections.reset(), WAIT)[0]
    assert record.bytes_up == 1024
    assert record.bytes_down == 0


def test_refuse_partition_refuses_then_heals(echo):  # type: ignore[no-untyped-def]
    with echo.partition(mode="refuse"), pytest.raises(ConnectionRefusedError):
        connect(echo.address)
    round_trip(echo.address)


def test_refuse_partition_closes_open_connections(echo):  # type: ignore[no-untyped-def]
    with connect(echo.address) as sock:
        round_trip(echo.address)
        sock.sendall(b"ping")
        assert read_at_most(sock, 4) == b"ping"
        with echo.down():
            assert sock.recv(10) == b""


def test_reset_partition_fails_fast(echo):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    with (
        echo.partition(mode="reset"),
        connect(echo.address) as sock,
        pytest.raises(ConnectionResetError),
    ):
        sock.sendall(PAYLOAD)
        sock.recv(10)
    assert time.monotonic() - started < 1.0


def test_bandwidth_caps_throughput(echo):  # type: ignore[no-untyped-def]
    payload = b"b" * 40_000
    with echo.bandwidth(100):  # 100 KB/s: 40 KB take about 0.4 s
        assert round_trip(echo.address, payload, timeout=5) >= 0.3


def test_limit_data_cuts_at_its_byte_count(echo):  # type: ignore[no-untyped-def]
    with echo.limit_data(100), connect(echo.address) as sock:
        sock.sendall(PAYLOAD)
        assert len(read_at_most(sock, len(PAYLOAD))) == 100


def test_timeout_closes_the_connection_after_its_delay(echo):  # type: ignore[no-untyped-def]
    with echo.timeout(200), connect(echo.address) as sock:
        started = time.monotonic()
        sock.sendall(PAYLOAD)
        assert sock.recv(10) == b""
        assert time.monotonic() - started >= 0.18


def test_slow_close_delays_the_close(echo):  # type: ignore[no-untyped-def]
    with echo.slow_close(200, stream="upstream"), connect(echo.address) as sock:
        sock.sendall(b"ping")
        assert read_at_most(sock, 4) == b"ping"
        started = time.monotonic()
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(10) == b""
        assert time.monotonic() - started >= 0.18


def test_slicer_delivers_data_in_slices(echo):  # type: ignore[no-untyped-def]
    with echo.slicer(64, 0, 2000), connect(echo.address) as sock:  # 64 B slices, 2 ms apart
        sock.sendall(PAYLOAD)
        pieces = []
        while sum(map(len, pieces)) < len(PAYLOAD):
            pieces.append(sock.recv(65536))
        assert len(pieces) > 2
        assert b"".join(pieces) == PAYLOAD


def test_chaos_applies_any_toxic_by_type(echo, resilience):  # type: ignore[no-untyped-def]
    with resilience.fault("echo", "chaos", type="latency", latency=150):
        assert round_trip(echo.address) >= 0.150


def test_plain_call_fault_lasts_until_healed(echo, resilience, toxiproxy):  # type: ignore[no-untyped-def]
    fault = echo.latency(100)
    assert [t["type"] for t in toxiproxy.client.toxics(echo.proxy)] == ["latency"]
    assert round_trip(echo.address) >= 0.1
    fault.heal()
    fault.heal()  # twice is harmless
    assert toxiproxy.client.toxics(echo.proxy) == []


def test_overlapping_down_faults_keep_the_service_down_until_the_last_heals(echo):  # type: ignore[no-untyped-def]
    outer = echo.down()
    with echo.partition(mode="refuse"):
        pass
    with pytest.raises(ConnectionRefusedError):
        connect(echo.address)
    outer.heal()
    round_trip(echo.address)


def test_partition_cuts_several_services_at_once(resilience, echo_server):  # type: ignore[no-untyped-def]
    a = resilience.tcp_service("a", upstream=echo_server.address)
    b = resilience.tcp_service("b", upstream=echo_server.address)
    with resilience.partition("a", b, mode="refuse"):
        for service in (a, b):
            with pytest.raises(ConnectionRefusedError):
                connect(service.address)
    round_trip(a.address)
    round_trip(b.address)


def test_closing_the_test_removes_its_proxies(resilience, echo_server, toxiproxy):  # type: ignore[no-untyped-def]
    service = resilience.tcp_service("gone", upstream=echo_server.address)
    service.latency(100)
    service.down()
    resilience.close()
    assert service.proxy not in toxiproxy.client.proxies()
    with pytest.raises(ConnectionRefusedError):
        connect(service.address)


def test_timeline_records_faults_and_connections(echo, resilience):  # type: ignore[no-untyped-def]
    with echo.latency(50):
        round_trip(echo.address)
        wait_for(lambda: echo.connections.closed(), WAIT)
    kinds = [(e.kind, getattr(e, "action", None)) for e in resilience.timeline.events]
    assert kinds == [
        ("latency", "applied"),
        ("opened", None),
        ("closed", None),
        ("latency", "healed"),
    ]
    table = resilience.timeline.render()
    assert "fault #" in table and "connection #1 closed by client" in table


def test_assert_connections_reports_the_timeline(echo):  # type: ignore[no-untyped-def]
    round_trip(echo.address)
    round_trip(echo.address)
    wait_for(lambda: len(echo.connections.closed()) == 2, WAIT)
    echo.assert_connections(max=2, min=2)
    with pytest.raises(AssertionError, match=r"saw 2 connections, expected at most 1") as info:
        echo.assert_connections(max=1)
    # The shared failure table: each connection a row, the one beyond the bound flagged.
    rows = str(info.value).splitlines()
    assert re.fullmatch(r"  +\d+  connection #1 +closed by client", rows[2])
    assert re.fullmatch(r"> +\d+  connection #2 +closed by client +at most 1", rows[3])
    assert rows[4].startswith("replay: --resilience-seed=")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.latency(-1), "latency: ms must be a whole number >= 0, got -1"),
        (lambda s: s.latency(1.5), "whole number"),
        (lambda s: s.latency(10, stream="sideways"), "stream must be 'upstream'"),
        (
            lambda s: s.latency(10, toxicity=2),
            "toxicity \\(the share of connections affected\\) must be a number from 0 to 1",
        ),
        (lambda s: s.slicer(10, 10), "size_variation"),
        (lambda s: s.partition(direction="left"), "direction must be"),
        (lambda s: s.partition(mode="explode"), "mode must be"),
        (lambda s: s.partition(direction="upstream", mode="refuse"), "mode='refuse'"),
        (lambda s: s.fault("nonsense"), "unknown fault kind 'nonsense'"),
        (lambda s: s.fault("latency", msec=3), "unknown argument 'msec'"),
    ],
)
def test_bad_fault_arguments_say_what_to_do(echo, call, message):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=message):
        call(echo)
    assert echo.faults == []


def test_unknown_service_lists_the_existing_ones(echo, resilience):  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownServiceError, match=r"no service named 'redis'.*services: 'echo'"):
        resilience.fault("redis", "latency", 10)


@pytest.mark.parametrize(
    ("name", "upstream", "message"),
    [
        ("bad name!", "127.0.0.1:1", "service name"),
        ("ok", "127.0.0.1", "must be 'host:port'"),
        ("ok", "127.0.0.1:http", "port from 1 to 65535"),
        ("ok", "127.0.0.1:70000", "port from 1 to 65535"),
    ],
)
def test_bad_service_arguments_say_what_to_do(resilience, name, upstream, message):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=message):
        resilience.tcp_service(name, upstream=upstream)


def test_duplicate_service_name_is_refused(echo, resilience, echo_server):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match="already exists"):
        resilience.tcp_service("echo", upstream=echo_server.address)


def test_a_bound_on_connections_across_refused_ones_is_insufficient_evidence(echo):  # type: ignore[no-untyped-def]
    """Issue 10, point 4: a client reconnecting in a loop while the service is down left
    one connection on record (the one before the outage), so ``max=1`` passed a reconnect
    storm; refused connections leave no record (the tap stops listening, as the service
    does), so only a breach on record decides."""
    round_trip(echo.address)
    with echo.down():
        for _ in range(50):  # the storm: every attempt refused, none recorded
            with pytest.raises(ConnectionRefusedError):
                connect(echo.address)
    wait_for(lambda: echo.connections.closed(), WAIT)
    with pytest.raises(
        InsufficientEvidence,
        match=r"^insufficient evidence: service 'echo' saw 1 connection on record, expected "
        r"at most 1, but connections were refused \(down from t\+\d+ to t\+\d+ ms\) and "
        r"a refused connection leaves no record, so the client may have made more; bound "
        r"connections under a fault that accepts them \(partition mode='blackhole' or "
        r"'reset', reset_peer, timeout\), or count the client's own attempts\.\n",
    ):
        echo.assert_connections(max=1)
    echo.assert_connections(min=1)  # one made is shown
    with pytest.raises(InsufficientEvidence, match=r"saw 1 connection on record, expected at"):
        echo.assert_connections(min=2)  # the client may have made more, refused
    round_trip(echo.address)
    round_trip(echo.address)
    wait_for(lambda: len(echo.connections.closed()) == 3, WAIT)
    with pytest.raises(AssertionError, match=r"saw 3 connections, expected at most 2") as info:
        echo.assert_connections(max=2)  # a breach on record decides
    assert not isinstance(info.value, InsufficientEvidence)


def test_upstream_down_closes_the_accepted_connection(resilience):  # type: ignore[no-untyped-def]
    # As Toxiproxy does: the connection is accepted, then closed.
    with refused_port() as dead:
        service = resilience.tcp_service("dead", upstream=f"127.0.0.1:{dead}")
        with connect(service.address) as sock:
            sock.sendall(b"hello")
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(10) == b""
