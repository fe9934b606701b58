"""One test's record drawn as an SVG timeline: faults, every HTTP attempt, the verdicts.

``render_timeline(nodeid, record)`` takes the :class:`~.record.TestRecord` of a test (as
:func:`~.record.record_of` builds it, or read back from the JSON report with
``TestRecord.from_json``) and returns a standalone SVG document, built with the standard
library's ``xml.etree`` (which escapes what it writes) and no plotting library.  It
depends only on its arguments: the same record gives the same bytes.

Styling is done with presentation attributes, not a ``<style>`` sheet, and no element
has an ``id``: pytest-html inlines the SVG into its page, where a stylesheet would apply
to the whole report and ids of two tests' pictures would clash.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

if TYPE_CHECKING:
    from .record import ExchangeRecord, FaultRecord, RunRecord, ServiceRecord, TestRecord

__all__ = ["MAX_LANES", "render_timeline"]

WIDTH = 900
PAD = 10
LABEL_W = 220
"""Left column for lane labels; the plot takes the rest of the width."""
PLOT_X0 = PAD + LABEL_W
PLOT_X1 = WIDTH - PAD - 10
LANE_H = 18
MARK_H = 12
MIN_MARK_W = 3.0
"""An attempt that took no time, or got no answer, still needs a visible mark."""
MAX_LANES = 40
"""Operation lanes drawn, over all services; the rest are counted in a note."""
MAX_FAULT_ROWS = 12
MAX_RUN_ROWS = 10
MAX_VERDICT_LINES = 6
MAX_HEADER_LINES = 30
"""Headers listed per side in an attempt's hover text; the JSON report has them all."""

# Monospace, so that truncating by character count fits the columns.
CHAR_W = 6.7
LABEL_CHARS = int((LABEL_W - 8) / CHAR_W)
TEXT_CHARS = int((WIDTH - 2 * PAD) / CHAR_W)
PLOT_CHARS = int((PLOT_X1 - PLOT_X0 - 4) / CHAR_W)

COLOURS = {
    "2xx": "#2ca02c",
    "429": "#ff7f0e",
    "5xx": "#d62728",
    "other": "#1f77b4",
    "none": "#8c8c8c",
}
FAULT_FILL = "#9467bd"
FAULT_BAND_OPACITY = "0.12"
ZEBRA = "#f4f4f4"
AXIS = "#555555"
GRID = "#e0e0e0"
FAIL_TEXT = "#b00020"
LOST_DASH = "3,2"

# Characters XML 1.0 forbids even escaped: a request path or a message may carry them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_timeline(nodeid: str, record: TestRecord) -> str:
    """A standalone SVG document picturing the test ``nodeid`` from its ``record``."""
    services, faults, runs = record.services, record.faults, record.runs
    scale = _scale(_times(record))
    canvas = _Canvas()

    _header(canvas, nodeid, record)
    _legend(canvas)
    canvas.y += 18  # tick labels sit above the plot
    plot_top = canvas.y
    _fault_rows(canvas, faults, scale)
    _lanes(canvas, services, scale)
    _run_rows(canvas, runs, scale)
    if not services and not faults and not runs:
        canvas.row_text("nothing recorded: no service, fault or run", colour=AXIS)
    plot_bottom = canvas.y
    # Bands and grid are drawn behind the lanes, across all of them, once their extent is known.
    canvas.back.extend(_fault_bands(faults, scale, plot_top, plot_bottom))
    canvas.back.extend(_axis(scale, plot_top, plot_bottom))

    height = math.ceil(plot_bottom + PAD)
    return _document(nodeid, height, canvas)


# --- layout -------------------------------------------------------------------------


