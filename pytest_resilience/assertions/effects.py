"""Verdict on side effects: the same business action must not be applied twice."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from .. import validate
from ..http.records import Effect
from .report import Row, fail

EffectKey = Callable[[Effect], Hashable]


def check_no_duplicate_side_effects(
    effects: Sequence[Effect], key: EffectKey | None = None, *, origin: float | None = None
) -> None:
    """No two effects share a business identity (method, path, canonical body, or ``key``)."""
    __tracebackhide__ = True
    validate.callable_or_none(key, "key", "effect -> hashable")
    identity = key or (lambda effect: effect.fingerprint)
    seen: dict[Hashable, list[Effect]] = {}
    for effect in sorted(effects, key=lambda e: e.at):
        seen.setdefault(identity(effect), []).append(effect)
    duplicates = {k: v for k, v in seen.items() if len(v) > 1}
    if not duplicates:
        return
    start = origin if origin is not None else min(e.at for e in effects)
    rows = []
    for group in duplicates.values():
        for n, effect in enumerate(group):
            rows.append(
                Row(
                    effect.at,
                    f"{effect.method} {effect.path}",
                    n + 1,
                    str(effect.status),
                    None,
                    f"key {effect.idempotency_key}",
                    flag=n > 0,
                )
            )
    first_label, first = next(iter(duplicates.items()))
    keys = ", ".join(repr(e.idempotency_key) for e in first)
    raise fail(
        f"side effect applied {len(first)} times: {first[0].method} {first[0].path} with the same "
        f"body ({first_label!s:.60}) under keys {keys}; {len(duplicates)} business action(s) "
        "were duplicated.",
        sorted(rows, key=lambda r: r.at),
        start,
    )
