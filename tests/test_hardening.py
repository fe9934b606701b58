"""The plugin under hostile conditions: a dead or wrong Toxiproxy, impossible numbers,
request bodies that never end, leftovers on a shared Toxiproxy.

Runs interrupted by signals, on every backend, are in ``test_chaos.py``; arguments
checked at the call, in ``test_argument_checks.py``.
"""

from __future__ import annotations

import http.server
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from processes import wait_for

from pytest_resilience import ConfigurationError, HttpService, Resilience
from pytest_resilience.toxiproxy.backends import Backend

ECHO = Path(__file__).with_name("echo.py")
"""The echo upstream (its ``upstream`` fixture), written into inner projects' conftest."""

BLOCKING_TEST = """
import pathlib, threading

def test_blocks(resilience):
    resilience.tcp_service("x", upstream="127.0.0.1:9")
    pathlib.Path("ready").write_text("1")
    threading.Event().wait(60)  # until the signal comes
"""


def run_in_terminal(pytester: pytest.Pytester, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """pytest started as a terminal starts it: a process group of its own; output to a file."""
    out = pytester.path / "out.txt"
    with out.open("wb") as sink:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=pytester.path,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, out


def test_teardown_against_a_toxiproxy_that_died_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os, signal

        def test_server_dies(resilience, toxiproxy):
            resilience.tcp_service("x", upstream="127.0.0.1:9")
            toxiproxy.close()  # the server goes away under the test
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--toxiproxy=embedded")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*did not answer DELETE /proxies/*"])
    text = result.stdout.str()
    assert "Traceback" not in text and "During handling" not in text, text
    assert "direct cause" not in text and "client.py" not in text, text


