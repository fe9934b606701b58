"""The SVG timeline of a test's record, and its pytest-html extra."""

from __future__ import annotations

import base64
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from pytest_resilience.report.html import add_extra, html_report_requested
from pytest_resilience.report.record import (
    ExchangeRecord,
    FaultRecord,
    ServiceRecord,
    TestRecord,
    VerdictRecord,
    empty_record,
)
from pytest_resilience.report.svg import MAX_LANES, render_timeline

NS = "{http://www.w3.org/2000/svg}"
GREEN, ORANGE, RED, GREY = "#2ca02c", "#ff7f0e", "#d62728", "#8c8c8c"


# --- synthetic records, as record_of builds them -----------------------------


def exchange(
    start: float,
    end: float | None,
    status: int | None,
    operation: str,
    *,
    delivered: bool | None = True,
    retry_after: float | None = None,
    path: str = "/charges",
) -> ExchangeRecord:
    return ExchangeRecord(
        start_ms=start,
        end_ms=end,
        method="POST",
        path=path,
        key=operation.removeprefix("key="),
        operation=operation,
        status=status,
        step="rate_limit" if status == 429 else "respond",
        scripted=status == 429,
        delivered=delivered,
        retry_after_s=retry_after,
        wait_header=None if retry_after is None else "Retry-After",
        headers=(),
        answer_headers=(),
    )


def http_service(name: str, exchanges: list[ExchangeRecord]) -> ServiceRecord:
    return ServiceRecord(
        name=name,
        type="http",
        connections=2,
        resets=0,
        requests=len(exchanges),
        operations=len({e.operation for e in exchanges}),
        max_attempts=0,
        retried=0,
        failed_attempts=0,
        lost_answers=sum(1 for e in exchanges if e.delivered is False),
        effects=0,
        duplicated_effects=0,
        exchanges=tuple(exchanges),
    )


def record(
    services: list[ServiceRecord] | None = None,
    faults: list[FaultRecord] | None = None,
    verdicts: list[VerdictRecord] | None = None,
    seed: int = 749499662,
) -> TestRecord:
    return TestRecord(
        schema=1,
        seed=seed,
        end_ms=None,
        faults=tuple(faults or ()),
        services=tuple(services or ()),
        runs=(),
        intents=(),
        verdicts=tuple(verdicts or ()),
        backend=None,
    )


def fault(kind: str, applied: float, healed: float | None) -> FaultRecord:
    return FaultRecord(1, "payments", kind, "", applied, healed)


BURST = [
    exchange(0, 5, 429, "key=a", retry_after=1),
    exchange(1010, 1015, 429, "key=a", retry_after=1),
    exchange(2020, 2025, 429, "key=a", retry_after=1),
    exchange(3030, 3040, 201, "key=a"),
]


# --- reading the picture back -------------------------------------------------------


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def by_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if cls in (e.get("class") or "").split()]


def shown(e: ET.Element) -> str:
    """The text an element shows, without its <title> tooltip."""
    return (e.text or "") + "".join(child.tail or "" for child in e)


def texts(root: ET.Element) -> list[str]:
    return [shown(e) for e in root.iter(f"{NS}text")]


def x_of(root: ET.Element, ms: float) -> float:
    """Where ``ms`` falls on the axis, from the first and last ticks the picture drew."""
    ticks = sorted(
        (float(t.get("data-ms", "nan")), float(t.get("x", "nan")))
        for t in by_class(root, "tick-label")
    )
    (ms0, x0), (ms1, x1) = ticks[0], ticks[-1]
    return x0 + (ms - ms0) / (ms1 - ms0) * (x1 - x0)


def box(e: ET.Element) -> tuple[float, float, float, float]:
    """x, y, right, bottom of a rect."""
    x, y = float(e.get("x", "nan")), float(e.get("y", "nan"))
    return x, y, x + float(e.get("width", "nan")), y + float(e.get("height", "nan"))


# --- attempts -----------------------------------------------------------------------


def test_each_attempt_gets_one_mark_at_its_start_coloured_by_status() -> None:
    root = parse(render_timeline("t::burst", record([http_service("payments", BURST)])))

    marks = by_class(root, "attempt")
    assert [m.get("fill") for m in marks] == [ORANGE, ORANGE, ORANGE, GREEN]
    for mark, ex in zip(marks, BURST, strict=True):
        assert float(mark.get("x", "nan")) == pytest.approx(x_of(root, ex.start_ms), abs=0.05)
    # One lane for the operation: all four marks on one row.
    assert len({m.get("y") for m in marks}) == 1


def test_no_answer_and_5xx_and_other_statuses_have_their_own_colours() -> None:
    exchanges = [
        exchange(0, None, None, "#1 POST /charges"),
        exchange(10, 20, 503, "#2 POST /charges"),
        exchange(30, 40, 404, "#3 POST /charges"),
    ]
    root = parse(render_timeline("t::statuses", record([http_service("p", exchanges)])))

    fills = [m.get("fill") for m in by_class(root, "attempt")]
    assert fills[:2] == [GREY, RED]
    assert fills[2] not in (GREY, RED, GREEN, ORANGE)
    # Three operations, three lanes.
    assert len({m.get("y") for m in by_class(root, "attempt")}) == 3


