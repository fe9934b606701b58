"""The one adapter over toxiproxy-python.

toxiproxy-python keeps the server's host and port on a class, sends requests
without a timeout and on a new connection each time (1.3-2 ms a call, most of
a test's overhead), cannot update a toxic and returns nothing from
``add_toxic``.  Everything that talks to a Toxiproxy API goes through
:class:`ToxiproxyClient`, which fixes those gaps in one place: it binds a
private subclass of the library's ``APIConsumer`` to one server and one
keep-alive connection (about 0.5 ms a call), with a timeout on every request;
answers go through the library's ``validate_response`` and its exceptions
are mapped to ours.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import threading
from collections.abc import Callable
from typing import Any

from toxiproxy import exceptions as tp_exceptions
from toxiproxy.api import APIConsumer, validate_response

from .. import validate
from ..errors import BackendError

DEFAULT_TIMEOUT = 5.0


class ToxiproxyClient:
    """Talks to one Toxiproxy API (real server or embedded engine)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        host, port, _ = validate.http_url(
            url if "://" in url else f"http://{url}",
            "the Toxiproxy URL (e.g. http://127.0.0.1:8474)",
        )
        self.url = f"http://{host}:{port}"
        self.host = host
        self.timeout = timeout
        self._api = _bind(host, port)
        self.explain: Callable[[], str | None] = lambda: None
        """Why the server stopped answering, when its owner knows (a spawned server died)."""

    # -- low level -----------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            if method == "PATCH":
                # APIConsumer has no PATCH; the same connection and error mapping serve it.
                patched: Response = self._api.request("PATCH", path, **kwargs)
                return patched
            call = getattr(self._api, method.lower())
            return call(path, **kwargs)  # type: ignore[no-any-return]
        except (OSError, http.client.HTTPException) as exc:
            reason = self.explain()
            advice = reason or "check that it is running or choose another with --toxiproxy."
            raise BackendError(
                f"Toxiproxy at {self.url} did not answer {method} {path} "
                f"({exc.__class__.__name__}); {advice}"
            ) from exc
        except (
            tp_exceptions.ProxyExists,
            tp_exceptions.NotFound,
            tp_exceptions.InvalidToxic,
        ) as exc:
            raise ToxiproxyAPIError(method, path, exc) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        if response.status_code >= 400:
            raise ToxiproxyAPIError(method, path, response.content, status=response.status_code)
        return response.json() if response.content else None

    # -- API -----------------------------------------------------------------------

    def version(self) -> str:
        """The server's version string, e.g. ``"2.12.0"``."""
        response = self._call("GET", "/version")
        if not 200 <= response.status_code < 300:
            raise ToxiproxyAPIError(
                "GET", "/version", response.content, status=response.status_code
            )
        try:
            body = response.json()
        except ValueError:
            return response.text.strip()  # Toxiproxy before 2.4 answered plain text
        return str(body.get("version", "")) if isinstance(body, dict) else str(body)

    def proxies(self) -> dict[str, dict[str, Any]]:
        return self._json("GET", "/proxies")  # type: ignore[no-any-return]

    def create_proxy(self, name: str, upstream: str, listen: str) -> dict[str, Any]:
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": True}
        return self._json("POST", "/proxies", json=body)  # type: ignore[no-any-return]

    def get_proxy(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/proxies/{name}")  # type: ignore[no-any-return]

    def set_enabled(self, name: str, enabled: bool) -> dict[str, Any]:
        return self._json("POST", f"/proxies/{name}", json={"enabled": enabled})  # type: ignore[no-any-return]

    def delete_proxy(self, name: str) -> None:
        self._json("DELETE", f"/proxies/{name}")

    def add_toxic(
        self,
        proxy: str,
        *,
        name: str,
        type: str,
        stream: str,
        toxicity: float,
        attributes: dict[str, Any],
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        return self._json("POST", f"/proxies/{proxy}/toxics", json=body)  # type: ignore[no-any-return]

    def update_toxic(self, proxy: str, name: str, **changes: Any) -> dict[str, Any]:
        return self._json("PATCH", f"/proxies/{proxy}/toxics/{name}", json=changes)  # type: ignore[no-any-return]

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/proxies/{proxy}/toxics")  # type: ignore[no-any-return]

    def delete_toxic(self, proxy: str, name: str) -> None:
        self._json("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def reset(self) -> None:
        self._call("POST", "/reset")

    def close(self) -> None:
        """Close the keep-alive connection."""
        self._api.connection.close()


class Response:
    """The parts of a ``requests.Response`` that the library's ``validate_response`` reads."""

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class _KeepAlive:
    """One persistent HTTP connection, shared by the threads of a session (one call at a time)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        params: Any = None,
        timeout: float,
    ) -> Response:
        body = jsonlib.dumps(json).encode() if json is not None else data
        headers = {"Content-Type": "application/json"} if json is not None else {}
        with self._lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                if self._conn is None:
                    self._conn = self._connect(timeout)
                self._conn.timeout = timeout
                if self._conn.sock is not None:
                    self._conn.sock.settimeout(timeout)
                try:
                    self._conn.request(method, path, body=body, headers=headers)
                    answer = self._conn.getresponse()
                    content = answer.read()
                except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                    self.close_locked()
                    if reused and attempt == 1:
                        continue  # the server dropped an idle keep-alive connection: once more
                    raise
                except BaseException:
                    self.close_locked()
                    raise
                if answer.will_close:
                    self.close_locked()
                return Response(answer.status, content)
        raise AssertionError("unreachable")

    def close_locked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self.close_locked()


def _bind(host: str, port: int) -> Any:
    """A subclass of the library's APIConsumer bound to one server and one connection."""
    connection = _KeepAlive(host, port)

    def request(cls: type[APIConsumer], /, method: str, url: str, **kwargs: Any) -> Response:
        response: Response = validate_response(connection.request(method, url, **kwargs))
        return response

    def get(cls: type[APIConsumer], /, url: str, params: Any = None, **kwargs: Any) -> Response:
        return request(cls, "GET", url, params=params, **kwargs)

    def post(
        cls: type[APIConsumer], /, url: str, data: Any = None, json: Any = None, **kwargs: Any
    ) -> Response:
        return request(cls, "POST", url, data=data, json=json, **kwargs)

    def delete(cls: type[APIConsumer], /, url: str, **kwargs: Any) -> Response:
        return request(cls, "DELETE", url, **kwargs)

    return type(
        "BoundAPIConsumer",
        (APIConsumer,),
        {
            "host": host,
            "port": port,
            "connection": connection,
            "request": classmethod(request),
            "get": classmethod(get),
            "post": classmethod(post),
            "delete": classmethod(delete),
        },
    )


class ToxiproxyAPIError(BackendError):
    """Toxiproxy refused a request (4xx/5xx)."""

    def __init__(self, method: str, path: str, detail: object, *, status: int | None = None):
        if isinstance(detail, BaseException):
            status = {
                tp_exceptions.ProxyExists: 409,
                tp_exceptions.NotFound: 404,
                tp_exceptions.InvalidToxic: 400,
            }.get(type(detail), status)
            detail = detail.args[0] if detail.args else detail
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        self.status = status
        self.detail = excerpt(str(detail))
        super().__init__(f"Toxiproxy answered {status} to {method} {path}: {self.detail}")


def excerpt(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters: what a server answered, as a
    sentence quotes it (Toxiproxy's errors are short JSON; another server's may be a page)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."