@pytest.mark.skipif(not shutil.which("toxiproxy-server"), reason="needs toxiproxy-server on PATH")
def test_a_spawned_toxiproxy_that_dies_is_said_once_and_each_later_test_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    """Issue 15, point 5: after the spawned server died, every later test failed with the
    plugin's whole traceback and the server's log again."""
    pytester.makepyfile(
        r"""
        import os, re, signal

        def test_server_dies(resilience, toxiproxy):
            resilience.tcp_service("x", upstream="127.0.0.1:9")
            # The run's own server: a scan for children named toxiproxy can find a zombie
            # another test of this process left.
            os.kill(int(re.search(r"pid (\d+)", toxiproxy.describe())[1]), signal.SIGKILL)

        def test_later(resilience):
            resilience.tcp_service("y", upstream="127.0.0.1:9")

        def test_last(resilience):
            resilience.tcp_service("z", upstream="127.0.0.1:9")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--toxiproxy=spawn")

    result.assert_outcomes(passed=1, errors=1, failed=2)
    # The sections above pytest's short summary, which repeats each failure's first line
    # whole when pytest thinks it runs on CI (the CI variable) and cut to the terminal
    # width otherwise.
    text = result.stdout.str().partition("short test summary info")[0]
    assert text.count("was killed by SIGKILL; it printed: ") == 1, text
    result.stdout.fnmatch_lines(
        [
            "test_*.py:10: Toxiproxy at http://127.0.0.1:* did not answer POST /proxies "
            "(ConnectionRefusedError); toxiproxy-server (pid *) was killed by SIGKILL earlier "
            "in this run (the first test it failed says what it printed); the tests after "
            "that cannot use it",
        ]
    )
    assert text.count("earlier in this run") == 2, text
    assert "Traceback" not in text and "client.py" not in text, text


@pytest.mark.parametrize(
    ("option", "sentence"),
    [
        ("--toxiproxy=http://127.0.0.1:{dead}", "did not answer GET /version"),
        ("--toxiproxy-bin=/bin/true", "exited with status 0 before its API answered"),
        ("--toxiproxy-bin=/nonexistent/toxiproxy-server", "cannot run toxiproxy-server"),
    ],
    ids=["dead-url", "not-toxiproxy-binary", "missing-binary"],
)
def test_a_backend_that_cannot_start_fails_each_test_in_one_line(
    pytester: pytest.Pytester, option: str, sentence: str
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    pytester.makepyfile(
        """
        def test_one(resilience):
            pass

        def test_two(resilience):
            pass
        """
    )
    spawn = ["--toxiproxy=spawn"] if "bin" in option else []
    result = pytester.runpytest("-p", "no:cacheprovider", *spawn, option.format(dead=dead))

    result.assert_outcomes(errors=2)
    text = result.stdout.str()
    assert text.count(sentence) >= 2, text
    assert "Traceback" not in text and "During handling" not in text, text
    assert "direct cause" not in text and "backends.py" not in text, text


def test_a_request_body_that_never_ends_is_cut_off_at_the_cap(resilience: Resilience) -> None:
    """A chunked upload without end was buffered whole (59 MB -> 1.3 GB in 5 s): the layer
    now answers 413 and ends the connection once the body passes the cap (the answer itself
    may be lost to the reset a client still sending meets)."""
    from pytest_resilience.http.server import MAX_REQUEST_BODY

    api: HttpService = resilience.http_service("api")
    chunk = b"x" * (1024 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    answer: bytes | None = None
    sent = 0
    with socket.create_connection((api.host, api.port), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 4 * MAX_REQUEST_BODY:
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(frame)
                sent += len(chunk)
            answer = sock.recv(65536)
        except OSError:
            answer = b""  # reset: the layer ended the connection

    assert sent < 4 * MAX_REQUEST_BODY, "the layer kept taking the body"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert api.exchanges == []  # refused before it was a request


def test_a_declared_body_over_the_cap_gets_413_at_once(resilience: Resilience) -> None:
    from pytest_resilience.http.server import MAX_REQUEST_BODY

    api: HttpService = resilience.http_service("api")
    head = f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_REQUEST_BODY + 1}\r\n\r\n"
    with socket.create_connection((api.host, api.port), timeout=5) as sock:
        sock.sendall(head.encode())
        # The answer ends the connection; it may arrive in more than one read.
        answer = b"".join(iter(lambda: sock.recv(65536), b""))

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request body over 16 MiB" in answer


def test_impossible_marker_windows_fail_their_test_in_one_line(pytester: pytest.Pytester) -> None:
    """after=/duration= of inf or >= 1e10 killed the timer thread (a 0.6 s fault stayed on);
    nan made a silent no-op."""
    pytester.makepyfile(
        """
        import math, pytest

        @pytest.fixture
        def api(resilience):
            return resilience.http_service("api")

        @pytest.mark.http_faults("api", 503, after=math.inf)
        def test_inf_after(api): pass

        @pytest.mark.latency("api", ms=10, duration=1e10)
        def test_huge_duration(api): pass

        @pytest.mark.http_faults("api", 503, duration=math.nan)
        def test_nan_duration(api): pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*test_inf_after: @pytest.mark.http_faults: after (seconds) must be a finite number >= 0 and <= 1e+06, got inf.",
            "*test_huge_duration: @pytest.mark.latency: duration (seconds) must be a finite number > 0 and <= 1e+06, got 10000000000.0.",
            "*test_nan_duration: @pytest.mark.http_faults: duration (seconds) must be a finite number > 0 and <= 1e+06, got nan.",
        ]
    )


def test_a_long_marker_window_leaves_the_others_on_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time, pytest, requests

        @pytest.fixture
        def api(resilience):
            return resilience.http_service("api")

        @pytest.mark.http_faults("api", 500, after=1e6)
        @pytest.mark.http_faults("api", 503, duration=0.2)
        def test_short_one_heals(api):
            assert requests.get(api.url, timeout=2).status_code == 503
            deadline = time.monotonic() + 5
            while requests.get(api.url, timeout=2).status_code != 200:
                assert time.monotonic() < deadline, "the 0.2 s fault never healed"
                time.sleep(0.02)  # poll interval
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_chaos_toxics_of_known_types_are_checked_at_collection(pytester: pytest.Pytester) -> None:
    """bandwidth rate=-1 and slicer average_size=0 crash a real Toxiproxy 2.12; every test
    after them then said only 'did not answer'."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def svc(resilience, echo_address):
            return resilience.tcp_service("svc", upstream=echo_address)

        @pytest.mark.chaos("svc", type="bandwidth", rate=-1)
        def test_negative_rate(svc): pass

        @pytest.mark.chaos("svc", type="slicer", average_size=0)
        def test_zero_slices(svc): pass

        @pytest.mark.chaos("svc", type="latency", wobble=3)
        def test_unknown_attribute(svc): pass
        """
    )
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def echo_address():
            return "127.0.0.1:9"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*test_negative_rate: @pytest.mark.chaos: chaos(type='bandwidth'): rate must be a whole number >= 0, got -1.",
            "*test_zero_slices: @pytest.mark.chaos: chaos(type='slicer'): average_size must be a whole number >= 1, got 0.",
            "*test_unknown_attribute: @pytest.mark.chaos: chaos(type='latency'): the latency toxic has no attribute 'wobble'; it takes latency, jitter.",
        ]
    )


