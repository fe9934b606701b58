"""HTTP/1.1 framing of a client connection (``runtime/framing.py``): an answer is still to
come from a request's first byte until that answer's last, however it is split."""

from __future__ import annotations

from pytest_resilience.runtime.framing import Framing


def test_an_answer_in_pieces_is_awaited_until_its_end() -> None:
    framing = Framing()
    assert not framing.waiting()
    framing.sent(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nab")
    assert framing.waiting()  # the body is still being sent
    framing.sent(b"c")
    framing.received(b"HTTP/1.1 503 Busy\r\nContent-Length: 5\r\n\r\nhel")
    assert framing.waiting()  # the first piece is no sign of the end
    framing.received(b"lo")
    assert not framing.waiting()


def test_a_request_line_sent_in_pieces_is_already_a_request() -> None:
    framing = Framing()
    framing.sent(b"GE")
    assert framing.waiting() and not framing.opaque


def test_requests_sent_one_behind_the_other_are_each_awaited() -> None:
    framing = Framing()
    framing.sent(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n")
    framing.received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert framing.waiting()  # /b's answer is still to come
    framing.received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert framing.waiting()
    framing.received(b"0\r\n\r\n")
    assert not framing.waiting()


def test_an_informational_answer_and_a_close_delimited_body() -> None:
    framing = Framing()
    framing.sent(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    framing.received(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert framing.waiting()
    framing.received(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc")
    assert framing.waiting()  # its body ends when the connection does
    framing.received(b"")
    assert not framing.waiting()


def test_another_protocol_is_opaque() -> None:
    framing = Framing()
    framing.sent(b"*1\r\n$4\r\nPING\r\n")  # Redis
    assert framing.opaque
    framing = Framing()
    framing.sent(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    framing.received(b"not http at all\r\n\r\n")
    assert framing.opaque


def test_a_switch_of_protocol_makes_it_opaque() -> None:
    """After a 101 (a websocket) no more HTTP/1.1 comes: it waited for the close, and every
    sleep beside an open websocket took real time."""
    framing = Framing()
    framing.sent(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    framing.received(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert framing.opaque


def test_nothing_sent_is_no_end_of_the_stream() -> None:
    """``writelines([b""])`` on 3.12+ sent nothing, which h11 read as the close; the next
    request then raised a RuntimeError out of the client's write."""
    framing = Framing()
    framing.sent(b"")
    framing.sent(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert framing.waiting() and not framing.opaque
