"""The Toxiproxy HTTP API, call by call: exact status codes and JSON bodies.

Expectations are what a real Toxiproxy 2.12.0 answers; the embedded engine must answer
the same.  Where the real server's message comes from Go itself (JSON decoder and
``net.Listen`` errors), only its stable prefix or gist is pinned.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Api, Connector, EchoServer

PROXY_KEYS = {"name", "listen", "upstream", "enabled", "toxics"}
TOXIC_KEYS = {"name", "type", "stream", "toxicity", "attributes"}

PROXY_NOT_FOUND = {"error": "proxy not found", "status": 404}
TOXIC_NOT_FOUND = {"error": "toxic not found", "status": 404}
PROXY_EXISTS = {"error": "proxy already exists", "status": 409}
TOXIC_EXISTS = {"error": "toxic already exists", "status": 409}
INVALID_TOXIC_TYPE = {"error": "invalid toxic type", "status": 400}
INVALID_STREAM = {
    "error": "stream was invalid, can be either upstream or downstream",
    "status": 400,
}

DEFAULT_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},  # Toxiproxy's internal pass-through toxic is a valid type too
}


def shape(proxy: dict[str, Any]) -> dict[str, Any]:
    """The proxy object without Toxiproxy's stray ``Logger`` key, which clients ignore."""
    return {key: value for key, value in proxy.items() if key != "Logger"}


def assert_bad_request_body(response: Any) -> None:
    """400 whose message starts ``bad request body: `` (the rest is Go's decoder error)."""
    __tracebackhide__ = True
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400, body
    assert body["error"].startswith("bad request body: "), body


def port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


