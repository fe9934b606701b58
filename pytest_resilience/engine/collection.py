"""The engine's proxies and every API operation on them, answering as Toxiproxy 2.12 does.

Operations run on the engine's event loop; the HTTP front end (``api.py``)
only parses requests and writes the :class:`Answer` back.  Request bodies are
checked the way Toxiproxy's Go JSON decoding checks them: the first JSON value
counts, ``null`` fields keep their defaults, a value of the wrong type is a
``bad request body``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from .gojson import dumps, syntax_error
from .lane import Lane
from .metrics import render_metrics
from .proxy import WILDCARDS, ListenError, Proxy, format_address, split_address
from .toxics import DIRECTIONS, TYPES, Toxic

ERROR_TYPE = "text/plain; charset=utf-8"
"""The content type of Go's ``http.Error``, which Toxiproxy answers most errors with."""


@dataclass
class Answer:
    status: int
    body: Any = None
    """JSON-able body; ``None`` with a 204, or a ``str`` sent as text."""
    content_type: str = "application/json"
    location: str | None = None
    """A redirect's Location header."""


class ApiError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def answer(self) -> Answer:
        """As Toxiproxy answers an API error: its JSON written by Go's ``http.Error``, as
        text with a newline."""
        error = dumps({"error": self.message, "status": self.status})
        return Answer(self.status, error + "\n", ERROR_TYPE)


def bad_body(detail: str) -> ApiError:
    return ApiError(f"bad request body: {detail}", 400)


PROXY_NOT_FOUND = ApiError("proxy not found", 404)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)


class BigNumber:
    """An integer literal too long for Python to convert; no Go field takes it either."""

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __str__(self) -> str:
        return self.literal


def _parse_int(literal: str) -> int | BigNumber:
    return BigNumber(literal) if len(literal) > 20 else int(literal)


def _not_json(literal: str) -> Any:
    # NaN and Infinity are Python's extensions; Go's decoder refuses them.
    raise ValueError(f"invalid character {literal[0]!r} looking for beginning of value")


_INT64 = range(-(2**63), 2**63)
_FLOAT32_MAX = 3.4028234663852886e38

_JSON_KINDS = {
    BigNumber: "number",
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
}


class _Float(float):
    """A JSON number with a fraction or exponent, and the literal it was written as (Go's
    decoder quotes the literal: ``1e40``, not ``1e+40``)."""

    literal: str


def _parse_float(literal: str) -> float:
    number = _Float(literal)
    number.literal = literal
    return number


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_not_json
)


def decode(body: bytes) -> Any:
    """The first JSON value of ``body``, as Go's json.Decoder reads it."""
    text = body.decode("utf-8", "replace").lstrip()
    if not text:
        raise bad_body("EOF")
    try:
        value, _ = _DECODER.raw_decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise bad_body(syntax_error(body) or str(exc)) from None
    return value


def _kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _field(
    obj: dict[str, Any], key: str, expected: type | tuple[type, ...], where: str, go_type: str
) -> Any:
    """``obj[key]`` if present and not null; a bad request body if of the wrong type,
    worded as Go's decoder words it for the field ``where.key`` of Go type ``go_type``:
    a number is shown with its literal only where a number was wanted."""
    value = obj.get(key)
    if value is None:
        return None
    ok = isinstance(value, expected) and not (
        isinstance(value, bool) and bool not in _tuple(expected)
    )
    if ok and isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        ok = False
    if ok and isinstance(value, float) and not abs(value) <= _FLOAT32_MAX:
        ok = False
    if not ok:
        number = isinstance(value, (int, float, BigNumber)) and not isinstance(value, bool)
        shown = _kind(value)
        if number and go_type in GO_NUMBERS:
            shown = f"number {getattr(value, 'literal', value)}"
        raise bad_body(
            f"json: cannot unmarshal {shown} into Go struct field {where}.{key} of type {go_type}"
        )
    return value


GO_NUMBERS = {"int", "int64", "float32"}
GO_TOXICS = {
    "noop": "NoopToxic",
    "latency": "LatencyToxic",
    "bandwidth": "BandwidthToxic",
    "slow_close": "SlowCloseToxic",
    "timeout": "TimeoutToxic",
    "reset_peer": "ResetToxic",
    "slicer": "SlicerToxic",
    "limit_data": "LimitDataToxic",
}
"""Each toxic's Go struct, as the decoder names it in an error."""
GO_INT_ATTRIBUTES = {"slicer"}
"""Toxics whose attributes are Go ``int`` (the others are ``int64``)."""