@dataclass
class _Canvas:
    """Elements drawn so far, top to bottom; ``back`` is painted under ``front``."""

    y: float = PAD
    back: list[Element] = field(default_factory=list)
    front: list[Element] = field(default_factory=list)
    lanes: int = 0
    """Lanes drawn so far, to shade every other one."""

    def line_text(
        self,
        text: str,
        *,
        size: int = 11,
        colour: str = "#000",
        title: str | None = None,
        **attrs: Any,
    ) -> None:
        """A full-width line of text (header, notes); cut to fit, whole in its tooltip."""
        self.y += size + 5
        clipped = _clip(text, int(TEXT_CHARS * 11 / size))
        if title is None and clipped != text:
            title = text
        self.front.append(
            _text(PAD, self.y - 4, clipped, size=size, fill=colour, title=title, **attrs)
        )

    def lane(self, label: str, *, title: str | None = None, bold: bool = False) -> float:
        """Start a lane with ``label`` in the left column; returns its top."""
        top = self.y
        if self.lanes % 2:
            self.back.append(_rect(PAD, top, PLOT_X1 - PAD, LANE_H, fill=ZEBRA))
        self.lanes += 1
        weight: dict[str, Any] = {"font-weight": "bold"} if bold else {}
        clipped = _clip(label, LABEL_CHARS)
        if title is None and clipped != label:
            title = label
        if title == clipped:
            title = None  # a tooltip repeating the label adds nothing
        self.front.append(
            _text(PAD + 2, top + LANE_H - 5, clipped, title=title, cls="lane-label", **weight)
        )
        self.y += LANE_H
        return top

    def row_text(self, text: str, *, colour: str = "#000", cls: str = "note") -> None:
        """A lane with no label, holding only ``text`` in the plot area."""
        top = self.lane("")
        self.front.append(_text(PLOT_X0 + 2, top + LANE_H - 5, text, fill=colour, cls=cls))


@dataclass(frozen=True, slots=True)
class _Scale:
    """Milliseconds from the start of the test to x pixels."""

    lo: float
    hi: float
    step: float

    def x(self, ms: float) -> float:
        ms = min(max(ms, self.lo), self.hi)
        return PLOT_X0 + (ms - self.lo) / (self.hi - self.lo) * (PLOT_X1 - PLOT_X0)


def _times(record: TestRecord) -> list[float]:
    """Every time the picture must show, in ms."""
    times: list[float] = []
    for fault in record.faults:
        times += _numbers(fault.applied_ms, fault.healed_ms)
    for service in record.services:
        for ex in service.exchanges:
            times += _numbers(ex.start_ms, ex.end_ms, _retry_after_end(ex))
    for run in record.runs:
        times += _numbers(run.start_ms, run.end_ms)
    times += [verdict.at_ms for verdict in record.verdicts]
    return times


def _scale(times: Sequence[float]) -> _Scale:
    """A domain from 0 (or the earliest time) to the latest time, ending on a round tick."""
    first = min([0.0, *times])
    last = max([first, *times])
    span = last - first or 100.0  # an empty record still gets an axis
    step = _tick_step(span)
    lo = math.floor(first / step) * step
    hi = max(math.ceil((first + span) / step) * step, lo + step)
    return _Scale(lo, hi, step)


def _tick_step(span: float, target: int = 8) -> float:
    """The 1-2-5 step giving about ``target`` ticks over ``span``."""
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


# --- sections -----------------------------------------------------------------------


