"""What an HTTP service sends: requests and answers, and the shape of a fault's answer.

A fault's answer looks like the real API's when the test says so: ``headers=``
and a body (``json=``, or ``body=`` with ``content_type=``) on every step, and a
service-wide error body (``http_service(..., error=...)``) for the faults that
give none.  ``retry_after=`` is whole seconds or an HTTP-date (RFC 9110 10.2.3);
waits under a second go in ``retry_after_ms=``, the ``retry-after-ms`` header
that several large APIs send and their SDKs read first.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import validate
from ..errors import ConfigurationError

ErrorBody = Callable[[int], Any]
"""A service's error body: the JSON data a fault answering ``status`` sends."""

# Set by the HTTP layer from the body; a scripted value would contradict the bytes sent.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_NO_BODY = (204, 304)


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    step: str = "respond"
    scripted: bool = False
    cut: bool = False
    """Close the connection halfway through the body."""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


@dataclass(frozen=True)
class Shape:
    """How a step's answer looks beyond its status: headers, and a body if one was given."""

    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    """None: the step's usual body (the service's error body, or the answer passed on)."""

    @property
    def empty(self) -> bool:
        return not self.headers and self.body is None

    def onto(self, answer: Answer) -> Answer:
        """``answer`` with these headers set (replacing same-named ones) and this body; a
        new body replaces the answer's Content-Type with its own (or none)."""
        if self.body is not None and answer.status in _NO_BODY:
            raise ConfigurationError(
                f"json=/body= cannot go on the {answer.status} answer a delay or cut passed on "
                "(it carries no body); give status= to send another answer instead."
            )
        names = {k.lower() for k, _ in self.headers}
        if self.body is not None:
            names.add("content-type")  # the new body brings its own (or none)
        kept = [(k, v) for k, v in answer.headers if k.lower() not in names]
        body = answer.body if self.body is None else self.body
        return replace(answer, headers=kept + list(self.headers), body=body)


def shape(
    json: Any = None,
    body: bytes | str | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Shape:
    """Validated shaping arguments: ``json=`` or ``body=`` (with ``content_type=``), ``headers=``."""
    pairs = validate.headers(headers)
    for name, _ in pairs:
        if name.lower() in _FRAMING:
            raise ConfigurationError(
                f"header {name!r} is set by the HTTP layer from the body; drop it from headers=."
            )
    if json is not None and body is not None:
        raise ConfigurationError("pass json= or body=, not both.")
    if content_type is not None:
        content_type = validate.content_type(content_type)
        if json is None and body is None:
            raise ConfigurationError(
                "content_type= describes a body; pass body= (or json=) with it."
            )
        if any(k.lower() == "content-type" for k, _ in pairs):
            raise ConfigurationError(
                "the content type is given twice (content_type= and a Content-Type header); "
                "keep one."
            )
    if json is not None:
        payload: bytes | None = validate.json_body(json)
        content_type = content_type or "application/json"
    elif body is not None:
        payload = validate.raw_body(body)
        if content_type is None and isinstance(body, str):
            content_type = "text/plain; charset=utf-8"
    else:
        payload = None
    if content_type is not None and not any(k.lower() == "content-type" for k, _ in pairs):
        pairs.append(("Content-Type", content_type))
    return Shape(tuple(pairs), payload)


def check_bodiless(status: int, shaped: Shape, what: str) -> None:
    if status in _NO_BODY and shaped.body:
        raise ConfigurationError(
            f"a {status} answer carries no body; drop json=/body= from {what}."
        )


def make_answer(status: int, shaped: Shape) -> Answer:
    """The default answer of ``respond()``."""
    validate.final_status(status)
    check_bodiless(status, shaped, "respond()")
    return Answer(status, list(shaped.headers), shaped.body or b"")


def default_error(status: int) -> dict[str, Any]:
    """The error body of a fault when neither the fault nor the service gives one.

    An object under ``"error"`` with ``type`` and ``message``, the shape most
    large APIs use, so an SDK's error handling reads it instead of tripping on it.
    """
    kind = "rate_limit_error" if status == 429 else "api_error"
    return {"error": {"type": kind, "message": "injected by pytest-resilience", "status": status}}


def error_body(error: Any) -> ErrorBody:
    """A service's ``error=``: JSON data for every fault, or a function of the status."""
    if error is None:
        return default_error
    if callable(error):
        return error  # type: ignore[no-any-return]
    validate.json_body(error, "error")
    return lambda _status: error


def fault_answer(
    status: int,
    shaped: Shape,
    error: ErrorBody,
    step: str,
    *,
    first: tuple[tuple[str, str], ...] = (),
) -> Answer:
    """A fault's answer: ``shaped`` over the service's error body, after the headers ``first``."""
    validate.final_status(status)
    check_bodiless(status, shaped, f"the {step} fault")
    if status in _NO_BODY or shaped.body is not None:
        base = Answer(status, list(first), b"", step, scripted=True)
    else:
        try:
            data = error(status)
        except Exception as exc:
            raise ConfigurationError(
                f"the service's error= function failed for status {status}: {exc!r}; "
                "make it return JSON data for every status a fault sends."
            ) from exc
        body = validate.json_body(data, f"the service's error body for status {status}")
        headers = [*first, ("Content-Type", "application/json")]
        base = Answer(status, headers, body, step, scripted=True)
    names = {k.lower() for k, _ in shaped.headers}
    clash = [k for k, _ in first if k.lower() in names]
    if clash:
        raise ConfigurationError(
            f"header {clash[0]!r} is set by the {step} fault's own arguments; "
            "drop it from headers=."
        )
    return shaped.onto(base)


def format_retry_after(value: int | dt.datetime) -> str:
    """Retry-After as delta-seconds, or as an HTTP-date for a datetime (RFC 9110 10.2.3)."""
    if isinstance(value, dt.datetime):
        return email.utils.format_datetime(value.astimezone(dt.timezone.utc), usegmt=True)
    return str(value)


def check_retry_after(value: Any) -> int | dt.datetime | None:
    """``retry_after=``: whole seconds >= 0 or a timezone-aware datetime (or None)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                "retry_after datetime must be timezone-aware, e.g. datetime.now(timezone.utc)."
            )
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value) and value >= 0 and not float(value).is_integer():
        raise ConfigurationError(
            f"retry_after={value!r} is not whole seconds: Retry-After carries whole seconds "
            f"(RFC 9110 10.2.3); send a fractional wait as retry_after_ms="
            f"{value * 1000:.15g}, the retry-after-ms header."
        )
    if number and math.isfinite(value) and float(value).is_integer():
        value = int(value)  # a wait in seconds computed as a float, e.g. 2.0: whole seconds
    return validate.integer(value, "retry_after", hint=" (or a timezone-aware datetime)")


def wait_headers(
    retry_after: int | dt.datetime | None, retry_after_ms: float | None
) -> tuple[tuple[str, str], ...]:
    """The Retry-After and retry-after-ms headers a fault sends (validated values)."""
    out = []
    if retry_after is not None:
        out.append(("Retry-After", format_retry_after(retry_after)))
    if retry_after_ms is not None:
        ms = retry_after_ms
        out.append(("retry-after-ms", str(int(ms)) if float(ms).is_integer() else repr(ms)))
    return tuple(out)


def check_retry_after_ms(value: Any) -> float | None:
    if value is None:
        return None
    return validate.number(value, "retry_after_ms")
