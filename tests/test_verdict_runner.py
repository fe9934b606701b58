"""The one verdict runner: every verdict's outcome on the timeline, every failure replayable."""

from __future__ import annotations

import pytest

from pytest_resilience.assertions.report import fail
from pytest_resilience.observe.timeline import Timeline
from pytest_resilience.verdicts import Verdicts


def check_holds(*, origin: float) -> None:
    pass


def check_breaks(*, origin: float) -> None:
    raise fail("the rule broke.", [], origin)


def check_with_a_bare_assert(*, origin: float) -> None:
    # What an ``assert`` in a user's group= or predicate raises outside pytest's rewriting.
    raise AssertionError()


def test_each_outcome_is_recorded_under_the_assert_name_of_its_check() -> None:
    timeline = Timeline()
    verdicts = Verdicts(timeline, seed=77)

    verdicts.judge("api", check_holds)
    with pytest.raises(AssertionError) as broke:
        verdicts.judge("api", check_breaks)
    with pytest.raises(AssertionError) as bare:
        verdicts.judge("", check_with_a_bare_assert)

    assert [(v.service, v.name, v.passed, v.message) for v in timeline.verdicts()] == [
        ("api", "assert_holds", True, ""),
        ("api", "assert_breaks", False, "the rule broke."),
        ("", "assert_with_a_bare_assert", False, "AssertionError"),
    ]
    assert str(broke.value).endswith("\nreplay: --resilience-seed=77")
    assert "replay" not in broke.value.args[0]
    assert "replay" not in str(bare.value)  # not ours: left as it was raised


def test_outside_a_test_a_run_is_judged_without_a_timeline_or_seed() -> None:
    with pytest.raises(AssertionError) as broke:
        Verdicts(origin=5.0).judge("", check_breaks)
    assert "replay" not in str(broke.value)
