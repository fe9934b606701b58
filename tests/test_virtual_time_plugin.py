"""Virtual time through the plugin: the marker and the option (setup to teardown), the
marker windows firing at virtual instants, the record's clock line, the refusals, and a
run cut short.  The scheduler's own tests are in ``test_virtual_time.py`` and
``test_virtual_time_review.py``."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from pytest_resilience import HttpService, Resilience
from pytest_resilience.clock import CLOCK, real_monotonic


@pytest.mark.virtual_time
@pytest.mark.http_faults("api", status=503, duration=120)
def test_a_window_heals_before_the_client_that_waits_for_its_end_wakes(
    resilience: Resilience,
) -> None:
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    start = time.monotonic()  # the windows opened just before the body began

    assert requests.get(api.url + "/x", timeout=5).status_code == 503
    time.sleep(120 - (time.monotonic() - start))  # wakes at the window's end, not after it
    assert requests.get(api.url + "/x", timeout=5).status_code == 200

    (clock,) = resilience.clocks
    assert clock.skipped >= 119


@pytest.mark.virtual_time
def test_a_test_polling_for_a_delayed_answer_sees_it_come(resilience: Resilience) -> None:
    """A delayed answer is held by a timer of the plugin's clock, which a jump fires before
    the poll waiting past it wakes: a test polling for it with a virtual deadline sees it
    come (when the delay was held in real time without holding the jumps, the poll's
    deadline ran out first: the zoo's lost-answer tests failed so under
    --resilience-clock=virtual)."""
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    api.delay(0.4, count=1)
    with pytest.raises(requests.ReadTimeout):
        requests.post(api.url + "/orders", json={}, timeout=0.15)

    deadline = time.monotonic() + 1.0
    while not (api.exchanges and api.exchanges[0].ended_at is not None):
        assert time.monotonic() < deadline, "the poll's virtual deadline ran out first"
        time.sleep(0.25)


@pytest.mark.virtual_time
def test_resilience_virtual_time_inside_the_marker_is_the_bodys_clock(
    resilience: Resilience,
) -> None:
    with resilience.virtual_time() as clock:
        time.sleep(42)
    assert resilience.clocks == [clock]
    assert clock.virtual >= 42


def test_resilience_virtual_time_puts_a_block_on_virtual_time(resilience: Resilience) -> None:
    api: HttpService = resilience.http_service("api")
    api.respond(200, json={"ok": True})
    api.rate_limit(1, retry_after=90)

    with resilience.virtual_time() as clock:
        first = requests.get(api.url + "/x", timeout=5)
        time.sleep(float(first.headers["Retry-After"]))
        second = requests.get(api.url + "/x", timeout=5)

    assert (first.status_code, second.status_code) == (429, 200)
    api.assert_retry_after_honoured()
    assert clock.skipped >= 89
    assert time.sleep.__module__ == "time"  # the block ended: real again


MARKED = """
import time

import pytest


@pytest.mark.virtual_time
def test_waits(resilience):
    api = resilience.http_service("api")
    api.fail(503, count=1)
    time.sleep(600)
"""


def test_the_summary_shows_virtual_and_real_time(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(MARKED)
    result = inner.runpytest("-p", "no:cacheprovider", f"--toxiproxy={url}", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  clock:    60?.* s virtual in ?.* s real"])


HELD = """
import threading
import time

import pytest


@pytest.mark.virtual_time
def test_held(resilience):
    resilience.http_service("api").fail(503, count=1)
    held = threading.Lock()
    held.acquire()
    blocker = threading.Thread(target=held.acquire, name="lock-taker")
    blocker.start()
    time.sleep(0.3)
    held.release()
    blocker.join()
