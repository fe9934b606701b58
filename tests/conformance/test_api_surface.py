"""The rest of the Toxiproxy HTTP API's surface: metrics, methods, user agents, many
clients at once, encoded names, and the answers' bytes and headers.

As a real Toxiproxy 2.12.0 answers (``support`` says how closely).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from .conftest import Api, Connector, EchoServer


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


@pytest.mark.parametrize(
    ("method", "target", "location"),
    [
        ("GET", b"/proxies/..?x=1", b"/?x=1"),
        ("DELETE", b"/proxies/%2E%2E", b"/"),
        ("POST", b"/proxies/../reset", b"/reset"),
        ("GET", b"//proxies", b"/proxies"),
        ("GET", b"/proxies/a%2F..%2Fb", b"/proxies/b"),
        ("GET", b"///x//y/./", b"/x/y/"),
        (
            "GET",
            b"/proxies/a%3Fb/../d%3F%C3%BC!*~$&+,:;=@x?",
            b"/proxies/d%3F%C3%BC%21%2A~$&+,:;=@x?",
        ),
        ("HEAD", b"/proxies/..", b"/"),
        ("GET", b"/a/../%FF", b"/%FF"),
        ("GET", b"*", b"/%2A"),
        ("GET", b"http://api/proxies/..?q=1", b"http://api/?q=1"),
        ("GET", b"HTTP://API:80", b"http://API:80/"),
    ],
    ids=[
        "dot-dot-query",
        "encoded-dots",
        "dot-dot-to-route",
        "double-slash",
        "encoded-slashes",
        "trailing-slash-kept",
        "escaped-as-go",
        "head",
        "not-utf-8",
        "asterisk",
        "absolute-form",
        "absolute-form-no-path",
    ],
)
def test_a_path_that_cleaning_changes_is_moved_to_the_cleaned_path(
    api_url: str, connect: Connector, method: str, target: bytes, location: bytes
) -> None:
    """Before any route, Toxiproxy's router (gorilla/mux 1.8, ``Router.ServeHTTP`` and
    ``cleanPath``) cleans the decoded path as Go's ``path.Clean`` does and, where that
    changes it, answers 301 to the cleaned path as ``URL.String`` writes it: escaped,
    query kept, no body and no request id (its middlewares run on routes only).  The
    engine routed the path as it came (a 404, or a proxy named ``..`` served)."""
    client = connect(api_url.removeprefix("http://"))
    client.send(
        method.encode()
        + b" "
        + target
        + b" HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    head, _, body = client.read_until_closed().data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)

    assert status == b"HTTP/1.1 301 Moved Permanently"
    assert headers[b"Location"] == location
    assert b"X-Toxiproxy-Request-Id" not in headers
    # Go writes no length for an empty answer to HEAD.
    assert headers.get(b"Content-Length") == (None if method == "HEAD" else b"0")
    assert body == b""


@pytest.mark.parametrize(
    ("target", "status", "length"),
    [(b"/version", b"405 Method Not Allowed", None), (b"/nope", b"404 Not Found", b"19")],
    ids=["empty", "with-body"],
)
def test_a_head_answer_has_a_length_only_where_the_get_has_a_body(
    api_url: str, connect: Connector, target: bytes, status: bytes, length: bytes | None
) -> None:
    """Go's server writes no Content-Length for an empty answer to HEAD (a handler that
    wrote nothing), and the length of what it wrote otherwise; the engine wrote
    ``Content-Length: 0`` for the empty one."""
    client = connect(api_url.removeprefix("http://"))
    client.send(b"HEAD " + target + b" HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
    head, _, body = client.read_until_closed().data.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)

    assert (first, headers.get(b"Content-Length"), body) == (b"HTTP/1.1 " + status, length, b"")


@pytest.mark.parametrize("name", ["..", "a/.."])
def test_a_proxy_whose_path_cleaning_changes_is_created_and_never_reached(
    own_api_url: str, connect: Connector, echo: EchoServer, name: str
) -> None:
    """Toxiproxy takes any name, but a proxy named ``..`` (or ``a/..``, at
    ``/proxies/a%2F..``) has no address: cleaning moves every path to it elsewhere, so
    it can be listed but not shown, changed or deleted (hence a server of its own).
    Sent as raw bytes: HTTP clients remove a path's dot segments themselves."""
    from urllib.parse import quote

    url = own_api_url.rstrip("/")
    created = requests.post(
        f"{url}/proxies",
        json={"name": name, "upstream": echo.address, "listen": "127.0.0.1:0"},
        timeout=5,
    )
    assert created.status_code == 201, created.text
    target = f"/proxies/{quote(name, safe='')}".encode()
    for method in (b"GET", b"POST", b"DELETE"):
        client = connect(url.removeprefix("http://"))
        client.send(
            method
            + b" "
            + target
            + b" HTTP/1.1\r\nHost: api\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        status = client.read_until_closed().data.split(b"\r\n", 1)[0]
        assert status == b"HTTP/1.1 301 Moved Permanently", method
    assert name in requests.get(f"{url}/proxies", timeout=5).json()


@pytest.mark.parametrize(
    ("request_line", "status", "stamped"),
    [
        (b"OPTIONS * HTTP/1.1", b"HTTP/1.1 200 OK", False),
        (b"GET http://api/version HTTP/1.1", b"HTTP/1.1 200 OK", True),
    ],
    ids=["options-asterisk", "absolute-form"],
)
def test_targets_go_answers_without_a_plain_path(
    api_url: str, connect: Connector, request_line: bytes, status: bytes, stamped: bool
) -> None:
    """``OPTIONS *`` is answered by Go's server itself (200, empty, no route); a target in
    absolute form is routed on its path.  The engine answered both 404."""
    client = connect(api_url.removeprefix("http://"))
    client.send(request_line + b"\r\nHost: api\r\nConnection: close\r\n\r\n")
    head = client.read_until_closed().data.partition(b"\r\n\r\n")[0]
    first, *lines = head.split(b"\r\n")

    assert first == status
    assert any(line.startswith(b"X-Toxiproxy-Request-Id: ") for line in lines) == stamped


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
