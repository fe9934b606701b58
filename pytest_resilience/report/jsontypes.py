"""Frozen dataclasses to JSON and back, and their JSON Schema, all read off the types.

The report's records (``record.py``) are dataclasses whose fields are JSON's own
types: ``bool``, ``int``, ``float``, ``str``, ``None``, ``Literal`` strings, tuples
(arrays: ``tuple[X, ...]`` of any length, ``tuple[X, Y]`` of two), ``dict[str, X]``
(objects) and other such dataclasses.  :func:`to_json` turns one into plain data for
``json.dumps`` (and for pytest-xdist, which carries report attributes only as plain
data), :func:`from_json` rebuilds it, and :func:`schema_of` writes the JSON Schema
that data meets, so the schema shipped with the package cannot drift from the types.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """``value`` (a record, or data holding records) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(kind: type[T], data: Any) -> T:
    """The record of type ``kind`` that :func:`to_json` turned into ``data``."""
    return _build(kind, data)  # type: ignore[no-any-return]


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def _build(hint: Any, data: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        fields = _hints(hint)  # type: ignore[arg-type]
        built = {name: _build(fields[name], data[name]) for name in fields if name in data}
        return typing.cast(Any, hint)(**built)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if data is None and type(None) in options:
            return None
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(data, dict):
                return _build(option, data)
        return data
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item) for item in data)
        return tuple(_build(arg, item) for arg, item in zip(args, data, strict=True))
    if origin is dict:
        value_hint = typing.get_args(hint)[1]
        return {key: _build(value_hint, value) for key, value in data.items()}
    return data


_SIMPLE = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def schema_of(hint: Any) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the JSON data of type ``hint``."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        fields = _hints(hint)  # type: ignore[arg-type]
        properties = {name: schema_of(field_hint) for name, field_hint in fields.items()}
        schema: dict[str, Any] = {"type": "object"}
        if hint.__doc__:
            schema["description"] = " ".join(hint.__doc__.split())
        schema.update(properties=properties, required=list(fields), additionalProperties=False)
        return schema
    if hint in _SIMPLE:
        return {"type": _SIMPLE[hint]}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(option) for option in typing.get_args(hint)]}
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0])}
        return {
            "type": "array",
            "prefixItems": [schema_of(arg) for arg in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(typing.get_args(hint)[1])}
    raise TypeError(f"no JSON form for {hint!r}")
