"""The error answers of three public APIs, written as ``http_service(error=...)`` functions,
and the successful answers their stubs give (a charge, a chat completion, a message).

Each returns the JSON body the API documents for a status; the faults add the
headers the API sends (``retry-after-ms``, ``x-should-retry``,
``Stripe-Should-Retry``).  The README's cookbook shows this file.
"""

from __future__ import annotations

from typing import Any

# Stripe: {"error": {"type", "code", "message"}}.  A 429 is an invalid_request_error
# with code rate_limit; a 409 lock_timeout comes with Stripe-Should-Retry: true.
STRIPE_ERRORS = {
    409: ("invalid_request_error", "lock_timeout", "This object cannot be accessed right now."),
    429: ("invalid_request_error", "rate_limit", "Too many requests hit the API too quickly."),
}


def stripe_error(status: int) -> dict[str, Any]:
    kind, code, message = STRIPE_ERRORS.get(
        status, ("api_error", None, "An unknown error occurred.")
    )
    return {"error": {"type": kind, "code": code, "message": message}}


# OpenAI: {"error": {"message", "type", "param", "code"}}.
OPENAI_ERRORS = {
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def openai_error(status: int) -> dict[str, Any]:
    kind, code, message = OPENAI_ERRORS.get(status, ("server_error", None, "Server error."))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# Anthropic: {"type": "error", "error": {"type", "message"}}; 529 is overloaded_error.
ANTHROPIC_ERRORS = {
    408: "timeout_error",
    409: "conflict_error",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error(status: int) -> dict[str, Any]:
    kind = ANTHROPIC_ERRORS.get(status, "api_error")
    message = "Overloaded" if status == 529 else f"{kind.replace('_', ' ')}"
    return {"type": "error", "error": {"type": kind, "message": message}}


CHARGE = {"id": "ch_1", "object": "charge", "amount": 1999, "currency": "eur", "paid": True}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-test",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 1, "output_tokens": 1},
}