def test_retry_after_is_a_bar_from_the_answer_to_the_end_of_the_wait() -> None:
    root = parse(render_timeline("t::burst", record([http_service("payments", BURST)])))

    bars = by_class(root, "retry-after")
    assert len(bars) == 3  # the 201 asked for no wait
    for bar, ex in zip(bars, BURST[:3], strict=True):
        left, _, right, _ = box(bar)
        assert left == pytest.approx(x_of(root, ex.end_ms), abs=0.05)
        assert right == pytest.approx(x_of(root, ex.end_ms + 1000), abs=0.05)
        assert float(bar.get("height", "nan")) <= 3  # thin, under the mark's height


def test_a_lost_answer_is_drawn_hollow_and_dashed_and_has_a_legend_entry() -> None:
    exchanges = [
        exchange(0, 5, 201, "key=b", delivered=False),
        exchange(300, 305, 201, "key=b"),
    ]
    root = parse(render_timeline("t::lost", record([http_service("payments", exchanges)])))

    lost, delivered = by_class(root, "attempt")
    assert by_class(root, "lost") == [lost]
    assert lost.get("stroke") == GREEN  # still says what was answered
    assert lost.get("fill") != GREEN
    assert lost.get("stroke-dasharray")
    assert delivered.get("fill") == GREEN
    assert delivered.get("stroke-dasharray") is None
    assert "answer lost" in texts(root)


# --- faults -------------------------------------------------------------------------


def test_fault_bands_span_their_window_across_all_lanes() -> None:
    faults = [fault("latency", 100, 400), fault("partition", 600, None)]
    services = [http_service("payments", BURST)]
    root = parse(render_timeline("t::faults", record(services, faults)))

    healed, never = by_class(root, "fault-band")
    left, top, right, bottom = box(healed)
    assert left == pytest.approx(x_of(root, 100), abs=0.05)
    assert right == pytest.approx(x_of(root, 400), abs=0.05)
    marks = [box(m) for m in by_class(root, "attempt")]
    assert top <= min(m[1] for m in marks)
    assert bottom >= max(m[3] for m in marks)
    assert box(never)[3] == bottom


def test_a_fault_never_healed_runs_to_the_end_of_the_picture() -> None:
    root = parse(
        render_timeline(
            "t::unhealed",
            record([http_service("payments", BURST)], [fault("partition", 600, None)]),
        )
    )

    (band,) = by_class(root, "fault-band")
    last_tick = max(float(t.get("x", "nan")) for t in by_class(root, "tick-label"))
    left, _, right, _ = box(band)
    assert left == pytest.approx(x_of(root, 600), abs=0.05)
    assert right == pytest.approx(last_tick, abs=0.05)
    assert right >= x_of(root, 3040)  # past the last thing that happened
    assert "partition payments" in texts(root)
    assert any("not healed" in t for t in texts(root))


# --- lanes --------------------------------------------------------------------------


def test_operations_over_the_lane_cap_are_counted_not_drawn() -> None:
    extra = 15
    exchanges = [
        exchange(i * 10, i * 10 + 3, 200, f"#{i + 1} GET /item/{i}", path=f"/item/{i}")
        for i in range(MAX_LANES + extra)
    ]
    root = parse(render_timeline("t::many", record([http_service("api", exchanges)])))

    marks = by_class(root, "attempt")
    assert len(marks) == MAX_LANES
    assert len({m.get("y") for m in marks}) == MAX_LANES
    (note,) = by_class(root, "more")
    assert f"+{extra} more operations" in shown(note)
    height = float(root.get("height", "nan"))
    assert 40 * 18 < height < 1200  # grows with the lanes, not without bound


def test_long_operation_labels_are_cut_and_kept_whole_in_a_tooltip() -> None:
    label = "key=29c63cc7-3b91-421f-b327-bdb8f4bdf9b2"
    root = parse(
        render_timeline("t::label", record([http_service("p", [exchange(0, 1, 200, label)])]))
    )

    (lane,) = [e for e in by_class(root, "lane-label") if "29c63cc7" in shown(e)]
    assert shown(lane).endswith("\u2026")
    assert len(shown(lane)) < len(label)
    tooltip = lane.find(f"{NS}title")
    assert tooltip is not None and tooltip.text == label


def test_a_tcp_service_gets_a_lane_with_its_connection_count() -> None:
    tcp = ServiceRecord("redis", "tcp", connections=7, resets=2)
    root = parse(render_timeline("t::tcp", record([tcp])))

    (row,) = by_class(root, "tcp")
    assert shown(row) == "7 connections, 2 reset"
    assert "redis (tcp)" in texts(root)
    assert by_class(root, "attempt") == []