def _header(canvas: _Canvas, nodeid: str, record: TestRecord) -> None:
    canvas.line_text(nodeid, size=13, cls="title", **{"font-weight": "bold"})
    verdicts = record.verdicts
    failing = record.broken
    for verdict in failing[:MAX_VERDICT_LINES]:
        message = verdict.message
        # The rule broken (the record keeps a failure's first line); the line is cut to
        # fit, the tooltip holds it whole.
        first = message.splitlines()[0] if message else ""
        where = f" ({verdict.service})" if verdict.service else ""
        canvas.line_text(
            f"FAILED {verdict.name}{where}: {first}",
            colour=FAIL_TEXT,
            title=message,
            cls="verdict",
        )
    if len(failing) > MAX_VERDICT_LINES:
        more = len(failing) - MAX_VERDICT_LINES
        canvas.line_text(f"+{more} more failing verdicts", colour=FAIL_TEXT, cls="more")
    if verdicts and not failing:
        canvas.line_text(f"{len(verdicts)} verdicts, all passed", colour=COLOURS["2xx"])
    canvas.line_text(f"replay: --resilience-seed={record.seed}", colour=AXIS, cls="seed")
    explored = record.explored
    if explored is not None and explored.failing:
        canvas.line_text(
            f"explore: failing schedule after {explored.examples} schedules (pictured below):",
            colour=FAIL_TEXT,
            cls="explore",
        )
        for decorator in explored.failing:
            canvas.line_text(decorator, colour=FAIL_TEXT, cls="explore")


def _legend(canvas: _Canvas) -> None:
    entries: list[tuple[str, dict[str, Any]]] = [
        ("2xx", {"fill": COLOURS["2xx"]}),
        ("429", {"fill": COLOURS["429"]}),
        ("5xx", {"fill": COLOURS["5xx"]}),
        ("other status", {"fill": COLOURS["other"]}),
        ("no answer", {"fill": COLOURS["none"]}),
        ("answer lost", _lost_style(COLOURS["2xx"])),
        ("Retry-After wait", {}),
        ("fault", {"fill": FAULT_FILL, "fill-opacity": "0.35"}),
    ]
    canvas.y += 6
    top = canvas.y
    x = float(PAD)
    for label, style in entries:
        if label == "Retry-After wait":
            canvas.front.append(_rect(x, top + 5, 14, 2, fill=COLOURS["429"], cls="legend"))
        else:
            canvas.front.append(_rect(x, top, 10, MARK_H - 2, cls="legend", **style))
        canvas.front.append(_text(x + 16, top + 9, label, cls="legend"))
        x += 16 + len(label) * CHAR_W + 14
    canvas.y += MARK_H + 4


def _axis(scale: _Scale, plot_top: float, plot_bottom: float) -> list[Element]:
    parts = [
        _text(PAD + 2, plot_top - 6, "ms since the test began", fill=AXIS, cls="axis-label"),
        _line(PLOT_X0, plot_top, PLOT_X1, plot_top, stroke=AXIS),
    ]
    count = round((scale.hi - scale.lo) / scale.step)
    for i in range(count + 1):
        ms = scale.lo + i * scale.step
        x = scale.x(ms)
        parts.append(_line(x, plot_top, x, plot_bottom, stroke=GRID, cls="grid"))
        parts.append(_line(x, plot_top - 4, x, plot_top, stroke=AXIS, cls="tick"))
        # data-ms keeps the tick's exact value, which a rounded label may not show.
        label: dict[str, Any] = {"text-anchor": "middle", "data-ms": _num(ms)}
        parts.append(
            _text(x, plot_top - 6, _ms_label(ms, scale.step), fill=AXIS, cls="tick-label", **label)
        )
    return parts


def _fault_rows(canvas: _Canvas, faults: Sequence[FaultRecord], scale: _Scale) -> None:
    """One row per fault: a bar over its window, named by kind and service."""
    for fault in faults[:MAX_FAULT_ROWS]:
        name = _fault_name(fault)
        detail = fault.detail
        healed = fault.healed_ms
        top = canvas.lane(name, title=f"{name} {detail}".rstrip())
        x0, x1 = _fault_extent(fault, scale)
        canvas.front.append(
            _rect(
                x0,
                top + 3,
                x1 - x0,
                LANE_H - 6,
                fill=FAULT_FILL,
                cls="fault",
                **{"fill-opacity": "0.35"},
            )
        )
        # The left column names the fault; the bar says how it was set and if it ended.
        text = f"{detail} (not healed)".lstrip() if healed is None else detail
        if text:
            canvas.front.append(_bar_label(x0, top + LANE_H - 5, text, cls="fault-label"))
    if len(faults) > MAX_FAULT_ROWS:
        canvas.row_text(f"+{len(faults) - MAX_FAULT_ROWS} more faults (bands drawn)", cls="more")