def test_a_toxic_type_toxiproxy_does_not_know_is_one_sentence(
    resilience: Resilience, echo_server: Any
) -> None:
    service = resilience.tcp_service("echo", upstream=echo_server.address)

    with pytest.raises(ConfigurationError, match=r"refused the 'wobbly' toxic of the wobbly fault"):
        service.fault("chaos", type="wobbly", amount=3)
    assert service.faults == []  # nothing was applied


def test_a_later_run_reclaims_what_a_killed_run_left_on_a_shared_toxiproxy(
    pytester: pytest.Pytester, toxiproxy: Backend
) -> None:
    """After kill -9 of a run against a remote Toxiproxy its proxies stayed forever."""
    from pytest_resilience.session import _remote_prefix

    url = toxiproxy.client.url
    pytester.makepyfile(BLOCKING_TEST)
    process, out = run_in_terminal(pytester, f"--toxiproxy={url}")
    try:
        wait_for((pytester.path / "ready").exists, what="the test to start")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    mine = f"{_remote_prefix()}-{process.pid}-"
    assert [n for n in toxiproxy.client.proxies() if n.startswith(mine)], out.read_text()
    # A live run's proxy under this host's tag: not to be touched.
    live = f"{_remote_prefix()}-{os.getpid()}-main-0000000000-live"
    toxiproxy.client.create_proxy(live, "127.0.0.1:9", "127.0.0.1:0")
    try:
        (pytester.path / "ready").unlink()
        pytester.makepyfile("def test_next(resilience):\n    pass\n")
        pytester.runpytest("-p", "no:cacheprovider", f"--toxiproxy={url}").assert_outcomes(passed=1)
        left = toxiproxy.client.proxies()
        assert not [n for n in left if n.startswith(mine)], left
        assert live in left
    finally:
        toxiproxy.client.delete_proxy(live)


@pytest.mark.parametrize(
    "backend",
    [
        "embedded",
        pytest.param(
            "spawn",
            marks=pytest.mark.skipif(
                not shutil.which("toxiproxy-server"), reason="needs toxiproxy-server on PATH"
            ),
        ),
    ],
)
def test_proxies_listen_on_an_ipv6_loopback_when_asked(
    pytester: pytest.Pytester, backend: str
) -> None:
    """--toxiproxy-listen-host=::1 was sent without brackets (500 from Toxiproxy), and the
    embedded engine ignored the option."""
    pytester.makeconftest(ECHO.read_text())  # the echo upstream: tests/echo.py
    pytester.makepyfile(
        """
        import socket

        def test_echo_through_ipv6(resilience, toxiproxy, upstream):
            svc = resilience.tcp_service("echo", upstream=upstream)
            listen = toxiproxy.client.get_proxy(svc.proxy)["listen"]
            assert listen.startswith("[::1]:"), listen
            with socket.create_connection((svc.host, svc.port), timeout=2) as sock:
                sock.sendall(b"ping")
                assert sock.recv(4) == b"ping"
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", f"--toxiproxy={backend}", "--toxiproxy-listen-host=::1"
    )
    result.assert_outcomes(passed=1)


CHAOS_MARKERS = """
import pytest

@pytest.fixture
def svc(resilience):
    return resilience.tcp_service("svc", upstream="127.0.0.1:9")

@pytest.mark.chaos("svc", type="wobbly", amount=3)
def test_unknown_type(svc): pass

@pytest.mark.chaos("svc", type="latency", latency="100")
def test_text_attribute(svc): pass

@pytest.mark.chaos("svc", type="slicer", average_size=4, size_variation=4)
def test_wide_variation(svc): pass
"""


def test_chaos_markers_the_embedded_engine_cannot_apply_fail_at_collection(
    pytester: pytest.Pytester,
) -> None:
    """An unknown toxic type passed collection, then failed the body with a 50-line
    traceback ending in the engine's raw JSON."""
    pytester.makepyfile(CHAOS_MARKERS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--toxiproxy=embedded")

    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_unknown_type*",
            "test_*::test_unknown_type: @pytest.mark.chaos: the embedded engine has no 'wobbly' "
            "toxic (it has bandwidth, latency, limit_data, *); use one of those, or a Toxiproxy "
            "build that has it (--toxiproxy=spawn or a URL).",
            "*ERROR at setup of test_text_attribute*",
            "test_*::test_text_attribute: @pytest.mark.chaos: chaos(type='latency'): latency "
            "must be a whole number >= 0, got '100'.",
            "*ERROR at setup of test_wide_variation*",
            "test_*::test_wide_variation: @pytest.mark.chaos: chaos(type='slicer'): "
            "size_variation (below average_size 4) must be a whole number >= 0 and <= 3, got 4.",
        ]
    )
    text = result.stdout.str()
    assert "Traceback" not in text and "tcp.py" not in text and '"error"' not in text, text


