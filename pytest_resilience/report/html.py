"""Optional pytest-html integration: a test's timeline as an extra in its row of the report.

pytest-html (4.x) shows what a plugin puts in ``report.extras``, a list of dicts made by
``pytest_html.extras``; the plugin sets it from a ``pytest_runtest_makereport``
hookwrapper. pytest-html collects the extras of a test's setup, call and teardown
reports alike, so the teardown report (when the record exists) can carry it.

pytest-html is imported only inside these functions, when a report is being made, so
loading the plugin stays cheap and works without it.
"""

from __future__ import annotations

import base64
from typing import Any

__all__ = ["add_extra", "html_report_requested"]

NAME = "resilience timeline"


def html_report_requested(config: Any) -> bool:
    """True when this run writes a pytest-html report (``--html=PATH``), so a timeline is
    worth rendering; False without pytest-html or without the option."""
    return bool(getattr(config.option, "htmlpath", None))


def add_extra(report: Any, svg_text: str, *, inline: bool = True, name: str = NAME) -> bool:
    """Append ``svg_text`` (from :func:`~.svg.render_timeline`) to ``report.extras``.

    ``inline``: the SVG goes into the row as HTML, at full size. ``inline=False`` adds a
    base64 ``image/svg+xml`` image instead (a file beside the report, or a data URI with
    ``--self-contained-html``), which pytest-html's media viewer crops to 320x240: too
    small to read a timeline. Returns False, changing nothing, without pytest-html.
    """
    try:
        from pytest_html import extras
    except ImportError:
        return False
    if inline:
        # The SVG escapes every text it draws, so a path or message from the test cannot
        # inject markup into the report page.
        extra = extras.html(f'<div class="resilience-timeline">{svg_text}</div>')
    else:
        encoded = base64.b64encode(svg_text.encode("utf-8")).decode("ascii")
        extra = extras.svg(encoded, name=name)
    # pytest's reports have no ``extras`` until a plugin sets it.
    report.extras = [*getattr(report, "extras", []), extra]
    return True