def _fault_bands(
    faults: Iterable[FaultRecord], scale: _Scale, top: float, bottom: float
) -> list[Element]:
    """Shade each fault's window across every lane, so an attempt reads against it."""
    bands = []
    for fault in faults:
        x0, x1 = _fault_extent(fault, scale)
        bands.append(
            _rect(
                x0,
                top,
                x1 - x0,
                bottom - top,
                fill=FAULT_FILL,
                cls="fault-band",
                title=_fault_name(fault),
                **{"fill-opacity": FAULT_BAND_OPACITY},
            )
        )
    return bands


def _fault_extent(fault: FaultRecord, scale: _Scale) -> tuple[float, float]:
    """x of the fault's start and end; a fault never healed runs to the end of the picture."""
    healed = scale.hi if fault.healed_ms is None else fault.healed_ms
    x0 = scale.x(fault.applied_ms)
    return x0, max(scale.x(healed), x0 + 1)


def _fault_name(fault: FaultRecord) -> str:
    return f"{fault.kind} {fault.service}"


def _lanes(canvas: _Canvas, services: Sequence[ServiceRecord], scale: _Scale) -> None:
    budget = MAX_LANES
    hidden_ops = hidden_attempts = 0
    for service in services:
        if service.type == "http":
            operations = _operations(service.exchanges)
            _service_row(canvas, service, len(operations))
            for label, attempts in operations[:budget]:
                _operation_lane(canvas, label, attempts, scale)
            hidden = operations[budget:]
            budget = max(budget - len(operations), 0)
            hidden_ops += len(hidden)
            hidden_attempts += sum(len(attempts) for _, attempts in hidden)
        else:
            _tcp_row(canvas, service)
    if hidden_ops:
        canvas.row_text(
            f"+{hidden_ops} more operations ({hidden_attempts} attempts) not drawn",
            colour=AXIS,
            cls="more",
        )


def _operations(
    exchanges: Iterable[ExchangeRecord],
) -> list[tuple[str, list[ExchangeRecord]]]:
    """Attempts grouped by operation label, in the order the operations began."""
    grouped: dict[str, list[ExchangeRecord]] = {}
    for ex in exchanges:
        # record_of labels every attempt; a hand-made record may not, so fall back to the route.
        label = ex.operation or f"{ex.method} {ex.path}"
        grouped.setdefault(label, []).append(ex)
    return list(grouped.items())


def _service_row(canvas: _Canvas, service: ServiceRecord, operations: int) -> None:
    canvas.lane(f"{service.name} (http)", bold=True)
    figures = (
        f"{_count(service.requests or 0, 'request')}, {_count(operations, 'operation')}, "
        f"{service.retried or 0} retried, {service.failed_attempts or 0} failed, "
        f"{service.lost_answers or 0} lost, {_count(service.effects or 0, 'effect')} "
        f"({service.duplicated_effects or 0} duplicated), "
        f"{_count(service.connections, 'connection')}"
    )
    canvas.front.append(_bar_label(PLOT_X0, canvas.y - 5, figures, fill=AXIS, cls="service"))


def _tcp_row(canvas: _Canvas, service: ServiceRecord) -> None:
    # The record keeps only counts for TCP services, so the lane says them rather than
    # drawing connections it does not know the times of.
    canvas.lane(f"{service.name} (tcp)", bold=True)
    text = f"{_count(service.connections, 'connection')}, {service.resets} reset"
    canvas.front.append(_bar_label(PLOT_X0, canvas.y - 5, text, fill=AXIS, cls="tcp"))