@contextlib.contextmanager
def refusing_address() -> Iterator[str]:
    """An address that refuses connections (bound, never listening) while the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


# -- /version ----------------------------------------------------------------------


def test_version_answers_json_with_the_version_string(api: Api, backend: str) -> None:
    response = api.get("/version")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"version"}
    if backend == "toxiproxy":
        assert body == {"version": "2.12.0"}
    else:
        assert isinstance(body["version"], str) and body["version"].startswith("2."), body


# -- /proxies ----------------------------------------------------------------------


def test_create_proxy_answers_201_with_the_port_it_bound(
    api: Api, echo: EchoServer, connect: Connector
) -> None:
    name = api.name()
    response = api.post(
        "/proxies", {"name": name, "upstream": echo.address, "listen": "127.0.0.1:0"}
    )

    assert response.status_code == 201, response.text
    proxy = shape(response.json())
    host, port = proxy.pop("listen").rsplit(":", 1)
    assert proxy == {"name": name, "upstream": echo.address, "enabled": True, "toxics": []}
    assert host == "127.0.0.1" and int(port) > 0
    assert connect(f"127.0.0.1:{port}").round_trip(b"hello") < 1.0


def test_create_proxy_without_listen_binds_a_free_port(
    api: Api, echo: EchoServer, connect: Connector
) -> None:
    """Toxiproxy listens on every interface then; 127.0.0.1 reaches it."""
    response = api.post("/proxies", {"name": api.name(), "upstream": echo.address})

    assert response.status_code == 201, response.text
    port = port_of(response.json()["listen"])
    assert port > 0
    connect(f"127.0.0.1:{port}").round_trip(b"hello")


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "listen", [None, "", ":0", "0.0.0.0:0", "[::]:0"], ids=["none", "empty", "port", "v4", "v6"]
)
def test_a_listen_without_a_host_or_with_a_wildcard_is_every_interface_of_both_families(
    api: Api, echo: EchoServer, connect: Connector, listen: str | None
) -> None:
    """Go listens on one dual-stack socket, reported as ``[::]:PORT``: IPv4 and IPv6 clients
    both reach it.  The engine bound 127.0.0.1 for the first three, IPv4 alone for
    ``0.0.0.0`` and IPv6 alone for ``[::]``, so a proxy meant for another host or a
    container was out of its reach."""
    body = {"name": api.name(), "upstream": echo.address}
    if listen is not None:
        body["listen"] = listen
    response = api.post("/proxies", body)

    assert response.status_code == 201, response.text
    bound = response.json()["listen"]
    assert re.fullmatch(r"\[::\]:[1-9][0-9]*", bound), bound
    port = port_of(bound)
    connect(f"127.0.0.1:{port}").round_trip(b"over IPv4")
    if _has_ipv6_loopback():
        connect(f"[::1]:{port}").round_trip(b"over IPv6")


def test_create_disabled_proxy_keeps_the_listen_it_was_given(
    api: Api, echo: EchoServer, connect: Connector
) -> None:
    """A proxy created disabled binds nothing, so ``:0`` stays ``:0`` until it is enabled."""
    proxy = api.create_proxy(echo.address, enabled=False)

    assert shape(proxy) == {
        "name": api.name(),
        "listen": "127.0.0.1:0",
        "upstream": echo.address,
        "enabled": False,
        "toxics": [],
    }
    response = api.patch(f"/proxies/{api.name()}", {"enabled": True})
    assert response.status_code == 200
    enabled = response.json()
    assert enabled["enabled"] is True and port_of(enabled["listen"]) > 0
    connect(enabled).round_trip(b"hello")


def test_create_duplicate_proxy_answers_409_and_keeps_the_first(api: Api, echo: EchoServer) -> None:
    first = api.create_proxy(echo.address)

    response = api.post(
        "/proxies", {"name": api.name(), "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}
    )

    assert (response.status_code, response.json()) == (409, PROXY_EXISTS)
    assert api.get(f"/proxies/{api.name()}").json() == first


@pytest.mark.parametrize(
    "body",
    ['{"name": "x", ', "", "[]", '{"name": 5, "upstream": "127.0.0.1:1"}', "nonsense"],
    ids=["truncated", "empty", "array", "wrong-type", "not-json"],
)
def test_create_proxy_with_a_bad_body_answers_400(api: Api, body: str) -> None:
    assert_bad_request_body(api.post("/proxies", data=body))


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        ({"upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}, "name"),
        ({"name": "", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"}, "name"),
        ({"name": "NAME", "listen": "127.0.0.1:0"}, "upstream"),
        ({"name": "NAME", "upstream": "", "listen": "127.0.0.1:0"}, "upstream"),
    ],
    ids=["no-name", "empty-name", "no-upstream", "empty-upstream"],
)
def test_create_proxy_without_a_required_field_answers_400(
    api: Api, body: dict[str, str], missing: str
) -> None:
    if body.get("name"):
        body = {**body, "name": api.name()}

    response = api.post("/proxies", body)

    assert response.status_code == 400
    assert response.json() == {"error": f"missing required field: {missing}", "status": 400}
    assert api.name() not in api.get("/proxies").json()


def test_create_proxy_on_a_port_in_use_answers_500_and_creates_nothing(
    api: Api, echo: EchoServer
) -> None:
    """The message is the OS bind error, as Go words it."""
    taken = api.create_proxy(echo.address, label="first")["listen"]

    response = api.post(
        "/proxies", {"name": api.name("second"), "upstream": echo.address, "listen": taken}
    )

    assert response.status_code == 500, response.text
    assert response.json() == {
        "error": f"listen tcp {taken}: bind: address already in use",
        "status": 500,
    }
    assert api.get(f"/proxies/{api.name('second')}").status_code == 404


def test_create_proxy_with_an_unusable_listen_answers_500(api: Api, echo: EchoServer) -> None:
    response = api.post(
        "/proxies", {"name": api.name(), "upstream": echo.address, "listen": "nonsense"}
    )

    assert response.status_code == 500, response.text
    assert response.json()["status"] == 500
    assert api.get(f"/proxies/{api.name()}").status_code == 404


def test_proxy_index_maps_names_to_proxies_with_their_toxics(api: Api, echo: EchoServer) -> None:
    first = api.create_proxy(echo.address, label="a")
    second = api.create_proxy(echo.address, label="b", enabled=False)
    toxic = api.add_toxic(first["name"], "latency", attributes={"latency": 100})

    response = api.get("/proxies")

    assert response.status_code == 200
    index = {name: proxy for name, proxy in response.json().items() if name.startswith(api.prefix)}
    assert {name: shape(proxy) for name, proxy in index.items()} == {
        first["name"]: {**shape(first), "toxics": [toxic]},
        second["name"]: shape(second),
    }


def test_show_proxy_answers_the_proxy_object(api: Api, proxy: dict[str, Any]) -> None:
    toxic = api.add_toxic(proxy["name"], "bandwidth", attributes={"rate": 5})

    response = api.get(f"/proxies/{proxy['name']}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) - {"Logger"} == PROXY_KEYS
    assert shape(body) == {**shape(proxy), "toxics": [toxic]}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/proxies/{p}", None),
        ("PATCH", "/proxies/{p}", '{"enabled": false}'),
        ("POST", "/proxies/{p}", '{"enabled": false}'),
        ("PATCH", "/proxies/{p}", "{bad json"),
        ("DELETE", "/proxies/{p}", None),
        ("GET", "/proxies/{p}/toxics", None),
        ("POST", "/proxies/{p}/toxics", '{"type": "latency"}'),
        ("GET", "/proxies/{p}/toxics/latency_downstream", None),
        ("PATCH", "/proxies/{p}/toxics/latency_downstream", "{}"),
        ("POST", "/proxies/{p}/toxics/latency_downstream", "{}"),
        ("DELETE", "/proxies/{p}/toxics/latency_downstream", None),
    ],
)
def test_unknown_proxy_answers_404(api: Api, method: str, path: str, body: str | None) -> None:
    response = api.request(method, path.format(p=api.name("missing")), data=body)

    assert (response.status_code, response.json()) == (404, PROXY_NOT_FOUND)


# -- /proxies/{proxy} updates --------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "POST"])
def test_disabling_a_proxy_closes_its_connections_and_its_listener(
    api: Api, proxy: dict[str, Any], connect: Connector, method: str
) -> None:
    """POST is Toxiproxy's deprecated spelling of PATCH and still works."""
    held = connect(proxy)
    held.round_trip(b"hello")

    response = api.request(method, f"/proxies/{proxy['name']}", json={"enabled": False})

    assert response.status_code == 200, response.text
    assert shape(response.json()) == {**shape(proxy), "enabled": False}
    assert held.read_until_closed().how == "eof"
    connect.assert_refused(proxy)

    response = api.request(method, f"/proxies/{proxy['name']}", json={"enabled": True})

    assert response.status_code == 200, response.text
    assert shape(response.json()) == shape(proxy)  # the same port again
    connect(proxy).round_trip(b"again")