def _tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _object(value: Any, into: str) -> dict[str, Any]:
    """``value`` as a JSON object; a bad request body if it is not one, saying it could
    not go ``into`` the Go value Toxiproxy decodes it into (one of the phrases below)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_body(f"json: cannot unmarshal {_kind(value)} into {into}")
    return value


PROXY_VALUE = "Go value of type toxiproxy.Proxy"
_ENTRY = 'struct { toxiproxy.Proxy; Enabled *bool "json:\\"enabled\\"" }'
POPULATE_ENTRY = f"Go value of type {_ENTRY}"
POPULATE_LIST = f"Go value of type []{_ENTRY}"
TOXIC_VALUE = "Go value of type toxics.ToxicWrapper"
TOXIC_UPDATE = (
    "Go value of type struct { Attributes interface {} "
    '"json:\\"attributes\\""; Toxicity float32 "json:\\"toxicity\\"" }'
)


_BOUND_AS = {"localhost": "127.0.0.1", **dict.fromkeys(WILDCARDS, "::")}
"""Hosts a proxy reports other than as written: Go binds localhost as 127.0.0.1 and a
wildcard as one dual-stack ``[::]`` socket."""


def _resolve(listen: str) -> str:
    """``listen`` as a proxy bound there reports it."""
    host, port = split_address(listen or ":0", "listen")
    return format_address(_BOUND_AS.get(host, host), port)


class Collection:
    """All proxies of one engine."""

    def __init__(self, version: str, seed: int, *, express: bool = True) -> None:
        self.version = version
        self.seed = seed
        self.proxies: dict[str, Proxy] = {}
        self.express = express
        """Whether toxic-free links go to an express lane (:class:`~.engine.Engine`)."""
        self._lane: Lane | None = None

    def _proxy(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise PROXY_NOT_FOUND from None

    # -- proxies ------------------------------------------------------------------

    async def index(self) -> Answer:
        # By name, as Go's encoding/json writes a map (by byte order of the keys).
        ordered = sorted(self.proxies.items(), key=lambda item: item[0].encode())
        return Answer(200, {name: p.to_json() for name, p in ordered})

    @staticmethod
    def _proxy_input(value: Any, into: str = PROXY_VALUE) -> tuple[str, str, str, bool]:
        obj = _object(value, into)
        name = _field(obj, "name", str, "Proxy", "string") or ""
        listen = _field(obj, "listen", str, "Proxy", "string") or ""
        upstream = _field(obj, "upstream", str, "Proxy", "string") or ""
        enabled = _field(obj, "enabled", bool, "Proxy", "bool")
        return name, listen, upstream, True if enabled is None else enabled

    async def create(self, body: bytes) -> Answer:
        name, listen, upstream, enabled = self._proxy_input(decode(body))
        if not name:
            raise ApiError("missing required field: name", 400)
        if not upstream:
            raise ApiError("missing required field: upstream", 400)
        if name in self.proxies:
            raise ApiError("proxy already exists", 409)
        proxy = await self._add(name, listen, upstream, enabled)
        return Answer(201, proxy.to_json())

    async def _add(self, name: str, listen: str, upstream: str, enabled: bool) -> Proxy:
        if self._lane is None and self.express:
            self._lane = Lane(asyncio.get_running_loop())
        proxy = Proxy(name, listen, upstream, self.seed, self._lane)
        if enabled:
            try:
                await proxy.start()
            except ListenError as exc:
                raise ApiError(str(exc), 500) from None
        self.proxies[name] = proxy
        return proxy

    async def show(self, name: str) -> Answer:
        return Answer(200, self._proxy(name).to_json())

    async def update(self, name: str, body: bytes) -> Answer:
        proxy = self._proxy(name)
        value = decode(body)
        obj = _object(value, PROXY_VALUE)
        listen = _field(obj, "listen", str, "Proxy", "string")
        upstream = _field(obj, "upstream", str, "Proxy", "string")
        enabled = _field(obj, "enabled", bool, "Proxy", "bool")
        listen = proxy.listen if listen is None else listen
        upstream = proxy.upstream if upstream is None else upstream
        enabled = proxy.enabled if enabled is None else enabled
        try:
            if _resolve(listen) != proxy.listen or upstream != proxy.upstream:
                await proxy.stop()
                proxy.listen, proxy.upstream = listen, upstream
            if enabled and not proxy.enabled:
                await proxy.start()
            elif not enabled and proxy.enabled:
                await proxy.stop()
        except ListenError as exc:
            raise ApiError(str(exc), 500) from None
        return Answer(200, proxy.to_json())

    async def delete(self, name: str) -> Answer:
        proxy = self._proxy(name)
        await proxy.stop()
        del self.proxies[name]
        return Answer(204)

    async def populate(self, body: bytes) -> Answer:
        try:
            value = decode(body)
            if value is not None and not isinstance(value, list):
                raise bad_body(f"json: cannot unmarshal {_kind(value)} into {POPULATE_LIST}")
            entries = [self._proxy_input(item, POPULATE_ENTRY) for item in value or []]
        except ApiError as exc:
            # Populate's errors carry the (empty) list of proxies it made.
            return Answer(exc.status, {"error": exc.message, "status": exc.status, "proxies": None})
        for number, (name, _, upstream, _) in enumerate(entries, start=1):
            for field, given in (("name", name), ("upstream", upstream)):
                if not given:
                    return Answer(
                        400,
                        {
                            "error": f"missing required field: {field} at proxy {number}",
                            "status": 400,
                            "proxies": None,
                        },
                    )
        done: list[Proxy] = []
        for name, listen, upstream, enabled in entries:
            existing = self.proxies.get(name)
            try:
                if existing is not None and (
                    _resolve(listen) == existing.listen and upstream == existing.upstream
                ):
                    done.append(existing)
                    continue
                if existing is not None:
                    await existing.stop()
                    del self.proxies[name]
                done.append(await self._add(name, listen, upstream, enabled))
            except (ApiError, ListenError) as exc:
                status = exc.status if isinstance(exc, ApiError) else 500
                listing = [p.to_json() for p in done] or None
                return Answer(status, {"error": str(exc), "status": status, "proxies": listing})
        return Answer(201, {"proxies": [p.to_json() for p in done] or None})

    async def reset(self) -> Answer:
        for proxy in self.proxies.values():
            try:
                await proxy.start()
            except ListenError as exc:
                raise ApiError(str(exc), 500) from None
            proxy.remove_all_toxics()
        return Answer(204)

    # -- toxics -------------------------------------------------------------------

    async def toxics(self, proxy_name: str) -> Answer:
        return Answer(200, self._proxy(proxy_name).toxics_json())

    async def add_toxic(self, proxy_name: str, body: bytes) -> Answer:
        proxy = self._proxy(proxy_name)
        obj = _object(decode(body), TOXIC_VALUE)
        name = _field(obj, "name", str, "ToxicWrapper", "string") or ""
        kind = _field(obj, "type", str, "ToxicWrapper", "string") or ""
        stream = _field(obj, "stream", str, "ToxicWrapper", "string") or "downstream"
        toxicity = _field(obj, "toxicity", (int, float), "ToxicWrapper", "float32")
        attributes = _object(
            obj.get("attributes"),
            "Go struct field ToxicWrapper.attributes of type toxics.NoopToxic",
        )
        if stream.lower() not in DIRECTIONS:
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        name = name or f"{kind}_{stream}"
        if kind not in TYPES:
            raise ApiError("invalid toxic type", 400)
        if proxy.find(name) is not None:
            raise ApiError("toxic already exists", 409)
        toxic = Toxic(
            name,
            kind,
            stream,
            1.0 if toxicity is None else float(toxicity),
            self._attributes(kind, attributes, {}),
        )
        await proxy.add_toxic(toxic)
        return Answer(200, toxic.to_json())

    @staticmethod
    def _attributes(kind: str, given: dict[str, Any], current: dict[str, int]) -> dict[str, int]:
        merged = {key: current.get(key, 0) for key in TYPES[kind].attributes}
        where = f"{GO_TOXICS[kind]}.attributes"
        go_type = "int" if kind in GO_INT_ATTRIBUTES else "int64"
        for key in TYPES[kind].attributes:
            value = _field(given, key, int, where, go_type)
            if value is not None:
                merged[key] = value
        return merged

    async def show_toxic(self, proxy_name: str, name: str) -> Answer:
        toxic = self._proxy(proxy_name).find(name)
        if toxic is None:
            raise TOXIC_NOT_FOUND
        return Answer(200, toxic.to_json())

    async def update_toxic(self, proxy_name: str, name: str, body: bytes) -> Answer:
        proxy = self._proxy(proxy_name)
        toxic = proxy.find(name)
        if toxic is None:
            raise TOXIC_NOT_FOUND
        obj = _object(decode(body), TOXIC_UPDATE)
        attributes = _object(
            obj.get("attributes"),
            f"Go struct field .attributes of type toxics.{GO_TOXICS[toxic.type]}",
        )
        toxicity = _field(obj, "toxicity", (int, float), "", "float32")
        toxic.attributes = self._attributes(toxic.type, attributes, toxic.attributes)
        if toxicity is not None:
            toxic.toxicity = float(toxicity)
        proxy.update_toxic(toxic)
        return Answer(200, toxic.to_json())

    async def delete_toxic(self, proxy_name: str, name: str) -> Answer:
        proxy = self._proxy(proxy_name)
        toxic = proxy.find(name)
        if toxic is None:
            raise TOXIC_NOT_FOUND
        proxy.remove_toxic(toxic)
        return Answer(204)

    # -- the rest -----------------------------------------------------------------

    async def get_version(self) -> Answer:
        # Toxiproxy writes this one by hand: a space after the colon, a newline at the end.
        return Answer(200, f'{{"version": "{self.version}"}}\n', "application/json;charset=utf-8")

    async def metrics(self) -> Answer:
        return Answer(200, render_metrics(self.proxies.values()), "text/plain; version=0.0.4")

    async def close_all(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
        self.proxies.clear()
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.stop()
