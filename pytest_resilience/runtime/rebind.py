"""Module globals and default arguments bound to a function that a patch replaces.

Code that took ``from time import sleep`` or ``clock=time.monotonic`` at import holds the
function itself, which setting ``time.sleep`` does not reach: these find such bindings
in the loaded modules, so that a patch can swap them too and give them back
(:mod:`.virtual` for virtual time, :mod:`.pacing` for the sleeps it notes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from types import FunctionType, ModuleType
from typing import Any

PLUGIN_ONLY = frozenset({"pytest_resilience"})
_TIME_LIBRARIES = PLUGIN_ONLY | {"time_machine", "freezegun"}
BOUND_SKIPPED = (
    frozenset(sys.stdlib_module_names)
    | _TIME_LIBRARIES
    | {"_pytest", "pytest", "pluggy", "xdist", "execnet", "hypothesis"}
)
"""Packages whose bound clocks stay real: the standard library's (``threading``, ``queue``
and ``subprocess`` time real waits with them), the plugin's, pytest's (test durations),
Hypothesis's (its deadlines) and the time libraries'."""


def _namespaces(
    names: list[str], skipped: frozenset[str] | None
) -> Iterator[tuple[str, ModuleType, dict[str, Any]]]:
    """(name, module, its namespace) for each of the modules ``names`` outside ``skipped``
    (by default :data:`BOUND_SKIPPED`).  A module that cannot be read (a lazy proxy that
    fails) is passed over."""
    skipped = BOUND_SKIPPED if skipped is None else skipped
    for name in names:
        if name.partition(".")[0] in skipped:
            continue
        module = sys.modules.get(name)
        try:
            namespace = getattr(module, "__dict__", None)
        except Exception:
            continue
        if module is not None and isinstance(namespace, dict):
            yield name, module, namespace


def bound(
    names: list[str], swap: dict[int, object], skipped: frozenset[str] | None = None
) -> list[tuple[ModuleType, str, object]]:
    """(module, attribute, value) for each global of the modules ``names``
    (:func:`_namespaces`) bound to an object whose id ``swap`` holds."""
    found: list[tuple[ModuleType, str, object]] = []
    for _, module, namespace in _namespaces(names, skipped):
        try:
            if swap.keys().isdisjoint(map(id, namespace.values())):
                continue  # the common case, cheap: nothing bound here
            values = list(namespace.items())
        except RuntimeError:  # another thread changed the module meanwhile
            values = list(namespace.copy().items())
        found += [(module, attr, value) for attr, value in values if id(value) in swap]
    return found


def defaulted(
    names: list[str], swap: dict[int, object], skipped: frozenset[str] | None = None
) -> list[tuple[FunctionType, str, Any]]:
    """(function, ``"__defaults__"`` or ``"__kwdefaults__"``, value) for each function of
    the modules ``names`` (:func:`_namespaces`; their own functions and their classes'
    methods) whose default arguments hold an object whose id ``swap`` holds:
    ``clock=time.monotonic``, the common way to let a test pass its own clock."""
    found: list[tuple[FunctionType, str, Any]] = []
    for name, _, namespace in _namespaces(names, skipped):
        for function in _functions_of(name, namespace.copy().values()):
            defaults, keywords = function.__defaults__, function.__kwdefaults__
            if defaults and not swap.keys().isdisjoint(map(id, defaults)):
                found.append((function, "__defaults__", defaults))
            if keywords and not swap.keys().isdisjoint(map(id, keywords.values())):
                found.append((function, "__kwdefaults__", keywords))
    return found


def _functions_of(module: str, values: Iterable[object]) -> Iterator[FunctionType]:
    """The functions defined in ``module``: its own, and its classes' methods.  Types are
    read with ``type()``, never ``isinstance``, which asks a lazy proxy for its
    ``__class__`` and so imports what it stands for."""
    for value in values:
        kind = type(value)
        if kind is FunctionType and value.__module__ == module:
            yield value  # type: ignore[misc]
        elif issubclass(kind, type) and value.__module__ == module:
            for member in list(vars(value).values()):
                if type(member) in (staticmethod, classmethod):
                    member = member.__func__
                if type(member) is FunctionType:
                    yield member


def swapped(value: Any, swap: dict[int, object]) -> Any:
    if isinstance(value, dict):
        return {k: swap.get(id(v), v) for k, v in value.items()}
    return tuple(swap.get(id(v), v) for v in value)


INHERITED = object()
"""What :func:`held` gives for a class attribute the class did not define itself."""


def held(owner: object, name: str) -> object:
    """What setting ``name`` on ``owner`` replaces, for :func:`give_back`: its value, or
    :data:`INHERITED` where ``owner`` is a class that inherits it (a base's method is
    given back by deleting the copy, so that the class is as it was)."""
    own = not isinstance(owner, type) or name in vars(owner)
    return getattr(owner, name) if own else INHERITED


def give_back(owner: object, name: str, value: object) -> None:
    """Undo a patch of ``name`` on ``owner`` to ``value`` (from :func:`held`)."""
    if value is INHERITED:
        delattr(owner, name)
    else:
        setattr(owner, name, value)


def give_back_late(before: set[str], back: dict[int, object]) -> None:
    """The modules imported since ``before`` (the names loaded then) bound replacements
    while a patch was on: their globals and default arguments get the real functions
    (``back``: a replacement's id to its real one).  The standard library's too
    (socketserver, sched bind ``time.monotonic`` at import); the plugin's are its own."""
    late = [name for name in sys.modules if name not in before]
    for module, name, value in bound(late, back, skipped=PLUGIN_ONLY):
        setattr(module, name, back[id(value)])
    for function, name, value in defaulted(late, back, skipped=PLUGIN_ONLY):
        setattr(function, name, swapped(value, back))