def test_a_toxic_a_toxiproxy_refuses_through_a_marker_fails_in_one_sentence(
    pytester: pytest.Pytester, url: str
) -> None:
    """A remote Toxiproxy may be a custom build, so a type it lacks is only known when
    it refuses the toxic: then the test fails in one sentence, not a traceback."""
    pytester.makepyfile(
        CHAOS_MARKERS.split("@pytest.mark.chaos")[0]
        + ('@pytest.mark.chaos("svc", type="wobbly", amount=3)\ndef test_unknown_type(svc): pass\n')
    )
    result = pytester.runpytest("-p", "no:cacheprovider", f"--toxiproxy={url}")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "test_*::test_unknown_type: @pytest.mark.chaos: Toxiproxy at http://* refused the "
            "'wobbly' toxic of the wobbly fault on 'svc' (*invalid toxic type*); check its type "
            "and attributes."
        ]
    )
    text = result.stdout.str()
    assert "Traceback" not in text and "tcp.py" not in text and "def " not in text, text


class _NotToxiproxy(http.server.BaseHTTPRequestHandler):
    """Some other HTTP server: every GET answers an HTML page of several lines."""

    status = 404
    PAGE = (
        b"<!DOCTYPE html>\n<html>\n<head><title>Not Found</title></head>\n<body>\n"
        b"<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n"
        b"<p>Additionally, a 404 Not Found error was encountered while trying to use an "
        b"ErrorDocument to handle the request.</p>\n</body>\n</html>\n"
    )

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.PAGE)))
        self.end_headers()
        self.wfile.write(self.PAGE)

    def log_message(self, *args: Any) -> None:
        pass  # not on the test's output


@pytest.mark.parametrize("status", [404, 200])
def test_a_toxiproxy_url_of_another_http_server_is_one_short_sentence(
    pytester: pytest.Pytester, status: int
) -> None:
    """The error carried the server's whole HTML page, line by line."""
    handler = type("Handler", (_NotToxiproxy,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        pytester.makepyfile("def test_one(resilience):\n    pass\n")
        port = server.server_address[1]
        result = pytester.runpytest(
            "-p", "no:cacheprovider", f"--toxiproxy=http://127.0.0.1:{port}"
        )
    finally:
        server.shutdown()
        server.server_close()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"http://127.0.0.1:{port} answered GET /version with *'<!DOCTYPE html> <html> *', "
            "so it is not a Toxiproxy API; pass the URL of Toxiproxy's API with --toxiproxy, "
            "e.g. --toxiproxy=http://127.0.0.1:8474."
        ]
    )
    text = result.stdout.str()
    assert "ErrorDocument" not in text and "</html>" not in text, text  # cut to 160 characters
    assert "Traceback" not in text, text
