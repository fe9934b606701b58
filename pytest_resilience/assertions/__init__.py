"""Verdicts on how code behaves under faults: pure functions over the records.

Each ``check_*`` function raises :class:`ResilienceAssertionError` with the rule
broken and the evidence as a timeline table; the services, ``resilience`` and
runs expose them as ``assert_*`` methods.
"""

from .backoff import check_backoff
from .breaker import check_breaker_opened, check_breaker_respected
from .effects import check_no_duplicate_side_effects
from .operations import DEFAULT_FAILURES, FailureSet, Operation, failed, operations
from .report import InsufficientEvidence, ResilienceAssertionError
from .retries import (
    check_amplification,
    check_attempts,
    check_retry_after_honoured,
    check_stable_idempotency_key,
)
from .storm import check_no_retry_storm

__all__ = [
    "DEFAULT_FAILURES",
    "FailureSet",
    "InsufficientEvidence",
    "Operation",
    "ResilienceAssertionError",
    "check_amplification",
    "check_attempts",
    "check_backoff",
    "check_breaker_opened",
    "check_breaker_respected",
    "check_no_duplicate_side_effects",
    "check_no_retry_storm",
    "check_retry_after_honoured",
    "check_stable_idempotency_key",
    "failed",
    "operations",
]
