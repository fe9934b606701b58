"""Three official SDKs pointed at stubs that answer like their APIs (shapes from shapes.py)."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest
import stripe

from pytest_resilience import HttpService, Resilience

from .shapes import CHARGE, COMPLETION, MESSAGE, anthropic_error, openai_error, stripe_error


@pytest.fixture
def stripe_api(resilience: Resilience) -> HttpService:
    service = resilience.http_service("stripe", error=stripe_error)
    service.route("POST", "/v1/charges").respond(200, json=CHARGE, headers={"Request-Id": "req_1"})
    return service


@pytest.fixture
def stripe_client(stripe_api: HttpService) -> stripe.StripeClient:
    # StripeClient retries nothing unless told (max_network_retries None -> 0).
    return stripe.StripeClient(
        "sk_test_stub", base_addresses={"api": stripe_api.url}, max_network_retries=2
    )


@pytest.fixture
def openai_api(resilience: Resilience) -> HttpService:
    service = resilience.http_service("openai", error=openai_error)
    service.route("POST", "/v1/chat/completions").respond(200, json=COMPLETION)
    return service


@pytest.fixture
def openai_client(openai_api: HttpService) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-stub", base_url=f"{openai_api.url}/v1", max_retries=2) as client:
        yield client


@pytest.fixture
def anthropic_api(resilience: Resilience) -> HttpService:
    service = resilience.http_service("anthropic", error=anthropic_error)
    service.route("POST", "/v1/messages").respond(
        200, json=MESSAGE, headers={"request-id": "req_1"}
    )
    return service


@pytest.fixture
def anthropic_client(anthropic_api: HttpService) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key="sk-ant-stub", base_url=anthropic_api.url, max_retries=2
    ) as client:
        yield client


def ask_openai(client: openai.OpenAI) -> str | None:
    reply = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hello"}]
    )
    return reply.choices[0].message.content


def ask_claude(client: anthropic.Anthropic) -> str:
    reply = client.messages.create(
        model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
    )
    block = reply.content[0]
    assert block.type == "text"
    return block.text
