"""The business identity of a request: method, path and its body in canonical form.

Two requests with one identity ask for the same business action (a charge of
the same amount to the same customer), however the client encoded it:

- JSON (any body that parses as JSON, whatever it is labelled, unless it is
  form-encoded or multipart): keys sorted, no spaces;
- form-encoded (``application/x-www-form-urlencoded``, as payment SDKs send):
  the fields sorted by name, so their order does not matter; the values of a
  repeated name keep their order, which lists depend on;
- multipart (``multipart/form-data``): each part by its field name, text fields
  by value and files by the SHA-256 of their content (file names are left out:
  clients often make them up), sorted by field name;
- anything else: the SHA-256 of the bytes.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
from email.message import Message
from urllib.parse import parse_qsl, urlencode

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


def media_type(content_type: str | None) -> str:
    """``"application/json; charset=utf-8"`` -> ``"application/json"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def canonical_body(body: bytes, content_type: str | None = None) -> str:
    """The body in the form the identity compares (see the module's docstring)."""
    if not body:
        return ""
    kind = media_type(content_type)
    if kind == FORM:
        return _form(body)
    if kind == MULTIPART and content_type is not None:
        parts = _multipart(body, content_type)
        if parts is not None:
            return parts
    try:
        return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except (ValueError, UnicodeDecodeError):
        pass
    return "sha256:" + hashlib.sha256(body).hexdigest()


def fingerprint(method: str, path: str, body: bytes, content_type: str | None = None) -> str:
    """The business identity of a request: method, path and canonical body."""
    return f"{method} {path} {canonical_body(body, content_type)}".rstrip()


def _form(body: bytes) -> str:
    # Latin-1 maps every byte to one character and back, so distinct bytes stay distinct
    # (UTF-8 with replacement would make %FF and %FE one value).
    fields = parse_qsl(body.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    # A stable sort: the values of one repeated name keep their order.
    ordered = sorted(fields, key=lambda field: field[0])
    return "form:" + urlencode(ordered, safe="[]", encoding="latin-1")


def _multipart(body: bytes, content_type: str) -> str | None:
    """The parts as ``name=value`` / ``name=sha256:...``; None if the body is not multipart."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        return None
    fields: list[tuple[str, str]] = []
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(content, bytes):
            return None
        if part.get_filename() is not None:
            fields.append((name, "sha256:" + hashlib.sha256(content).hexdigest()))
        else:
            fields.append((name, content.decode("utf-8", "surrogateescape")))
    return "multipart:" + urlencode(sorted(fields, key=lambda field: field[0]), safe="[]:")
