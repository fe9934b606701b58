"""Argument checks with one wording: each raises a one-sentence ConfigurationError.

``what`` names the argument as the user wrote it (``"retry_after"``,
``"burst"``), so the sentence points at the call that received it.
"""

from __future__ import annotations

import json as jsonlib
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MEDIA_TYPE = re.compile(
    r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    r"([ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+=(\"[\x20\x21\x23-\x7e]*\"|[!#$%&'*+\-.^_`|~0-9A-Za-z]+))*"
)
# A header value h11 sends as it is: visible ASCII, inner spaces and tabs.
_FIELD_VALUE = re.compile(r"([\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?)?")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _within(minimum: float, above: bool, maximum: float | None) -> str:
    """A range as the sentences say it: ``>= 0``, ``> 0 and <= 3600``."""
    bound = f"> {_figure(minimum)}" if above else f">= {_figure(minimum)}"
    return bound if maximum is None else f"{bound} and <= {_figure(maximum)}"


def _figure(value: float) -> str:
    # An int in full: ``:g`` would write 1048576 as 1.04858e+06.
    return str(value) if isinstance(value, int) else f"{value:g}"


def number(
    value: Any,
    what: str,
    *,
    minimum: float = 0.0,
    above: bool = False,
    maximum: float | None = None,
) -> float:
    """A finite real number >= ``minimum`` (> with ``above``), at most ``maximum``."""
    finite = _is_number(value) and math.isfinite(value)
    if (
        not finite
        or value < minimum
        or (above and value == minimum)
        or (maximum is not None and value > maximum)
    ):
        raise ConfigurationError(
            f"{what} must be a finite number {_within(minimum, above, maximum)}, got {value!r}."
        )
    return float(value)


def share(value: Any, what: str) -> float:
    """A finite number from 0 to 1 (a share of connections, requests or calls)."""
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ConfigurationError(f"{what} must be a number from 0 to 1, got {value!r}.")
    return float(value)


def toxicity(value: Any, kind: str) -> float:
    """A fault's toxicity: the share of connections it affects."""
    return share(value, f"{kind}: toxicity (the share of connections affected)")


def flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{what} must be True or False, got {value!r}.")
    return value


def _whole(
    value: Any, what: str, minimum: int, maximum: int | None, or_none: bool, hint: str
) -> int:
    """The one check of a whole number: an int (not a bool, nor a float such as 2.0)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        none = " or None" if or_none else ""
        raise ConfigurationError(
            f"{what} must be a whole number {_within(minimum, False, maximum)}{none}, "
            f"got {value!r}{hint}."
        )
    return value


def integer(
    value: Any, what: str, *, minimum: int = 0, maximum: int | None = None, hint: str = ""
) -> int:
    """A whole number (an int) from ``minimum`` to ``maximum``; ``hint`` follows the value
    in the sentence."""
    return _whole(value, what, minimum, maximum, False, hint)


def seconds(value: Any, what: str, *, maximum: float | None = None) -> float:
    """A finite number of seconds >= 0 (at most ``maximum``)."""
    finite = _is_number(value) and math.isfinite(value)
    if not finite or value < 0 or (maximum is not None and value > maximum):
        raise ConfigurationError(
            f"{what} must be a finite number of seconds {_within(0, False, maximum)}, "
            f"got {value!r}."
        )
    return float(value)


def count(value: Any, what: str = "count", *, allow_none: bool = True) -> int | None:
    """A whole number >= 1, or None where that means 'every one'."""
    if value is None and allow_none:
        return None
    return _whole(value, what, 1, None, False, "")


def status(value: Any, what: str = "status") -> int:
    """An HTTP status: a whole number from 100 to 599."""
    return _whole(value, what, 100, 599, False, "")


def final_status(value: Any, what: str = "status") -> int:
    """A status a final answer can carry: 1xx are interim answers the layer sends itself."""
    status(value, what)
    if value < 200:
        raise ConfigurationError(
            f"{what} {value} is informational (1xx) and cannot end an exchange; "
            "use a status from 200 to 599."
        )
    return int(value)


def error_status(value: Any, fault: str) -> int:
    """A status a failing answer carries (400-599)."""
    status(value)
    if value < 400:
        raise ConfigurationError(
            f"{fault}() answers an error status (400 to 599), got {value}; set the usual "
            "answer with respond(), or reshape it with delay(..., status=) or cut(..., status=)."
        )
    return int(value)


def callable_(value: Any, what: str) -> Any:
    if not callable(value):
        raise ConfigurationError(
            f"{what} takes the code under test as a callable (e.g. lambda: client.get(...)), "
            f"got {type(value).__name__} {value!r}."
        )
    return value


def callable_or_none(value: Any, what: str, shape: str) -> Any:
    """A function the verdict calls, such as ``group=`` (``shape``: ``exchange -> hashable``),
    or None for the default."""
    if value is not None and not callable(value):
        raise ConfigurationError(
            f"{what} must be a function ({shape}) or None, got {type(value).__name__} {value!r}."
        )
    return value


def instance(value: Any, kind: type | tuple[type, ...], what: str, expected: str) -> Any:
    """An object of ``kind``, which ``expected`` names for the user (what makes one)."""
    if not isinstance(value, kind):
        raise ConfigurationError(
            f"{what} must be {expected}, got {type(value).__name__} {value!r}."
        )
    return value


def choice(value: Any, what: str, choices: Mapping[str, str]) -> str:
    """One of the names in ``choices``; each maps to what it means ("" to say nothing)."""
    if not isinstance(value, str) or value not in choices:
        names = [
            f"{name!r}" + (f" ({meaning})" if meaning else "") for name, meaning in choices.items()
        ]
        listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
        raise ConfigurationError(f"{what} must be {listed}, got {value!r}.")
    return value


def bound(value: Any, what: str) -> int | None:
    """A whole-number bound >= 0, or None for no bound."""
    if value is None:
        return None
    return _whole(value, what, 0, None, True, "")


def method(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise ConfigurationError(
            f"unknown HTTP method {value!r}; use one of {', '.join(sorted(METHODS))}."
        )
    return value.upper()


def header_name(value: Any, what: str = "header name") -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ConfigurationError(f"{what} {value!r} is not a valid HTTP header name.")
    return value


def headers(value: Any, what: str = "headers") -> list[tuple[str, str]]:
    """A mapping of header names to str values, as the list of pairs an answer carries."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{what} must be a mapping of header names to str values, e.g. "
            f"{{'Retry-After': '1'}}, got {type(value).__name__} {value!r}."
        )
    out = []
    seen: set[str] = set()
    for name, text in value.items():
        header_name(name)
        if name.lower() in seen:
            raise ConfigurationError(
                f"header {name!r} is given twice (names ignore case); keep one."
            )
        seen.add(name.lower())
        if not isinstance(text, str) or not _FIELD_VALUE.fullmatch(text):
            raise ConfigurationError(
                f"header {name!r} must have a str value of printable ASCII without leading or "
                f"trailing spaces, got {text!r}."
            )
        out.append((name, text))
    return out


