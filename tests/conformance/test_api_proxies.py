"""The Toxiproxy HTTP API, call by call: ``/version``, ``/proxies`` and ``/populate``,
with exact status codes and JSON bodies.

As a real Toxiproxy 2.12.0 answers (``support`` says how closely).
"""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING, Any

import pytest

from .support import (
    PROXY_EXISTS,
    PROXY_KEYS,
    PROXY_NOT_FOUND,
    assert_bad_request_body,
    port_of,
    refusing_address,
    shape,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conftest import Api, Connector, EchoServer


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
    # Toxiproxy's Proxy.Update (proxy.go) stops the proxy, then listens at the new address,
    # so port 0 may get the port just freed back from the OS: 8 of 39,454 moves did on the
    # embedded engine here (run 12 of a stress series failed on one).  That is a move all
    # the same, so the test moves again until the port differs (five in a row: about 1 in 10^18).
    for _ in range(5):
        response = api.patch(f"/proxies/{proxy['name']}", {"listen": "127.0.0.1:0"})
        assert response.status_code == 200
        moved = response.json()
        assert port_of(moved["listen"]) > 0
        connect(moved).round_trip(b"hello")
        if moved["listen"] != proxy["listen"]:
            break
    assert moved["listen"] != proxy["listen"], "five moves to port 0 kept the same port"
    connect.assert_refused(proxy)


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