"""


def test_the_summary_names_the_thread_that_held_the_clock_back(
    inner: pytest.Pytester, url: str
) -> None:
    inner.makepyfile(HELD)
    result = inner.runpytest("-p", "no:cacheprovider", f"--toxiproxy={url}", "-v")
    result.assert_outcomes(passed=1)
    # The 0.3 s slept, and the real time the body took besides (more on a loaded machine).
    result.stdout.fnmatch_lines(
        [
            "  clock:    ?.? s virtual in ?.* s real; waits ended in real time for 0.* s while "
            "thread 'lock-taker' ran where virtual time cannot see it wait (a socket, a lock, "
            "an object made before the block), holding the clock back"
        ]
    )


UNMARKED = """
import time

import anyio
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_waits(resilience):
    resilience.http_service("api").fail(503, count=1)
    time.sleep(300)


@pytest.mark.anyio
async def test_a_coroutine(resilience):
    resilience.http_service("api").fail(503, count=1)
    await anyio.sleep(120)
"""


@pytest.mark.parametrize("how", ["option", "ini"])
def test_the_suite_option_puts_every_body_on_virtual_time(
    inner: pytest.Pytester, url: str, how: str
) -> None:
    inner.makepyfile(UNMARKED)
    args = ["-p", "no:cacheprovider", f"--toxiproxy={url}", "-v"]
    if how == "option":
        args.append("--resilience-clock=virtual")
    else:
        inner.makeini("[pytest]\nresilience_clock = virtual\n")
    # In a process of its own: anyio's backend imported first in an in-process run would
    # be taken out after it (pytester's snapshot of the modules), and imported again.
    result = inner.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2)
    # Virtual time holds the real time the bodies took too: on a loaded machine, a second.
    result.stdout.fnmatch_lines(
        ["  clock:    30?.* s virtual in ?.* s real", "  clock:    12?.* s virtual in ?.* s real"]
    )


def test_a_bad_clock_option_is_one_sentence(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--resilience-clock=fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--resilience-clock must be 'real' or 'virtual' (every test on virtual time), "
            "got 'fast'."
        ]
    )


REFUSED = """
import pytest


@pytest.mark.virtual_time(speed=10)
def test_arguments(resilience):
    pass
"""


def test_the_marker_refuses_arguments_in_one_sentence(inner: pytest.Pytester, url: str) -> None:
    inner.makepyfile(REFUSED)
    result = inner.runpytest("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*test_arguments: @pytest.mark.virtual_time: it takes no arguments; write "
            "@pytest.mark.virtual_time.",
        ]
    )


INTERRUPTED = """
import time

import pytest


@pytest.mark.virtual_time
def test_interrupted(resilience):
    time.sleep(5)
    raise KeyboardInterrupt