def test_patch_with_an_empty_body_changes_nothing(api: Api, proxy: dict[str, Any]) -> None:
    response = api.patch(f"/proxies/{proxy['name']}", {})

    assert response.status_code == 200
    assert shape(response.json()) == shape(proxy)


def test_patch_ignores_a_new_name(api: Api, proxy: dict[str, Any]) -> None:
    response = api.patch(f"/proxies/{proxy['name']}", {"name": api.name("renamed")})

    assert response.status_code == 200
    assert shape(response.json()) == shape(proxy)
    assert api.get(f"/proxies/{api.name('renamed')}").status_code == 404


def test_patch_upstream_restarts_the_proxy_towards_the_new_upstream(
    api: Api,
    proxy: dict[str, Any],
    start_echo: Callable[[], EchoServer],
    connect: Connector,
) -> None:
    """Changing upstream or listen stops the proxy, closing open connections, and starts it again."""
    other = start_echo()
    held = connect(proxy)
    held.round_trip(b"hello")

    response = api.patch(f"/proxies/{proxy['name']}", {"upstream": other.address})

    assert response.status_code == 200
    assert shape(response.json()) == {**shape(proxy), "upstream": other.address}
    assert held.read_until_closed().how == "eof"
    connect(proxy).round_trip(b"to the other one")
    assert other.connection(0).received == b"to the other one"