def test_an_empty_record_still_renders_an_axis_and_says_nothing_was_recorded() -> None:
    for empty in (record(), empty_record(1, None)):
        root = parse(render_timeline("t::empty", empty))
        assert by_class(root, "attempt") == []
        assert len(by_class(root, "tick-label")) >= 2
        assert any(t.startswith("nothing recorded") for t in texts(root))


# --- header -------------------------------------------------------------------------


def test_failing_verdict_messages_are_listed_escaped_under_the_title() -> None:
    message = "retried <50 ms after 429 & Retry-After 1 s\n   t+ms  operation  try"
    verdicts = [
        VerdictRecord("retry_after", "payments", False, message, 9),
        VerdictRecord("attempts", "payments", True, "fine", 9),
    ]
    svg = render_timeline("tests/t.py::test_x[a<b]", record(verdicts=verdicts, seed=42))
    root = parse(svg)

    assert "&lt;50 ms after 429 &amp; Retry-After" in svg
    (line,) = by_class(root, "verdict")
    assert (
        shown(line) == "FAILED retry_after (payments): retried <50 ms after 429 & Retry-After 1 s"
    )
    tooltip = line.find(f"{NS}title")
    assert tooltip is not None and tooltip.text == message  # the evidence, on hover
    assert not any("fine" in t for t in texts(root))
    assert "tests/t.py::test_x[a<b]" in texts(root)
    assert "replay: --resilience-seed=42" in texts(root)


def test_characters_xml_forbids_do_not_break_the_document() -> None:
    exchanges = [exchange(0, 1, 200, "#1 POST /a\x00b\x1b", path="/a\x00b\x1b")]
    root = parse(render_timeline("t::ctl\x07", record([http_service("p", exchanges)])))
    assert any("\ufffd" in t for t in texts(root))


def test_the_same_record_renders_the_same_bytes() -> None:
    services = [http_service("payments", BURST)]
    first = render_timeline("t::d", record(services, [fault("latency", 100, 400)]))
    assert render_timeline("t::d", record(services, [fault("latency", 100, 400)])) == first
    # ... and the bytes do depend on the record.
    assert render_timeline("t::d", record(services, [fault("latency", 100, 500)])) != first


# --- pytest-html --------------------------------------------------------------------


def test_add_extra_appends_the_svg_to_a_pytest_html_report() -> None:
    extras = pytest.importorskip("pytest_html.extras")
    svg = render_timeline("t::burst", record([http_service("payments", BURST)]))
    earlier = extras.text("log", name="log")
    report = SimpleNamespace(extras=[earlier])

    assert add_extra(report, svg) is True

    assert report.extras[0] == earlier
    (added,) = report.extras[1:]
    assert added["format_type"] == extras.FORMAT_HTML
    assert svg in added["content"]


def test_add_extra_as_an_image_is_a_base64_svg() -> None:
    extras = pytest.importorskip("pytest_html.extras")
    svg = render_timeline("t::empty", record())
    report = SimpleNamespace()  # pytest's reports have no extras until a plugin sets them

    assert add_extra(report, svg, inline=False) is True

    (added,) = report.extras
    assert added["format_type"] == extras.FORMAT_IMAGE
    assert added["mime_type"] == "image/svg+xml"
    assert base64.b64decode(added["content"]).decode("utf-8") == svg


def test_add_extra_does_nothing_without_pytest_html(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest_html", None)  # import now raises ImportError
    report = SimpleNamespace(extras=[])
    assert add_extra(report, "<svg/>") is False
    assert report.extras == []


def test_the_timeline_reaches_a_pytest_html_report(pytester: pytest.Pytester) -> None:
    """pytest-html picks up an extra set on the teardown report, where the record exists."""
    pytest.importorskip("pytest_html")
    pytester.makeconftest(
        """
        import pytest
        from pytest_resilience.report.html import add_extra, html_report_requested
        from pytest_resilience.report.record import empty_record
        from pytest_resilience.report.svg import render_timeline

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(item, call):
            outcome = yield
            report = outcome.get_result()
            if report.when == "teardown" and html_report_requested(item.config):
                add_extra(report, render_timeline(item.nodeid, empty_record(31337, None)))
        """
    )
    pytester.makepyfile("def test_one(): pass")

    result = pytester.runpytest("--html=report.html", "--self-contained-html")

    result.assert_outcomes(passed=1)
    page = (pytester.path / "report.html").read_text(encoding="utf-8")
    assert page.count("resilience-seed=31337") == 1


def test_html_report_requested_follows_the_html_option() -> None:
    assert html_report_requested(SimpleNamespace(option=SimpleNamespace(htmlpath="r.html")))
    assert not html_report_requested(SimpleNamespace(option=SimpleNamespace(htmlpath=None)))
    assert not html_report_requested(SimpleNamespace(option=SimpleNamespace()))