def _operation_lane(
    canvas: _Canvas, label: str, attempts: Sequence[ExchangeRecord], scale: _Scale
) -> None:
    top = canvas.lane(label)
    for number, ex in enumerate(attempts, start=1):
        canvas.front.extend(_attempt(ex, number, top, scale))


def _attempt(ex: ExchangeRecord, number: int, top: float, scale: _Scale) -> list[Element]:
    """The attempt's mark, then the Retry-After wait its answer asked for, if any."""
    start, end = ex.start_ms, ex.end_ms
    x0 = scale.x(start)
    width = MIN_MARK_W if end is None else max(scale.x(end) - x0, MIN_MARK_W)
    colour = COLOURS[_outcome(ex.status)]
    lost = ex.delivered is False
    style = _lost_style(colour) if lost else {"fill": colour}
    cls = "attempt lost" if lost else "attempt"
    y = top + (LANE_H - MARK_H) / 2
    parts = [_rect(x0, y, width, MARK_H, cls=cls, title=_attempt_title(ex, number), **style)]
    wait_end = _retry_after_end(ex)
    if wait_end is not None:
        parts += _retry_after(scale.x(start if end is None else end), scale.x(wait_end), y, ex)
    return parts


def _retry_after(x0: float, x1: float, y: float, ex: ExchangeRecord) -> list[Element]:
    """A thin bar over the wait, closed by a tick where the earliest polite retry may start."""
    title = f"Retry-After {ex.retry_after_s:g} s"
    mid = y + MARK_H / 2
    return [
        _rect(
            x0, mid - 1, max(x1 - x0, 1.0), 2, fill=COLOURS["429"], cls="retry-after", title=title
        ),
        _rect(x1 - 1, y + 2, 1, MARK_H - 4, fill=COLOURS["429"], cls="retry-after-end"),
    ]


def _retry_after_end(ex: ExchangeRecord) -> float | None:
    """When the wait the answer's Retry-After asked for ends (ms), counted from the answer."""
    if ex.retry_after_s is None:
        return None
    answered = ex.start_ms if ex.end_ms is None else ex.end_ms
    return answered + ex.retry_after_s * 1000.0


def _outcome(status: int | None) -> str:
    if status is None:
        return "none"
    if 200 <= status < 300:
        return "2xx"
    if status == 429:
        return "429"
    if 500 <= status < 600:
        return "5xx"
    return "other"


def _lost_style(colour: str) -> dict[str, Any]:
    # Hollow and dashed: the service answered (the colour says what), the client never saw it.
    return {
        "fill": "#ffffff",
        "stroke": colour,
        "stroke-width": "1.5",
        "stroke-dasharray": LOST_DASH,
    }


def _attempt_title(ex: ExchangeRecord, number: int) -> str:
    answer = "no answer" if ex.status is None else str(ex.status)
    if ex.delivered is False:
        answer += " lost"
    how = ex.step + (", scripted" if ex.scripted else "")
    when = f"{_num(ex.start_ms)}-{'?' if ex.end_ms is None else _num(ex.end_ms)} ms"
    key = f" key={ex.key}" if ex.key else ""
    text = f"try {number}: {ex.method} {ex.path} -> {answer} ({how}) {when}{key}"
    for title, pairs in (("sent", ex.headers), ("answered", ex.answer_headers)):
        if pairs:
            lines = [f"  {k}: {_clip(v, 160)}" for k, v in pairs[:MAX_HEADER_LINES]]
            more = len(pairs) - MAX_HEADER_LINES
            lines += [f"  ... {more} more"] if more > 0 else []
            text += f"\n{title}:\n" + "\n".join(lines)
    return text


