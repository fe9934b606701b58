"""Clients with bugs that only some fault schedules reveal, each beside its correct twin.

Written into inner pytest projects by ``test_explore.py`` (they import it as
``clients``).  Every client talks real HTTP (requests) to an ``http_service`` stub.
"""

from __future__ import annotations

import time
import uuid

import requests


def charge(url: str, *, keep_key_after_reset: bool, attempts: int = 6) -> int | None:
    """POST a charge, retrying failures with one Idempotency-Key per charge.

    The buggy twin draws a new key after a connection failure (a reset, a lost or cut
    answer): the server applied the first attempt, so a retry with a new key charges
    twice. 5xx answers never show it: the key is kept for them.
    """
    key = str(uuid.uuid4())
    for _ in range(attempts):
        try:
            answer = requests.post(
                url + "/charges", json={"amount": 1999}, headers={"Idempotency-Key": key}, timeout=1
            )
        except requests.RequestException:
            if not keep_key_after_reset:
                key = str(uuid.uuid4())
            continue
        if answer.status_code < 500 and answer.status_code != 429:
            return answer.status_code
    return None


class Breaker:
    """A circuit breaker: open after ``threshold`` failures in a row, fail fast for
    ``cooldown`` s, then let one probe through (half-open) and close if it succeeds.

    The buggy twin handles a probe that gets an error answer or times out, but not one
    whose connection fails or whose answer is cut short: it then stays open for good.
    """

    def __init__(self, url: str, *, reopens_after_a_lost_probe: bool) -> None:
        self.url = url
        self.threshold = 2
        self.cooldown = 0.03
        self.failures = 0
        self.opened_at: float | None = None
        self.stuck = False
        self.correct = reopens_after_a_lost_probe

    def call(self) -> None:
        """One call through the breaker: raises ``Open`` when failing fast, else what the
        request raised or ``requests.HTTPError`` for an error answer."""
        now = time.monotonic()
        if self.opened_at is not None and (self.stuck or now - self.opened_at < self.cooldown):
            raise Open("the breaker is open")
        try:
            requests.get(self.url + "/quote", timeout=1).raise_for_status()
        except requests.RequestException as exc:
            lost = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)
            if isinstance(exc, lost) and self.opened_at is not None:
                self.stuck = not self.correct  # the bug: this probe failure never re-arms
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = time.monotonic()
            raise
        self.failures, self.opened_at, self.stuck = 0, None, False


class Open(Exception):
    """The breaker failed the call fast."""


class Prices:
    """Reads a price, serving the last one it read when the service fails.

    A served-from-cache answer must say so (``fresh`` False). The buggy twin says
    ``fresh`` when the failure came mid-request (connected, then no answer in time: a
    partition or a delay that begins after the request went out), and only then.
    """

    def __init__(self, url: str, *, mark_stale_on_read_timeout: bool) -> None:
        self.url = url
        self.cached: int | None = None
        self.correct = mark_stale_on_read_timeout

    def price(self) -> tuple[int | None, bool]:
        """(price, fresh)."""
        try:
            answer = requests.get(self.url + "/price", timeout=(1.0, 0.5))
            answer.raise_for_status()
            price = answer.json()["price"]  # a cut body raises requests.JSONDecodeError
        except requests.ReadTimeout:
            return self.cached, not self.correct
        except requests.RequestException:
            return self.cached, False
        self.cached = price
        return price, True
