"""What collection reads off each test: its fault markers, its ``explore`` marker and its
clock; and the fault markers a backend has no toxic for.  The plugin stores the findings
on the item; a marker that cannot be read fails its test at setup, in one line each."""

from __future__ import annotations

import inspect
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .markers import MarkerFault, belongs_to_pytest_timeout, is_fault_marker, parse_marker

if TYPE_CHECKING:
    import pytest

    from .explore import ExploreSpec
    from .faults.kinds import FaultKind


@dataclass
class Collected:
    """One test's markers as read at collection."""

    faults: list[MarkerFault] = field(default_factory=list)
    explore: ExploreSpec | None = None
    virtual: bool = False
    """Its body runs on virtual time (its marker, or the suite's option)."""
    errors: list[str] = field(default_factory=list)
    """One sentence per marker that could not be read, each naming the test and marker."""


def collect(item: pytest.Item, added: Mapping[str, FaultKind], suite_virtual: bool) -> Collected:
    """Read ``item``'s markers (``added``: fault kinds other plugins added; ``suite_virtual``:
    the suite's clock option says virtual)."""
    found = Collected()
    for mark in item.iter_markers():
        if not is_fault_marker(mark.name, added) or belongs_to_pytest_timeout(mark):
            continue
        try:
            found.faults.append(parse_marker(mark.name, mark.args, mark.kwargs, added))
        except ValueError as exc:
            found.errors.append(_said(item, mark.name, str(exc).rstrip(".") + "."))
    explore = item.get_closest_marker("explore")
    if explore is not None:
        try:
            found.explore = _explore_spec(item, explore)
        except ValueError as exc:
            found.errors.append(_said(item, "explore", str(exc).rstrip(".") + "."))
    try:
        found.virtual = _on_virtual_time(item, suite_virtual)
    except ValueError as exc:
        found.errors.append(_said(item, "virtual_time", f"{exc}."))
    return found


def lacking(
    item: pytest.Item, faults: Iterable[MarkerFault], toxic_types: Collection[str], kind: str
) -> list[str]:
    """A sentence for each of ``faults`` that needs a toxic the ``kind`` engine, whose
    types are ``toxic_types``, does not have."""
    return [
        _said(item, fault.marker, why)
        for fault in faults
        if (why := fault.lacking(toxic_types, f"the {kind} engine"))
    ]


def _said(item: pytest.Item, marker: str, why: str) -> str:
    return f"{item.nodeid}: @pytest.mark.{marker}: {why}"


def _on_virtual_time(item: pytest.Item, suite_virtual: bool) -> bool:
    """Whether the body of ``item`` runs on virtual time: its marker, or the suite's option."""
    mark = item.get_closest_marker("virtual_time")
    if mark is None:
        return suite_virtual
    if mark.args or mark.kwargs:
        raise ValueError("it takes no arguments; write @pytest.mark.virtual_time")
    return True


def _explore_spec(item: pytest.Item, mark: pytest.Mark) -> ExploreSpec:
    from .explore import ExploreSpec

    if mark.args:
        raise ValueError("it takes keyword arguments only, e.g. @pytest.mark.explore(examples=50)")
    function = getattr(item, "obj", None)
    if inspect.iscoroutinefunction(function):
        raise ValueError("it runs plain (sync) test functions; call async code from a sync test")
    if hasattr(function, "hypothesis"):
        raise ValueError(
            "the test is already a Hypothesis test (@given); draw your data inside the explored "
            "body with resilience.explore(fn, ...) instead"
        )
    return ExploreSpec.of(mark.kwargs)
