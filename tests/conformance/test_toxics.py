"""Every toxic on real sockets: client -> proxy -> TCP echo upstream.

``downstream`` toxics act on what the upstream sends back, ``upstream`` toxics on what
the client sends.  Timing bounds: a toxic never fires early (``EARLY`` covers timer
granularity) and a loaded 2-core machine may add up to ``SLACK`` to any wait.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conftest import Api, Connector, EchoServer

PAYLOAD = bytes(range(256)) * 4  # 1 KiB; every offset is distinguishable
STREAMS = ["downstream", "upstream"]

EARLY = 0.01
"""Seconds a delay may seem to end early (timer and clock granularity)."""
SLACK = 0.25
"""Seconds of scheduling delay a loaded 2-core machine may add."""
PROMPT = 0.25
"""Something that should happen at once happens within this many seconds."""


# -- latency -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_latency_delays_a_round_trip_once_not_twice(
    api: Api, proxy: dict[str, Any], connect: Connector, stream: str
) -> None:
    """A latency toxic acts on one direction, so a round trip takes ~latency, not 2x."""
    api.add_toxic(proxy["name"], "latency", stream=stream, attributes={"latency": 300})

    elapsed = connect(proxy).round_trip(PAYLOAD)

    assert 0.3 - EARLY <= elapsed < 0.3 + SLACK


def test_latency_on_both_streams_adds_up(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    for stream in STREAMS:
        api.add_toxic(proxy["name"], "latency", stream=stream, attributes={"latency": 150})

    elapsed = connect(proxy).round_trip(PAYLOAD)

    assert 0.3 - EARLY <= elapsed < 0.3 + SLACK


def test_latency_jitter_varies_the_delay_within_its_bounds(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """Each chunk waits latency +/- jitter: here 50 to 350 ms."""
    api.add_toxic(proxy["name"], "latency", attributes={"latency": 200, "jitter": 150})
    client = connect(proxy)

    delays = [client.round_trip(PAYLOAD) for _ in range(6)]

    assert all(0.05 - EARLY <= delay < 0.35 + SLACK for delay in delays), delays
    assert max(delays) - min(delays) > 0.02, f"jitter had no visible effect: {delays}"


def test_adding_a_toxic_affects_an_already_open_connection(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    client = connect(proxy)
    assert client.round_trip(PAYLOAD) < PROMPT

    api.add_toxic(proxy["name"], "latency", attributes={"latency": 300})

    assert client.round_trip(PAYLOAD) >= 0.3 - EARLY


def test_updating_a_toxic_affects_an_already_open_connection(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    api.add_toxic(proxy["name"], "latency", attributes={"latency": 100})
    client = connect(proxy)
    assert 0.1 - EARLY <= client.round_trip(PAYLOAD) < 0.1 + SLACK

    path = f"/proxies/{proxy['name']}/toxics/latency_downstream"
    assert api.patch(path, {"attributes": {"latency": 300}}).status_code == 200

    assert 0.3 - EARLY <= client.round_trip(PAYLOAD) < 0.3 + SLACK


def test_removing_latency_restores_an_open_connection(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    api.add_toxic(proxy["name"], "latency", attributes={"latency": 300})
    client = connect(proxy)
    assert client.round_trip(PAYLOAD) >= 0.3 - EARLY

    api.delete_toxic(proxy["name"], "latency_downstream")

    assert client.round_trip(PAYLOAD) < PROMPT


def test_removing_latency_delivers_the_data_it_was_holding_at_once(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """Nothing in flight is dropped, and it does not wait out the rest of its delay."""
    api.add_toxic(proxy["name"], "latency", attributes={"latency": 1000})
    client = connect(proxy)
    sent = client.send(PAYLOAD)
    client.expect_quiet(0.1)

    removed = time.monotonic()
    api.delete_toxic(proxy["name"], "latency_downstream")

    assert client.recv_exactly(len(PAYLOAD)) == PAYLOAD
    assert time.monotonic() - removed < PROMPT
    assert time.monotonic() - sent < 1.0


def test_toxicity_zero_never_fires(api: Api, proxy: dict[str, Any], connect: Connector) -> None:
    """Toxicity is rolled per connection; at 0 no connection gets the toxic."""
    api.add_toxic(proxy["name"], "latency", toxicity=0, attributes={"latency": 300})
    api.add_toxic(proxy["name"], "timeout", stream="upstream", toxicity=0)

    for _ in range(5):
        assert connect(proxy).round_trip(PAYLOAD) < PROMPT


# -- bandwidth ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_bandwidth_caps_the_rate_in_kilobytes_per_second(
    api: Api, proxy: dict[str, Any], connect: Connector, stream: str
) -> None:
    api.add_toxic(proxy["name"], "bandwidth", stream=stream, attributes={"rate": 100})
    payload = PAYLOAD * 30  # 30 KiB at 100 KB/s: about 0.3 s
    expected = len(payload) / 100_000

    elapsed = connect(proxy).round_trip(payload)

    assert 0.9 * expected <= elapsed < expected + SLACK


# -- slow_close --------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_slow_close_delays_the_close_but_not_the_data(
    api: Api, proxy: dict[str, Any], connect: Connector, stream: str
) -> None:
    api.add_toxic(proxy["name"], "slow_close", stream=stream, attributes={"delay": 300})
    client = connect(proxy)
    assert client.round_trip(PAYLOAD) < PROMPT

    # The echo upstream closes when it reads our FIN; that close is what gets delayed.
    started = client.shutdown_write()
    closed = client.read_until_closed()

    assert (closed.data, closed.how) == (b"", "eof")
    assert 0.3 - EARLY <= closed.at - started < 0.3 + SLACK


def test_without_slow_close_the_close_is_prompt(proxy: dict[str, Any], connect: Connector) -> None:
    client = connect(proxy)
    started = client.shutdown_write()

    assert client.read_until_closed().at - started < PROMPT


# -- timeout -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_timeout_zero_holds_the_connection_until_the_toxic_is_removed(
    api: Api, proxy: dict[str, Any], echo: EchoServer, connect: Connector, stream: str
) -> None:
    """Data is dropped and nothing closes; removing the toxic closes the held connection."""
    api.add_toxic(proxy["name"], "timeout", stream=stream, attributes={"timeout": 0})
    client = connect(proxy)
    client.send(b"ping")

    client.expect_quiet(0.3)
    assert echo.connection(0).received == (b"ping" if stream == "downstream" else b"")

    removed = time.monotonic()
    api.delete_toxic(proxy["name"], f"timeout_{stream}")

    closed = client.read_until_closed()
    assert (closed.data, closed.how) == (b"", "eof")
    assert closed.at - removed < PROMPT
    assert connect(proxy).round_trip(PAYLOAD) < PROMPT


@pytest.mark.parametrize("stream", STREAMS)
def test_timeout_closes_the_connection_after_its_delay(
    api: Api, proxy: dict[str, Any], connect: Connector, stream: str
) -> None:
    api.add_toxic(proxy["name"], "timeout", stream=stream, attributes={"timeout": 300})
    client = connect(proxy)
    started = client.send(b"ping")

    closed = client.read_until_closed()

    assert (closed.data, closed.how) == (b"", "eof")
    assert 0.3 - EARLY <= closed.at - started < 0.3 + SLACK


def test_timeout_counts_from_the_last_chunk_it_dropped(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """Each chunk restarts the clock: traffic every 100 ms keeps a 300 ms timeout from firing."""
    api.add_toxic(proxy["name"], "timeout", stream="upstream", attributes={"timeout": 300})
    client = connect(proxy)
    first = time.monotonic()

    for _ in range(5):
        last = client.send(b"tick")
        client.expect_quiet(0.1)
    closed = client.read_until_closed()

    assert last - first >= 0.4  # open well past 300 ms after the first chunk
    assert (closed.data, closed.how) == (b"", "eof")
    assert 0.3 - EARLY <= closed.at - last < 0.3 + SLACK


# -- reset_peer --------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_reset_peer_resets_at_once_when_data_arrives(
    api: Api, proxy: dict[str, Any], echo: EchoServer, connect: Connector, stream: str
) -> None:
    api.add_toxic(proxy["name"], "reset_peer", stream=stream, attributes={"timeout": 0})
    client = connect(proxy)
    started = client.send(b"ping")

    closed = client.read_until_closed()

    assert (closed.data, closed.how) == (b"", "reset")
    assert closed.at - started < PROMPT
    upstream = echo.connection(0)
    upstream.wait_closed()
    assert isinstance(upstream.error, ConnectionResetError), upstream.error


@pytest.mark.parametrize("stream", STREAMS)
def test_reset_peer_with_a_timeout_resets_after_it(
    api: Api, proxy: dict[str, Any], connect: Connector, stream: str
) -> None:
    api.add_toxic(proxy["name"], "reset_peer", stream=stream, attributes={"timeout": 300})
    client = connect(proxy)
    started = client.send(b"ping")

    closed = client.read_until_closed()

    assert (closed.data, closed.how) == (b"", "reset")
    assert 0.3 - EARLY <= closed.at - started < 0.3 + SLACK


def test_reset_peer_waits_for_the_first_data(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """An idle connection is not reset: the toxic fires on the first chunk it sees."""
    api.add_toxic(proxy["name"], "reset_peer", stream="upstream", attributes={"timeout": 0})
    client = connect(proxy)

    client.expect_quiet(0.2)
    started = client.send(b"ping")

    closed = client.read_until_closed()
    assert closed.how == "reset"
    assert closed.at - started < PROMPT


# -- slicer ------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_slicer_delivers_data_in_several_pieces_intact(
    api: Api, proxy: dict[str, Any], echo: EchoServer, connect: Connector, stream: str
) -> None:
    # ~100-byte slices, 10 ms apart: a 1 KiB chunk becomes about ten writes.
    attributes = {"average_size": 100, "size_variation": 20, "delay": 10_000}
    api.add_toxic(proxy["name"], "slicer", stream=stream, attributes=attributes)
    client = connect(proxy)
    client.send(PAYLOAD)

    pieces = client.recv_pieces(len(PAYLOAD))

    assert b"".join(pieces) == PAYLOAD
    assert len(pieces) >= 3, [len(piece) for piece in pieces]
    if stream == "upstream":
        assert len(echo.connection(0).chunks) >= 3


def test_slicer_keeps_a_chunk_within_the_variation_of_the_average_whole(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """Toxiproxy cuts only a chunk more than ``size_variation`` over ``average_size``: 100
    bytes at an average of 100 go whole.  The engine drew each piece's size at random
    and split them in 6 of 10 runs."""
    attributes = {"average_size": 100, "size_variation": 10, "delay": 300_000}
    api.add_toxic(proxy["name"], "slicer", attributes=attributes)
    client = connect(proxy)
    client.send(bytes(100))

    assert [len(piece) for piece in client.recv_pieces(100)] == [100]


def test_slicer_halves_a_chunk_until_its_pieces_are_near_the_average(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """600 bytes at an average of 250: halved to 300, which is still 50 over, then to 150
    (Toxiproxy's ``SlicerToxic.chunk``); cutting 250-byte pieces off the front gives 250
    first.  A piece each 300 ms, so the client reads them one by one."""
    attributes = {"average_size": 250, "size_variation": 0, "delay": 300_000}
    api.add_toxic(proxy["name"], "slicer", attributes=attributes)
    client = connect(proxy)
    client.send(bytes(600))

    assert len(client.recv_pieces(600)[0]) == 150


# -- limit_data --------------------------------------------------------------------


def test_limit_data_passes_exactly_its_bytes_then_closes(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """The count runs across chunks: 5 bytes, then 5 of the next 10, then EOF."""
    api.add_toxic(proxy["name"], "limit_data", attributes={"bytes": 10})
    client = connect(proxy)

    assert client.round_trip(b"12345") < PROMPT
    client.send(b"67890abcde")
    closed = client.read_until_closed()

    assert (closed.data, closed.how) == (b"67890", "eof")


def test_limit_data_upstream_cuts_what_the_upstream_receives(
    api: Api, proxy: dict[str, Any], echo: EchoServer, connect: Connector
) -> None:
    api.add_toxic(proxy["name"], "limit_data", stream="upstream", attributes={"bytes": 10})
    client = connect(proxy)

    assert client.round_trip(b"12345") < PROMPT
    client.send(b"67890abcde")
    closed = client.read_until_closed()

    assert closed.how == "eof"
    assert b"67890".startswith(closed.data)  # the echo of the last 5 may lose the race
    upstream = echo.connection(0)
    upstream.wait_closed()
    assert upstream.received == b"1234567890"


@pytest.mark.parametrize("upstream", ["noport", ":", "127.0.0.1:"])
def test_an_upstream_without_a_port_closes_each_client_at_once(
    api: Api, connect: Connector, upstream: str
) -> None:
    """Toxiproxy accepts the proxy, then closes every client it cannot dial for (here it
    cannot even parse the address); the engine held them open, leaking their sockets.
    (An empty upstream is refused at creation, as a missing field, by both.)"""
    response = api.post(
        "/proxies", {"name": api.name(), "upstream": upstream, "listen": "127.0.0.1:0"}
    )
    assert response.status_code == 201, response.text

    client = connect(response.json()["listen"])
    client.send(b"anyone there?")

    # A FIN or, with the client's bytes still unread, a reset: either way not held open.
    assert client.read_until_closed().how in ("eof", "reset")
