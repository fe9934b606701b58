"""The client from the incident, kept as the example of what the plugin catches.

It retries every 50 ms whatever the answer says, ignores Retry-After, and mints a
fresh Idempotency-Key per attempt. Against a 5-minute upstream blip, thousands of
these turned into a 4-hour outage: the retries arrived in lockstep, faster than the
rate limit let through, and every answer lost on the way back became a second charge.
"""

from __future__ import annotations

import time
import uuid

import requests

from .client import RETRYABLE, Charge, PaymentError


class NaivePaymentsClient:
    def __init__(
        self, base_url: str, *, attempts: int = 10, interval: float = 0.05, timeout: float = 0.5
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self.interval = interval
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> NaivePaymentsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def charge(self, amount: int, currency: str, customer: str) -> Charge:
        body: dict[str, str | int] = {"amount": amount, "currency": currency, "customer": customer}
        for _ in range(self.attempts):
            headers = {"Idempotency-Key": str(uuid.uuid4())}  # the bug: a new key per attempt
            try:
                response = self._session.post(
                    self.base_url + "/charges", json=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException:
                time.sleep(self.interval)
                continue
            if response.status_code in RETRYABLE:
                time.sleep(self.interval)  # Retry-After ignored
                continue
            response.raise_for_status()
            data = response.json()
            return Charge(data["id"], data["amount"], data["currency"], data["status"])
        raise PaymentError(f"POST /charges failed after {self.attempts} attempts")
