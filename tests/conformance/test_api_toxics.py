"""The Toxiproxy HTTP API, call by call: a proxy's toxics and ``/reset``, with exact
status codes and JSON bodies.

As a real Toxiproxy 2.12.0 answers (``support`` says how closely).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from .support import (
    DEFAULT_ATTRIBUTES,
    INVALID_STREAM,
    INVALID_TOXIC_TYPE,
    TOXIC_EXISTS,
    TOXIC_KEYS,
    TOXIC_NOT_FOUND,
    assert_bad_request_body,
    shape,
)

if TYPE_CHECKING:
    from .conftest import Api, Connector, EchoServer


# -- /proxies/{proxy}/toxics -------------------------------------------------------


def test_new_proxy_has_an_empty_toxic_list(api: Api, proxy: dict[str, Any]) -> None:
    response = api.get(f"/proxies/{proxy['name']}/toxics")

    assert (response.status_code, response.json()) == (200, [])


@pytest.mark.parametrize("toxic_type", sorted(DEFAULT_ATTRIBUTES))
def test_create_toxic_answers_200_with_every_attribute_filled(
    api: Api, proxy: dict[str, Any], toxic_type: str
) -> None:
    response = api.post(f"/proxies/{proxy['name']}/toxics", {"type": toxic_type})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "attributes": DEFAULT_ATTRIBUTES[toxic_type],
        "name": f"{toxic_type}_downstream",
        "type": toxic_type,
        "stream": "downstream",
        "toxicity": 1,
    }


def test_create_toxic_names_it_after_type_and_stream(api: Api, proxy: dict[str, Any]) -> None:
    toxic = api.add_toxic(proxy["name"], "timeout", stream="upstream")

    assert (toxic["name"], toxic["stream"]) == ("timeout_upstream", "upstream")


def test_create_toxic_keeps_what_it_was_given_and_drops_unknown_attributes(
    api: Api, proxy: dict[str, Any]
) -> None:
    response = api.post(
        f"/proxies/{proxy['name']}/toxics",
        {
            "name": "slow",
            "type": "latency",
            "stream": "upstream",
            "toxicity": 0.5,
            "attributes": {"latency": 150, "jitter": 20, "bogus": 1},
        },
    )

    assert response.status_code == 200
    assert response.json() == {
        "attributes": {"latency": 150, "jitter": 20},
        "name": "slow",
        "type": "latency",
        "stream": "upstream",
        "toxicity": 0.5,
    }


def test_create_toxic_stores_out_of_range_values_unchecked(api: Api, proxy: dict[str, Any]) -> None:
    """Toxiproxy validates types, not ranges: negative latency and toxicity 2 are stored."""
    toxic = api.add_toxic(proxy["name"], "latency", toxicity=2, attributes={"latency": -5})

    assert (toxic["toxicity"], toxic["attributes"]) == (2, {"latency": -5, "jitter": 0})


def test_stream_is_matched_case_insensitively_and_kept_as_given(
    api: Api, proxy: dict[str, Any]
) -> None:
    toxic = api.add_toxic(proxy["name"], "latency", stream="UpStream")

    assert (toxic["name"], toxic["stream"]) == ("latency_UpStream", "UpStream")
    downstream = api.add_toxic(proxy["name"], "latency")
    toxics = api.get(f"/proxies/{proxy['name']}/toxics").json()
    assert toxics == [toxic, downstream]  # listed with the upstream toxics


def test_toxics_are_listed_upstream_first_then_in_order_added(
    api: Api, proxy: dict[str, Any]
) -> None:
    down_a = api.add_toxic(proxy["name"], "latency", name="a")
    up_b = api.add_toxic(proxy["name"], "latency", name="b", stream="upstream")
    down_c = api.add_toxic(proxy["name"], "slicer", name="c")
    up_d = api.add_toxic(proxy["name"], "bandwidth", name="d", stream="upstream")

    response = api.get(f"/proxies/{proxy['name']}/toxics")

    assert response.status_code == 200
    assert response.json() == [up_b, up_d, down_a, down_c]
    assert api.get(f"/proxies/{proxy['name']}").json()["toxics"] == [up_b, up_d, down_a, down_c]
    assert all(set(toxic) == TOXIC_KEYS for toxic in response.json())


def test_duplicate_toxic_name_answers_409_before_attributes_are_read(
    api: Api, proxy: dict[str, Any]
) -> None:
    existing = api.add_toxic(proxy["name"], "latency", attributes={"latency": 100})
    toxics = f"/proxies/{proxy['name']}/toxics"

    same_default_name = api.post(toxics, {"type": "latency"})
    same_name_other_stream = api.post(
        toxics, {"type": "timeout", "name": "latency_downstream", "stream": "upstream"}
    )
    bad_attributes = api.post(toxics, {"type": "latency", "attributes": {"latency": "slow"}})

    for response in (same_default_name, same_name_other_stream, bad_attributes):
        assert (response.status_code, response.json()) == (409, TOXIC_EXISTS)
    assert api.get(toxics).json() == [existing]


@pytest.mark.parametrize(
    "body",
    [{"type": "nope"}, {}, {"type": "nope", "name": "latency_downstream"}],
    ids=["unknown", "missing", "unknown-with-taken-name"],
)
def test_invalid_toxic_type_answers_400(
    api: Api, proxy: dict[str, Any], body: dict[str, str]
) -> None:
    """The type is checked before the name: a taken name with a bad type is a 400, not a 409."""
    api.add_toxic(proxy["name"], "latency")

    response = api.post(f"/proxies/{proxy['name']}/toxics", body)

    assert (response.status_code, response.json()) == (400, INVALID_TOXIC_TYPE)


@pytest.mark.parametrize("toxic_type", ["latency", "nope"])
def test_invalid_stream_answers_400_before_the_type_is_checked(
    api: Api, proxy: dict[str, Any], toxic_type: str
) -> None:
    response = api.post(
        f"/proxies/{proxy['name']}/toxics", {"type": toxic_type, "stream": "sideways"}
    )

    assert (response.status_code, response.json()) == (400, INVALID_STREAM)


@pytest.mark.parametrize(
    "body",
    [
        '{"type": "latency", "attributes": {"latency": "slow"}}',
        '{"type": "latency", "attributes": {"latency": 1.5}}',
        '{"type": "latency", "attributes": []}',
        '{"type": "latency", "toxicity": "1"}',
        '{"type": "latency", ',
        "nonsense",
    ],
    ids=["string", "float-for-int", "array", "string-toxicity", "truncated", "not-json"],
)
def test_bad_toxic_body_answers_400_and_adds_nothing(
    api: Api, proxy: dict[str, Any], body: str
) -> None:
    assert_bad_request_body(api.post(f"/proxies/{proxy['name']}/toxics", data=body))
    assert api.get(f"/proxies/{proxy['name']}/toxics").json() == []


# -- /proxies/{proxy}/toxics/{toxic} ------------------------------------------------


def test_show_toxic_answers_the_toxic_object(api: Api, proxy: dict[str, Any]) -> None:
    toxic = api.add_toxic(proxy["name"], "limit_data", attributes={"bytes": 7})

    response = api.get(f"/proxies/{proxy['name']}/toxics/limit_data_downstream")

    assert (response.status_code, response.json()) == (200, toxic)


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PATCH", "{}"), ("POST", "{}"), ("PATCH", "{bad json"), ("DELETE", None)],
    ids=["get", "patch", "post", "patch-bad-json", "delete"],
)
def test_unknown_toxic_answers_404(
    api: Api, proxy: dict[str, Any], method: str, body: str | None
) -> None:
    """The toxic is looked up before the body is read."""
    response = api.request(method, f"/proxies/{proxy['name']}/toxics/missing", data=body)

    assert (response.status_code, response.json()) == (404, TOXIC_NOT_FOUND)


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_update_toxic_merges_attributes_and_keeps_what_is_not_given(
    api: Api, proxy: dict[str, Any], method: str
) -> None:
    path = f"/proxies/{proxy['name']}/toxics/slow"
    api.add_toxic(proxy["name"], "latency", name="slow", attributes={"latency": 100, "jitter": 10})

    jitter = api.request(method, path, json={"attributes": {"jitter": 20}})
    toxicity = api.request(method, path, json={"toxicity": 0.25})

    assert jitter.status_code == 200
    assert jitter.json()["attributes"] == {"latency": 100, "jitter": 20}
    assert (toxicity.status_code, toxicity.json()) == (
        200,
        {
            "attributes": {"latency": 100, "jitter": 20},
            "name": "slow",
            "type": "latency",
            "stream": "downstream",
            "toxicity": 0.25,
        },
    )
    assert api.get(path).json() == toxicity.json()


def test_update_toxic_ignores_name_type_and_stream(api: Api, proxy: dict[str, Any]) -> None:
    toxic = api.add_toxic(proxy["name"], "latency", attributes={"latency": 100})

    response = api.patch(
        f"/proxies/{proxy['name']}/toxics/latency_downstream",
        {"name": "renamed", "type": "bandwidth", "stream": "upstream"},
    )

    assert (response.status_code, response.json()) == (200, toxic)
    assert api.get(f"/proxies/{proxy['name']}/toxics").json() == [toxic]


@pytest.mark.parametrize(
    "body",
    ['{"attributes": {"latency": "slow"}}', '{"toxicity": "high"}', "{bad json"],
    ids=["attribute", "toxicity", "not-json"],
)
def test_update_toxic_with_a_bad_body_answers_400(
    api: Api, proxy: dict[str, Any], body: str
) -> None:
    toxic = api.add_toxic(proxy["name"], "latency", attributes={"latency": 100})

    assert_bad_request_body(
        api.patch(f"/proxies/{proxy['name']}/toxics/latency_downstream", data=body)
    )
    assert api.get(f"/proxies/{proxy['name']}/toxics/latency_downstream").json() == toxic


def test_delete_toxic_answers_204_and_forgets_it(api: Api, proxy: dict[str, Any]) -> None:
    kept = api.add_toxic(proxy["name"], "latency", stream="upstream")
    api.add_toxic(proxy["name"], "latency")

    response = api.delete(f"/proxies/{proxy['name']}/toxics/latency_downstream")

    assert (response.status_code, response.content) == (204, b"")
    assert api.get(f"/proxies/{proxy['name']}/toxics").json() == [kept]
    again = api.delete(f"/proxies/{proxy['name']}/toxics/latency_downstream")
    assert (again.status_code, again.json()) == (404, TOXIC_NOT_FOUND)


# -- /reset ------------------------------------------------------------------------


def test_reset_answers_204_enables_every_proxy_and_drops_every_toxic(
    api: Api, echo: EchoServer, connect: Connector
) -> None:
    disabled = api.create_proxy(echo.address, label="disabled")
    poisoned = api.create_proxy(echo.address, label="poisoned")
    api.add_toxic(disabled["name"], "latency", attributes={"latency": 300})
    api.add_toxic(poisoned["name"], "timeout", stream="upstream")
    api.add_toxic(poisoned["name"], "limit_data", attributes={"bytes": 1})
    api.patch(f"/proxies/{disabled['name']}", {"enabled": False})

    response = api.post("/reset")

    assert (response.status_code, response.content) == (204, b"")
    for proxy in (disabled, poisoned):
        assert shape(api.get(f"/proxies/{proxy['name']}").json()) == shape(proxy)
        assert connect(proxy).round_trip(b"clean again") < 0.25


def test_proxies_and_toxics_are_written_byte_for_byte_as_toxiproxy_writes_them(
    api: Api, echo: EchoServer
) -> None:
    """Key order, spacing and numbers of every toxic type's default attributes and of the
    proxy that holds them, read off Toxiproxy 2.12 (Go writes a struct's fields in their
    order; upstream toxics are listed before downstream ones).  Only the proxy's listen
    port is masked, and the ``"Logger":{}`` the real server adds (README: an extension)."""
    name = api.create_proxy(echo.address)["name"]
    added = [
        api.request("POST", f"/proxies/{name}/toxics", json={"type": kind, "stream": stream})
        for kind, stream in [
            ("latency", "downstream"),
            ("bandwidth", "upstream"),
            ("slow_close", "upstream"),
            ("timeout", "upstream"),
            ("reset_peer", "upstream"),
            ("slicer", "upstream"),
            ("limit_data", "upstream"),
        ]
    ]
    toxics = [
        b'{"attributes":{"rate":0},"name":"bandwidth_upstream","type":"bandwidth",'
        b'"stream":"upstream","toxicity":1}',
        b'{"attributes":{"delay":0},"name":"slow_close_upstream","type":"slow_close",'
        b'"stream":"upstream","toxicity":1}',
        b'{"attributes":{"timeout":0},"name":"timeout_upstream","type":"timeout",'
        b'"stream":"upstream","toxicity":1}',
        b'{"attributes":{"timeout":0},"name":"reset_peer_upstream","type":"reset_peer",'
        b'"stream":"upstream","toxicity":1}',
        b'{"attributes":{"average_size":0,"size_variation":0,"delay":0},"name":"slicer_upstream",'
        b'"type":"slicer","stream":"upstream","toxicity":1}',
        b'{"attributes":{"bytes":0},"name":"limit_data_upstream","type":"limit_data",'
        b'"stream":"upstream","toxicity":1}',
        b'{"attributes":{"latency":0,"jitter":0},"name":"latency_downstream","type":"latency",'
        b'"stream":"downstream","toxicity":1}',
    ]
    shown = api.get(f"/proxies/{name}").content

    assert [answer.content for answer in added] == [toxics[-1], *toxics[:-1]]
    assert api.get(f"/proxies/{name}/toxics").content == b"[" + b",".join(toxics) + b"]"
    assert re.sub(rb"127\.0\.0\.1:\d+\"", b'127.0.0.1:PORT"', shown, count=1).replace(
        b'"Logger":{},', b""
    ) == (
        b'{"name":"'
        + name.encode()
        + b'","listen":"127.0.0.1:PORT","upstream":"'
        + echo.address.encode()
        + b'","enabled":true,"toxics":['
        + b",".join(toxics)
        + b"]}"
    )