def test_patch_listen_moves_the_proxy_to_a_new_port(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    response = api.patch(f"/proxies/{proxy['name']}", {"listen": "127.0.0.1:0"})

    assert response.status_code == 200
    moved = response.json()
    assert moved["listen"] != proxy["listen"] and port_of(moved["listen"]) > 0
    connect.assert_refused(proxy)
    connect(moved).round_trip(b"hello")


@pytest.mark.parametrize(
    "body", ["{bad json", '{"enabled": "yes"}'], ids=["not-json", "wrong-type"]
)
def test_patch_with_a_bad_body_answers_400(api: Api, proxy: dict[str, Any], body: str) -> None:
    assert_bad_request_body(api.patch(f"/proxies/{proxy['name']}", data=body))
    assert shape(api.get(f"/proxies/{proxy['name']}").json()) == shape(proxy)


def test_delete_proxy_answers_204_closes_connections_and_frees_the_port(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    held = connect(proxy)
    held.round_trip(b"hello")

    response = api.delete(f"/proxies/{proxy['name']}")

    assert (response.status_code, response.content) == (204, b"")
    assert held.read_until_closed().how == "eof"
    connect.assert_refused(proxy)
    assert (api.get(f"/proxies/{proxy['name']}").json()) == PROXY_NOT_FOUND
    again = api.delete(f"/proxies/{proxy['name']}")
    assert (again.status_code, again.json()) == (404, PROXY_NOT_FOUND)


def test_proxy_to_a_dead_upstream_accepts_then_closes(api: Api, connect: Connector) -> None:
    """No connect-phase fault exists: the client connects, then reads EOF."""
    with refusing_address() as dead:
        proxy = api.create_proxy(dead)

        closed = connect(proxy).read_until_closed()

    assert (closed.data, closed.how) == (b"", "eof")


# -- /populate ---------------------------------------------------------------------


def test_populate_creates_proxies_and_answers_201_with_them(
    api: Api, echo: EchoServer, connect: Connector
) -> None:
    response = api.post(
        "/populate",
        [
            {"name": api.name("a"), "upstream": echo.address, "listen": "127.0.0.1:0"},
            {
                "name": api.name("b"),
                "upstream": echo.address,
                "listen": "127.0.0.1:0",
                "enabled": False,
            },
        ],
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"proxies"}
    first, second = (shape(proxy) for proxy in body["proxies"])
    assert first.pop("listen").startswith("127.0.0.1:")
    assert first == {"name": api.name("a"), "upstream": echo.address, "enabled": True, "toxics": []}
    assert second == {
        "name": api.name("b"),
        "listen": "127.0.0.1:0",
        "upstream": echo.address,
        "enabled": False,
        "toxics": [],
    }
    assert shape(api.get(f"/proxies/{api.name('a')}").json()) == shape(body["proxies"][0])
    connect(body["proxies"][0]).round_trip(b"hello")


def test_populate_leaves_an_identical_proxy_alone(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """Same listen (as bound) and upstream: toxics, state and open connections survive,
    even though the entry says ``enabled: false``."""
    held = connect(proxy)
    toxic = api.add_toxic(proxy["name"], "latency", attributes={"latency": 1})
    entry = {**shape(proxy), "enabled": False}
    del entry["toxics"]

    response = api.post("/populate", [entry])

    assert response.status_code == 201, response.text
    assert [shape(p) for p in response.json()["proxies"]] == [{**shape(proxy), "toxics": [toxic]}]
    assert shape(api.get(f"/proxies/{proxy['name']}").json()) == {**shape(proxy), "toxics": [toxic]}
    held.round_trip(b"still here")


def test_populate_replaces_a_proxy_that_differs(
    api: Api,
    proxy: dict[str, Any],
    start_echo: Callable[[], EchoServer],
    connect: Connector,
) -> None:
    other = start_echo()
    held = connect(proxy)
    held.round_trip(b"hello")
    api.add_toxic(proxy["name"], "latency", attributes={"latency": 1})

    response = api.post(
        "/populate", [{"name": proxy["name"], "upstream": other.address, "listen": proxy["listen"]}]
    )

    assert response.status_code == 201, response.text
    replaced = {**shape(proxy), "upstream": other.address, "toxics": []}
    assert [shape(p) for p in response.json()["proxies"]] == [replaced]
    assert shape(api.get(f"/proxies/{proxy['name']}").json()) == replaced
    assert held.read_until_closed().how == "eof"
    connect(proxy).round_trip(b"new")
    assert other.connection(0).received == b"new"


def test_populate_with_an_empty_list_answers_201_with_null(api: Api) -> None:
    response = api.post("/populate", [])

    assert (response.status_code, response.json()) == (201, {"proxies": None})


@pytest.mark.parametrize(
    ("second", "error"),
    [
        ({"upstream": "127.0.0.1:1"}, "missing required field: name at proxy 2"),
        ({"name": "SECOND"}, "missing required field: upstream at proxy 2"),
    ],
    ids=["name", "upstream"],
)
def test_populate_checks_every_entry_before_creating_any(
    api: Api, echo: EchoServer, second: dict[str, str], error: str
) -> None:
    entries = [{"name": api.name("a"), "upstream": echo.address, "listen": "127.0.0.1:0"}, second]
    if "name" in second:
        entries[1] = {**second, "name": api.name("b")}

    response = api.post("/populate", entries)

    assert response.status_code == 400
    assert response.json() == {"error": error, "status": 400, "proxies": None}
    assert api.get(f"/proxies/{api.name('a')}").status_code == 404


@pytest.mark.parametrize("body", ["{}", "[", "nonsense"], ids=["object", "truncated", "not-json"])
def test_populate_with_a_bad_body_answers_400_with_null_proxies(api: Api, body: str) -> None:
    response = api.post("/populate", data=body)

    assert_bad_request_body(response)
    assert response.json()["proxies"] is None


def test_populate_stops_at_the_first_failure_and_keeps_what_it_made(
    api: Api, echo: EchoServer
) -> None:
    taken = api.create_proxy(echo.address, label="taken")["listen"]

    response = api.post(
        "/populate",
        [
            {"name": api.name("a"), "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": api.name("b"), "upstream": echo.address, "listen": taken},
            {"name": api.name("c"), "upstream": echo.address, "listen": "127.0.0.1:0"},
        ],
    )

    assert response.status_code == 500, response.text
    body = response.json()
    assert body["status"] == 500
    assert body["error"] == f"listen tcp {taken}: bind: address already in use"
    assert [p["name"] for p in body["proxies"]] == [api.name("a")]
    assert api.get(f"/proxies/{api.name('a')}").status_code == 200
    assert api.get(f"/proxies/{api.name('b')}").status_code == 404
    assert api.get(f"/proxies/{api.name('c')}").status_code == 404


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


# -- the rest of the HTTP surface --------------------------------------------------


def test_metrics_count_the_bytes_each_way_in_prometheus_text(
    api: Api, proxy: dict[str, Any], connect: Connector
) -> None:
    """Toxiproxy's byte counters (the real server runs with -proxy-metrics)."""
    conn = connect(proxy["listen"])
    conn.round_trip(b"x" * 1000)
    conn.close()
    labels = f'proxy="{proxy["name"]}",upstream="{proxy["upstream"]}"'

    def counters() -> dict[str, float]:
        response = api.get("/metrics")
        assert response.status_code == 200, response.text
        found = {}
        for line in response.text.splitlines():
            if not line.startswith("toxiproxy_proxy_") or proxy["name"] not in line:
                continue
            if "_bytes_total{" not in line:
                continue  # the engine's own connection gauges
            name_and_labels, value = line.rsplit(" ", 1)
            name = name_and_labels.split("{", 1)[0]
            direction = name_and_labels.split('direction="', 1)[1].split('"', 1)[0]
            assert labels in name_and_labels.replace(f',listener="{proxy["listen"]}"', "")
            found[f"{name}:{direction}"] = float(value)
        return found

    # The real server counts a connection's bytes when it ends: wait for that.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        seen = counters()
        if len(seen) == 4 and all(value >= 1000 for value in seen.values()):
            break
        time.sleep(0.01)
    assert seen == {
        "toxiproxy_proxy_received_bytes_total:upstream": 1000,
        "toxiproxy_proxy_sent_bytes_total:upstream": 1000,
        "toxiproxy_proxy_received_bytes_total:downstream": 1000,
        "toxiproxy_proxy_sent_bytes_total:downstream": 1000,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [("DELETE", "/proxies"), ("PUT", "/proxies/{p}"), ("GET", "/reset"), ("GET", "/populate")],
)
def test_wrong_method_on_a_known_path_answers_405(api: Api, method: str, path: str) -> None:
    assert api.request(method, path.format(p=api.name())).status_code == 405


def test_browser_user_agents_are_refused_with_403(api: Api) -> None:
    """Toxiproxy's guard against cross-site requests from a browser."""
    response = api.request("GET", "/version", headers={"User-Agent": "Mozilla/5.0"})

    assert response.status_code == 403
    assert response.text.strip() == "User agent not allowed"


def test_two_hundred_clients_connecting_at_once_are_all_answered(api_url: str) -> None:
    """Toxiproxy listens with Go's backlog (somaxconn); the engine's API once listened with
    the standard library's 5, and of 200 clients connecting at once most waited for a
    second SYN or were reset.  All 200 connect (non-blocking, at once), ask, and are
    answered, each within the conformance suite's socket timeout."""
    from .conftest import IO_TIMEOUT

    host, port = api_url.removeprefix("http://").rsplit(":", 1)
    clients = [socket.socket() for _ in range(200)]
    try:
        for client in clients:
            client.setblocking(False)
            client.connect_ex((host, int(port)))
        answers = []
        for client in clients:
            client.settimeout(IO_TIMEOUT)
            client.sendall(b"GET /version HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        for client in clients:
            answer = b""
            with contextlib.suppress(OSError):  # a reset ends the answer
                while chunk := client.recv(65536):
                    answer += chunk
            answers.append(answer.split(b"\r\n", 1)[0])
    finally:
        for client in clients:
            client.close()

    assert answers == [b"HTTP/1.1 200 OK"] * 200


@pytest.mark.parametrize("label", ["a b", "grüße", "50%"], ids=["space", "non-ascii", "percent"])
def test_a_name_a_url_must_encode_is_found_at_its_encoded_path(
    api: Api, echo: EchoServer, label: str
) -> None:
    """Toxiproxy routes on the decoded path (gorilla/mux matches ``URL.Path``): a proxy or
    toxic named ``a b`` lives at ``/proxies/a%20b``.  The engine once routed on the raw
    path: created (201), then 404 at every address."""
    from urllib.parse import quote

    name = api.name(label)
    created = api.post(
        "/proxies", {"name": name, "upstream": echo.address, "listen": "127.0.0.1:0"}
    )
    assert created.status_code == 201, created.text
    path = f"/proxies/{quote(name, safe='')}"

    assert api.get(path).json()["name"] == name
    api.add_toxic(quote(name, safe=""), "latency", name=label, attributes={"latency": 1})
    toxic = api.get(f"{path}/toxics/{quote(label, safe='')}")
    assert (toxic.status_code, toxic.json()["name"]) == (200, label)
    assert api.delete(f"{path}/toxics/{quote(label, safe='')}").status_code == 204
    assert api.delete(path).status_code == 204
    assert name not in api.get("/proxies").json()


@pytest.mark.parametrize(
    ("target", "status_line", "body"),
    [
        (b"/proxies/50%zz", b"HTTP/1.1 400 Bad Request", b"400 Bad Request"),
        (b"/proxies/a%2Fb", b"HTTP/1.1 404 Not Found", b"404 page not found\n"),
    ],
    ids=["not-an-escape", "encoded-slash"],
)
def test_a_path_that_decodes_badly_or_across_a_slash_is_refused_as_go_refuses_it(
    api_url: str, connect: Connector, target: bytes, status_line: bytes, body: bytes
) -> None:
    """A ``%`` that starts no escape fails Go's URL parsing; ``%2F`` decodes to a slash,
    so ``/proxies/a%2Fb`` is no proxy's path but two segments no route has."""
    client = connect(api_url.removeprefix("http://"))
    client.send(b"GET " + target + b" HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
    answer = client.read_until_closed().data

    head, _, rest = answer.partition(b"\r\n\r\n")
    assert (head.split(b"\r\n", 1)[0], rest) == (status_line, body)


REQUEST_ID = re.compile(r"[0-9a-v]{20}")
"""Toxiproxy's request ids (github.com/rs/xid): 20 characters of lowercase base32hex."""


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "body", "content_type", "stamped"),
    [
        (
            "GET",
            "/version",
            {},
            200,
            b'{"version": "2.12.0"}\n',
            "application/json;charset=utf-8",
            True,
        ),
        (
            "GET",
            "/proxies/nope",
            {},
            404,
            b'{"error":"proxy not found","status":404}\n',
            "text/plain; charset=utf-8",
            True,
        ),
        ("GET", "/nope", {}, 404, b"404 page not found\n", "text/plain; charset=utf-8", False),
        ("PUT", "/version", {}, 405, b"", None, False),
        (
            "GET",
            "/version",
            {"User-Agent": "Mozilla/5.0"},
            403,
            b"User agent not allowed\n",
            "text/plain; charset=utf-8",
            True,
        ),
        (
            "GET",
            "/nope",
            {"User-Agent": "Mozilla/5.0"},
            404,
            b"404 page not found\n",
            "text/plain; charset=utf-8",
            False,
        ),
    ],
    ids=["version", "api-error", "no-route", "no-method", "browser", "browser-no-route"],
)
def test_answers_carry_toxiproxys_bytes_and_headers(
    api: Api,
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    body: bytes,
    content_type: str | None,
    stamped: bool,
) -> None:
    """What Toxiproxy 2.12 sends, read off it: errors by Go's ``http.Error`` (text, a
    newline, ``nosniff``); ``/version`` written by hand; a request id from the middleware
    on its routes, which the browser guard is one of (so an unknown path is a 404 to a
    browser too)."""
    response = api.request(method, path, headers=headers)

    assert (response.status_code, response.content) == (status, body)
    assert response.headers.get("Content-Type") == content_type
    nosniff = content_type == "text/plain; charset=utf-8"
    assert (response.headers.get("X-Content-Type-Options") == "nosniff") == nosniff
    request_id = response.headers.get("X-Toxiproxy-Request-Id")
    assert (request_id is not None and REQUEST_ID.fullmatch(request_id) is not None) == stamped


def test_a_populate_error_is_json_as_toxiproxy_writes_it(api: Api) -> None:
    """``/populate`` answers its errors as JSON (with the proxies made so far), not through
    ``http.Error`` as the other routes do."""
    response = api.post("/populate", [{"name": "", "upstream": "127.0.0.1:1"}])

    assert response.status_code == 400
    assert response.content == (
        b'{"error":"missing required field: name at proxy 1","status":400,"proxies":null}'
    )
    assert response.headers["Content-Type"] == "application/json"
    assert "X-Content-Type-Options" not in response.headers
    assert REQUEST_ID.fullmatch(response.headers["X-Toxiproxy-Request-Id"])


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        (
            "/proxies",
            {"enabled": "yes"},
            "json: cannot unmarshal string into Go struct field Proxy.enabled of type bool",
        ),
        (
            "/proxies",
            {"upstream": 5},
            "json: cannot unmarshal number into Go struct field Proxy.upstream of type string",
        ),
        (
            "/proxies",
            {"listen": "127.0.0.1:99999", "upstream": "127.0.0.1:1"},
            None,  # filled with the port below
        ),
        (
            "/proxies/{proxy}/toxics",
            {"type": "latency", "toxicity": "x"},
            "json: cannot unmarshal string into Go struct field ToxicWrapper.toxicity "
            "of type float32",
        ),
        (
            "/proxies/{proxy}/toxics",
            {"type": "latency", "toxicity": 1e40},
            "json: cannot unmarshal number 1e+40 into Go struct field ToxicWrapper.toxicity "
            "of type float32",
        ),
        (
            "/proxies/{proxy}/toxics",
            {"type": "latency", "attributes": {"latency": 5.5}},
            "json: cannot unmarshal number 5.5 into Go struct field "
            "LatencyToxic.attributes.latency of type int64",
        ),
        (
            "/proxies/{proxy}/toxics",
            {"type": "slicer", "attributes": {"delay": "1"}},
            "json: cannot unmarshal string into Go struct field "
            "SlicerToxic.attributes.delay of type int",
        ),
    ],
    ids=["bool", "string", "port", "float32", "float32-range", "int64", "int"],
)
def test_a_field_of_the_wrong_type_is_refused_in_gos_words(
    api: Api, echo: EchoServer, path: str, body: dict[str, Any], error: str | None
) -> None:
    """Go's decoder names the struct field and its Go type, and quotes a number's literal
    only where a number was wanted (``requests`` writes 1e40 as ``1e+40``)."""
    proxy = api.create_proxy(echo.address)["name"]
    if path == "/proxies":
        body = {"name": api.name("wrong"), **body}
    response = api.post(path.format(proxy=proxy), body)

    if error is None:
        assert response.status_code == 500
        assert response.json()["error"] == "listen tcp: address 99999: invalid port"
    else:
        assert response.status_code == 400
        assert response.json()["error"] == f"bad request body: {error}"


@pytest.mark.parametrize(
    ("toxicity", "written"), [(1, b"1"), (1.0, b"1"), (0.3, b"0.3"), (0.123456789, b"0.12345679")]
)
def test_toxicity_is_written_as_go_writes_a_float32(
    api: Api, echo: EchoServer, toxicity: float, written: bytes
) -> None:
    proxy = api.create_proxy(echo.address)["name"]
    response = api.post(f"/proxies/{proxy}/toxics", {"type": "latency", "toxicity": toxicity})

    assert response.status_code == 200, response.text
    assert response.content.endswith(b'"toxicity":' + written + b"}")


def test_the_proxy_list_is_written_in_name_order(api: Api, echo: EchoServer) -> None:
    """Go writes a map's keys sorted; the engine wrote proxies in the order they came."""
    for label in ("b", "a", "C"):
        api.create_proxy(echo.address, label=label)

    listed = [name for name in api.get("/proxies").json() if name.startswith(api.prefix)]

    assert listed == [api.name("C"), api.name("a"), api.name("b")]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"name":', "unexpected EOF"),
        (b"nojson", "invalid character 'o' in literal null (expecting 'u')"),
        (b'{"name" 1}', "invalid character '1' after object key"),
        (b'{"name":"a" "b"}', "invalid character '\"' after object key:value pair"),
        (b"{name:1}", "invalid character 'n' looking for beginning of object key string"),
        (b'{"a":"x\ny"}', "invalid character '\\n' in string literal"),
        (b'{"a":"\\q"}', "invalid character 'q' in string escape code"),
        (b'{"a":1.e5}', "invalid character 'e' after decimal point in numeric literal"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b"NaN", "invalid character 'N' looking for beginning of value"),
        (b'{"a":\xc3\xbc}', "invalid character 'Ã' looking for beginning of value"),
        (b"[]", "json: cannot unmarshal array into Go value of type toxiproxy.Proxy"),
    ],
    ids=[
        "eof",
        "literal",
        "after-key",
        "after-pair",
        "key-string",
        "control",
        "escape",
        "decimal",
        "trailing-comma",
        "array",
        "nan",
        "utf8-byte",
        "not-an-object",
    ],
)
def test_a_malformed_body_is_refused_in_gos_words(api: Api, body: bytes, error: str) -> None:
    """Toxiproxy reads a body with Go's json.Decoder and answers its error as it is: the
    first byte that cannot continue the value, and where (a byte, not a character: the
    first byte of ``ü`` is ``Ã``).  The engine gave Python's words and an offset."""
    response = api.request("POST", "/proxies", data=body)

    assert response.status_code == 400
    assert response.json() == {"error": f"bad request body: {error}", "status": 400}