"""


def test_a_run_cut_short_by_ctrl_c_closes_its_block(inner: pytest.Pytester, url: str) -> None:
    """In process (pytester's default), the run's patches must be gone once it ends."""
    sleep, start = time.sleep, threading.Thread.start
    inner.makepyfile(INTERRUPTED)
    result = inner.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--toxiproxy={url}", no_reraise_ctrlc=True
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert time.sleep is sleep and threading.Thread.start is start
    assert CLOCK.virtual is None


SESSION_SERVER = """
import threading
import time

import pytest


@pytest.fixture(scope="session")
def server():
    held = threading.Lock()
    held.acquire()
    thread = threading.Thread(target=held.acquire, name="session-server", daemon=True)
    thread.start()  # blocked in C for the whole session, as a server's select() is
    yield thread
    held.release()


@pytest.mark.virtual_time
def test_first_user_of_the_server(resilience, server):
    resilience.http_service("api").fail(503, count=1)
    time.sleep(2)
"""


def test_a_session_fixture_set_up_by_a_virtual_test_stays_outside_its_block(
    inner: pytest.Pytester, url: str
) -> None:
    """Set up inside the test's block, the session server's thread was adopted: blocked in
    C, it held every jump back, and the test's 2 s took 2 s of real time."""
    inner.makepyfile(SESSION_SERVER)
    result = inner.runpytest("-p", "no:cacheprovider", f"--toxiproxy={url}", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  clock:    2.* s virtual in 0.* s real"])
    result.stdout.no_fnmatch_line("*session-server*")


LEFT_OPEN = """
import threading
import time

from pytest_resilience.runtime.virtual import virtual_time

leave = threading.Event()


def test_a_thread_stays_in_its_block():
    entered = threading.Event()

    def body():
        with virtual_time():
            entered.set()
            leave.wait()

    threading.Thread(target=body, name="stuck-in-block", daemon=True).start()
    assert entered.wait(10)


def test_the_next_test_sleeps_in_real_time():
    started = time.monotonic()
    time.sleep(0.05)
    leave.set()
    assert time.monotonic() - started >= 0.05
"""


def test_a_block_left_open_by_a_thread_is_closed_and_named_at_teardown(
    inner: pytest.Pytester, url: str
) -> None:
    """CI hung for 90 minutes: a test whose thread never left its block (it deadlocked)
    left the patches on, and every later test ran on that block's clock."""
    sleep = time.sleep
    inner.makepyfile(LEFT_OPEN)
    result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*a block on virtual time opened by thread 'stuck-in-block' was still open after*"]
    )
    assert time.sleep is sleep and CLOCK.virtual is None


LEFT_WORKING = """
import threading
import time

import pytest

from pytest_resilience.clock import real_monotonic
from pytest_resilience.runtime.virtual import virtual_time

leave = threading.Event()


def test_a_thread_stays_in_its_block_and_keeps_working():
    entered = threading.Event()

    def body():
        with virtual_time():
            entered.set()
            while not leave.is_set():
                time.sleep(0.001)
                busy = time.perf_counter() + 0.005
                while time.perf_counter() < busy:
                    pass

    threading.Thread(target=body, name="stray", daemon=True).start()
    assert entered.wait(10)


@pytest.mark.virtual_time
def test_the_next_block_jumps_without_it():
    real = real_monotonic()
    time.sleep(5)
    took = real_monotonic() - real
    leave.set()
    assert took < 2, took
"""


def test_a_thread_of_a_block_left_open_takes_no_part_in_a_later_block(
    inner: pytest.Pytester, url: str
) -> None:
    """Under load in CI (stress run 18) a test's thread outlived its block: the plugin
    closed the block, but the thread went on sleeping, joined each later block as it
    slept and held its jumps back while it worked: 25 later tests failed their
    real-time bounds (a 5 s sleep took 17 s)."""
    inner.makepyfile(LEFT_WORKING)
    result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*a block on virtual time opened by thread 'stray' was still*"])


MODULE_BLOCK = """
import time

import pytest

from pytest_resilience.runtime.virtual import virtual_time


@pytest.fixture(scope="module")
def clock():
    with virtual_time() as clock:  # one block for the module's tests
        yield clock


def test_one(clock):
    time.sleep(60)


def test_two(clock):
    time.sleep(60)
"""


def test_a_block_a_wider_fixture_keeps_open_is_not_closed_between_tests(
    inner: pytest.Pytester, url: str
) -> None:
    """Opened by the test's own thread, it is the fixture's to close: the plugin closed it
    after the first test, with an error, and the second slept a real minute."""
    inner.makepyfile(MODULE_BLOCK)
    started = real_monotonic()
    result = inner.runpytest_inprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(passed=2)
    assert real_monotonic() - started < 30


def test_a_uvloop_test_under_the_marker_fails_in_one_sentence(
    inner: pytest.Pytester, url: str
) -> None:
    """anyio runs the test on uvloop when asked (``use_uvloop``): virtual time cannot reach
    that loop's timers, so the test fails at once with what to do, not after its sleep's
    real time."""
    inner.makepyfile(
        """
        import anyio
        import pytest


        @pytest.fixture
        def anyio_backend():
            return ("asyncio", {"use_uvloop": True})


        @pytest.mark.virtual_time
        @pytest.mark.anyio
        async def test_a_coroutine(resilience):
            await anyio.sleep(600)
        """
    )
    result = inner.runpytest_subprocess("-p", "no:cacheprovider", f"--toxiproxy={url}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ConfigurationError: uvloop's event loop waits in C*"])
    assert result.duration < 60  # not the sleep's 600 s