def _run_rows(canvas: _Canvas, runs: Sequence[RunRecord], scale: _Scale) -> None:
    for number, run in enumerate(runs[:MAX_RUN_ROWS], start=1):
        top = canvas.lane(f"run {number}", bold=True)
        start, end = run.start_ms, run.end_ms
        text = (
            f"{run.ok}/{run.calls} calls ok ({run.availability * 100:.1f}%), "
            f"slowest {_num(run.slowest_ms)} ms"
        )
        x0: float = PLOT_X0
        if start is not None and end is not None:
            x0 = scale.x(start)
            width = max(scale.x(end) - x0, 1.0)
            canvas.front.append(_rect(x0, top + 11, width, 4, fill=AXIS, cls="run", title=text))
        canvas.front.append(_bar_label(x0, top + 9, text, size=9, fill=AXIS, cls="run-label"))
    if len(runs) > MAX_RUN_ROWS:
        canvas.row_text(f"+{len(runs) - MAX_RUN_ROWS} more runs", cls="more")


# --- SVG text -----------------------------------------------------------------------


def _document(nodeid: str, height: int, canvas: _Canvas) -> str:
    root = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(WIDTH),
            "height": str(height),
            "viewBox": f"0 0 {WIDTH} {height}",
            "font-family": "monospace",
            "font-size": "11",
        },
    )
    ET.SubElement(root, "title").text = _clean("resilience timeline: " + nodeid)
    root.append(_rect(0, 0, WIDTH, height, fill="#ffffff"))
    root.extend(canvas.back)
    root.extend(canvas.front)
    # One element a line: stable text, and a diff of two pictures reads line by line.
    root.text = "\n"
    for child in root:
        child.tail = "\n"
    return ET.tostring(root, encoding="unicode") + "\n"


def _element(
    tag: str, attrs: Mapping[str, Any], title: str | None = None, text: str = ""
) -> Element:
    element = ET.Element(
        tag, {_attr_name(k): _clean(_attr_value(v)) for k, v in attrs.items() if v is not None}
    )
    if title:
        # A <title> first child is the tooltip a browser shows: the full text a label cut.
        tooltip = ET.SubElement(element, "title")
        tooltip.text = _clean(title)
        tooltip.tail = _clean(text) or None
    elif text:
        element.text = _clean(text)
    return element


def _rect(
    x: float, y: float, w: float, h: float, *, title: str | None = None, **attrs: Any
) -> Element:
    return _element("rect", {"x": x, "y": y, "width": w, "height": h, **attrs}, title)


def _line(x1: float, y1: float, x2: float, y2: float, **attrs: Any) -> Element:
    return _element("line", {"x1": x1, "y1": y1, "x2": x2, "y2": y2, **attrs})


def _text(
    x: float,
    y: float,
    text: str,
    *,
    size: int | None = None,
    title: str | None = None,
    **attrs: Any,
) -> Element:
    return _element("text", {"x": x, "y": y, "font-size": size, **attrs}, title, text)


def _attr_name(key: str) -> str:
    # ``cls`` stands for ``class``, a Python keyword; dashed SVG names come in via **{...}.
    return "class" if key == "cls" else key


def _attr_value(value: Any) -> str:
    return _num(value) if isinstance(value, float) else str(value)


def _clean(text: str) -> str:
    """``text`` with the characters XML forbids even escaped (a path or message may carry
    them) replaced; ElementTree escapes the rest as it writes."""
    return _NOT_XML.sub("\ufffd", text)


def _bar_label(x: float, y: float, text: str, *, size: int = 11, **attrs: Any) -> Element:
    """Text starting just right of ``x``, cut to the plot and moved left to stay inside it."""
    text = _clip(text, PLOT_CHARS)
    width = len(text) * CHAR_W * size / 11
    left = max(min(x + 3, PLOT_X1 - width), PLOT_X0 + 2)
    return _text(left, y, text, size=size, **attrs)


def _count(n: Any, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _num(value: float) -> str:
    """A coordinate or time with at most two decimals, no trailing zeros (stable text)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _ms_label(ms: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{ms:.{decimals}f}"


def _numbers(*values: float | None) -> list[float]:
    return [v for v in values if v is not None]
