"""The charge clients of ``test_verdicts_on_real_clients.py``: one-attempt calls to a stub
payments service, the well-behaved retrying clients built on tenacity, stamina and backoff,
and hand-written misbehaving ones.

The clients sleep as their retry policies say (that is what the tests judge).  Jitter comes
from the global ``random``, which the tests seed (the ``seeded_jitter`` fixture).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import backoff
import requests
import stamina
import tenacity

CHARGES = "/charges"
TIMEOUT = 0.3
"""Client read timeout under a lost answer, in seconds."""
CAP = 0.3
"""The well-behaved clients' longest wait between attempts, in seconds."""
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def charge(order: int) -> dict[str, Any]:
    """The body of one business action: orders differ, so their effects do too."""
    return {"order": order, "amount": 1999, "currency": "eur"}


def new_key() -> str:
    return uuid.uuid4().hex


# -- what the clients share ------------------------------------------------------------


class Retryable(Exception):
    """A retryable answer (429, 5xx), with the Retry-After it carried."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"{response.status_code} from {response.url}")
        self.response = response
        self.status = response.status_code
        header = response.headers.get("Retry-After")
        self.retry_after = float(header) if header and header.isdigit() else None


TRANSIENT = (Retryable, requests.ConnectionError, requests.Timeout)


def post_charge(
    session: requests.Session, url: str, order: int, key: str, timeout: float = 2.0
) -> requests.Response:
    """One attempt: the answer, or :class:`Retryable` for a 429/5xx."""
    response = session.post(
        url + CHARGES, json=charge(order), headers={"Idempotency-Key": key}, timeout=timeout
    )
    if response.status_code in RETRYABLE:
        raise Retryable(response)
    response.raise_for_status()
    return response


def retry_after(exc: BaseException | None) -> float | None:
    return exc.retry_after if isinstance(exc, Retryable) else None


def nothing() -> None:
    pass


# -- the well-behaved clients, one per library ------------------------------------------
#
# Each makes one charge: the same Idempotency-Key on every attempt, capped exponential
# backoff with jitter, a bounded number of attempts, and the Retry-After of a 429 as
# its wait.  ``before_retry`` runs before each retry (a test heals a fault there, so
# that the first attempt, and only it, meets the fault).


class wait_retry_after(tenacity.wait.wait_base):
    """Wait what a Retry-After asked for, else what ``fallback`` says."""

    def __init__(self, fallback: tenacity.wait.wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = retry_after(outcome.exception() if outcome is not None else None)
        return asked if asked is not None else float(self.fallback(retry_state))


def tenacity_charge(
    session: requests.Session,
    url: str,
    order: int,
    before_retry: Callable[[], None] = nothing,
    timeout: float = TIMEOUT,
    multiplier: float = 0.1,
) -> requests.Response:
    key = new_key()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TRANSIENT),
        # Full jitter (tenacity/wait.py:wait_random_exponential.__call__: uniform(0,
        # multiplier * 2 ** (attempt - 1)), at most CAP); the default 0.1 s makes waits
        # that stand out of a busy machine's timing noise.
        wait=wait_retry_after(tenacity.wait_random_exponential(multiplier=multiplier, max=CAP)),
        stop=tenacity.stop_after_attempt(5),
        before_sleep=lambda _state: before_retry(),
        reraise=True,
    )
    return retrying(post_charge, session, url, order, key, timeout)


def stamina_charge(
    session: requests.Session,
    url: str,
    order: int,
    before_retry: Callable[[], None] = nothing,
    timeout: float = TIMEOUT,
) -> requests.Response:
    key = new_key()

    def on(exc: Exception) -> bool | float:
        asked = retry_after(exc)
        if asked is not None:
            return asked  # stamina waits what a backoff hook returns
        return isinstance(exc, TRANSIENT)

    for attempt in stamina.retry_context(
        on=on, attempts=5, wait_initial=0.05, wait_max=CAP, wait_jitter=0.05, timeout=10
    ):
        with attempt:
            if attempt.num > 1:
                before_retry()
            return post_charge(session, url, order, key, timeout)
    raise AssertionError("unreachable: stamina reraises after its last attempt")


def backoff_charge(
    session: requests.Session,
    url: str,
    order: int,
    before_retry: Callable[[], None] = nothing,
    timeout: float = TIMEOUT,
) -> requests.Response:
    key = new_key()

    # A 429 is returned (not raised) to the outer decorator, which waits its Retry-After;
    # other failures raise to the inner one, which backs off exponentially.
    @backoff.on_predicate(
        backoff.runtime,
        predicate=lambda r: r.status_code == 429,
        value=lambda r: float(r.headers["Retry-After"]),
        jitter=None,
        max_tries=3,
        on_backoff=lambda _details: before_retry(),
    )
    @backoff.on_exception(
        backoff.expo,
        TRANSIENT,
        giveup=lambda exc: getattr(exc, "status", None) == 429,
        # backoff/_wait_gen.py:expo yields 0.1 * 2 ** n up to CAP; full_jitter draws below
        # it: waits long enough to stand out of a busy machine's noise.
        factor=0.1,
        max_value=CAP,
        jitter=backoff.full_jitter,
        max_tries=5,
        on_backoff=lambda _details: before_retry(),
    )
    def attempt() -> requests.Response:
        try:
            return post_charge(session, url, order, key, timeout)
        except Retryable as exc:
            if exc.status == 429:
                return exc.response
            raise

    response: requests.Response = attempt()
    return response


WELL_BEHAVED: dict[str, Callable[..., requests.Response]] = {
    "tenacity": tenacity_charge,
    "stamina": stamina_charge,
    "backoff": backoff_charge,
}


# -- misbehaving clients, hand-written ----------------------------------------------------


def fixed_interval_charge(
    session: requests.Session, url: str, order: int, attempts: int = 6
) -> requests.Response:
    """Retries every 50 ms, whatever the answer says."""
    key = new_key()
    for _ in range(attempts - 1):
        try:
            return post_charge(session, url, order, key)
        except Retryable:
            time.sleep(0.05)  # the policy under test: a fixed interval
    return post_charge(session, url, order, key)


def exponential_charge(
    session: requests.Session, url: str, order: int, jitter: bool, base: float = 0.05
) -> requests.Response:
    """Doubles its wait from ``base``: exactly (no jitter), or a random share of it (full jitter)."""
    key = new_key()
    for n in range(5):
        try:
            return post_charge(session, url, order, key)
        except Retryable:
            delay = base * 2**n
            time.sleep(random.uniform(0, delay) if jitter else delay)
    return post_charge(session, url, order, key)


def new_key_per_attempt_charge(
    session: requests.Session, url: str, order: int, before_retry: Callable[[], None]
) -> requests.Response:
    """Retries a lost answer once, but with a fresh Idempotency-Key: a second charge."""
    try:
        return post_charge(session, url, order, new_key(), timeout=TIMEOUT)
    except (requests.ConnectionError, requests.Timeout):
        before_retry()
        return post_charge(session, url, order, new_key(), timeout=TIMEOUT)


def same_key_charge(
    session: requests.Session, url: str, order: int, before_retry: Callable[[], None]
) -> requests.Response:
    """The same loop, reusing its key: the retry replays the first charge."""
    key = new_key()
    try:
        return post_charge(session, url, order, key, timeout=TIMEOUT)
    except (requests.ConnectionError, requests.Timeout):
        before_retry()
        return post_charge(session, url, order, key, timeout=TIMEOUT)