def content_type(value: Any) -> str:
    """A media type such as ``application/json`` or ``text/plain; charset=utf-8``."""
    if not isinstance(value, str) or not _MEDIA_TYPE.fullmatch(value.strip()):
        raise ConfigurationError(
            f"content_type must be a media type such as 'application/json' or "
            f"'application/x-www-form-urlencoded', got {value!r}."
        )
    return value.strip()


def json_body(value: Any, what: str = "json") -> bytes:
    """``value`` as strict JSON: only JSON types, finite numbers."""
    try:
        return jsonlib.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{what} must be JSON data (dict, list, str, finite numbers, bool, None): {exc}."
        ) from None


def raw_body(value: Any, what: str = "body") -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise ConfigurationError(
        f"{what} must be bytes or str (use json= for data), got {type(value).__name__} {value!r}."
    )


def failures(value: Any, what: str = "failure_statuses") -> tuple[frozenset[int], tuple[Any, ...]]:
    """A failure set: HTTP statuses and predicates over an exchange, as (statuses, predicates)."""
    if isinstance(value, (str, bytes, int)) or callable(value):
        raise ConfigurationError(
            f"{what} takes a collection of statuses and predicates (e.g. "
            f"{{*DEFAULT_FAILURES, is_throttled}}), got {value!r}; wrap a single one in a set."
        )
    try:
        rules = list(value)
    except TypeError:
        raise ConfigurationError(
            f"{what} takes a collection of HTTP statuses and predicates, got "
            f"{type(value).__name__} {value!r}."
        ) from None
    statuses: set[int] = set()
    predicates: list[Any] = []
    for rule in rules:
        if callable(rule):
            predicates.append(rule)
        elif isinstance(rule, int) and not isinstance(rule, bool):
            statuses.add(status(rule, f"a status in {what}"))
        else:
            raise ConfigurationError(
                f"{what} holds HTTP statuses (ints) and predicates (exchange -> bool), "
                f"got {type(rule).__name__} {rule!r}."
            )
    return frozenset(statuses), tuple(predicates)


def address(value: Any, what: str) -> tuple[str, int]:
    """``"host:port"`` (``[::1]:port`` for IPv6), or a ``(host, port)`` pair of a str and
    an int, as a pair."""
    host: Any = None
    port: Any = None
    if isinstance(value, tuple) and len(value) == 2:
        host, port = value
    elif isinstance(value, str) and ":" in value:
        host, _, digits = value.rpartition(":")
        host = host.strip("[]")
        # int() would also read " 80" and fullwidth digits.
        port = int(digits) if digits.isascii() and digits.isdigit() else None
    bad_port = isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    if not isinstance(host, str) or not host or bad_port:
        raise ConfigurationError(
            f"{what} must be 'host:port' or a (host, port) pair with a port from 1 to 65535, "
            f"got {value!r}."
        )
    return host, port


def http_url(value: Any, what: str, *, base_path: bool = False) -> tuple[str, int, str]:
    """An ``http://host:port`` URL (with a path when ``base_path``): host, port, path."""
    parts = urlsplit(value) if isinstance(value, str) else None
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        port = None
    path = parts.path.rstrip("/") if parts is not None else ""
    if (
        parts is None
        or parts.scheme != "http"
        or not parts.hostname
        or port is None
        or not 0 < port < 65536
        or (path and not base_path)
    ):
        shape = "http://host:port URL" + (" (optionally with a base path)" if base_path else "")
        raise ConfigurationError(f"{what} must be an {shape}, got {value!r}.")
    return parts.hostname, port, path
