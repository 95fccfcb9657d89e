"""The status page's chart grid and per-day table in a real headless Chromium, at 1280 and 400 px.

The page is rendered in process from a view model with a busy month of decisions (no daemon, no
database: the numbers are checked by tests/process/test_status_page.py) and opened as a file. On a phone
the four scenario panels stand one per row, their text at a readable size, and the per-day table
scrolls sideways inside its own box instead of being cut off or widening the page. Screenshots
are kept in ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.status_chart import DayCounts, DecisionChart, chart_window
from scenario_engine.web.status_page import render_page
from scenario_engine.web.status_view import StoredData, build_page, deliveries_from_rows
from tests.process.test_programme_page import ARTIFACTS, browser
from tests.process.test_status_page import chromium_binary
from tests.support.status_page import NOW

PANELS = """Array.from(document.querySelectorAll('svg.chart-panel')).map(s => {
  const r = s.getBoundingClientRect();
  return {left: r.left, top: r.top, width: r.width};
})"""
# The size SVG text is shown at: its font size times the SVG's scale on screen.
SVG_TEXT_SIZES = """Array.from(document.querySelectorAll('svg.chart-panel text')).map(t => {
  const svg = t.ownerSVGElement;
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return parseFloat(getComputedStyle(t).fontSize) * scale;
})"""
# Elements wider than the screen, other than what is inside the table's own scrolling box.
OVERFLOW = """[document.documentElement.scrollWidth, Array.from(document.querySelectorAll('main *'))
  .filter(e => !e.closest('.table-scroll'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .map(e => e.tagName + '#' + e.id).slice(0, 5)]"""
TABLE_SCROLL = """(() => {
  const box = document.querySelector('#decision-table').parentElement;
  const before = [box.scrollWidth, box.clientWidth, box.getBoundingClientRect().right];
  box.scrollLeft = box.scrollWidth;
  const cells = box.querySelectorAll('tfoot td');
  const last = cells[cells.length - 1].getBoundingClientRect();
  return {scrollWidth: before[0], clientWidth: before[1], boxRight: before[2],
          lastRight: last.right, lastLeft: last.left, viewport: window.innerWidth};
})()"""


def busy_page(tmp_path: Path) -> Path:
    days = chart_window(NOW.date())
    counts: dict[str, dict[Any, DayCounts]] = {
        "inactivity": {d: DayCounts(120 + 7 * i, i % 5) for i, d in enumerate(days)},
        "milestone": {d: DayCounts(i % 4, i % 3) for i, d in enumerate(days) if i % 2},
        "certification_expiry": {days[-3]: DayCounts(12, 1), days[-10]: DayCounts(1_234, 56)},
    }
    pushes = [{"scenario_type": "inactivity", "status": "sent", "n": 3000}]
    view = build_page(
        RuntimeState(instance_id="layout-test"),
        StoredData(DecisionChart(days, counts), deliveries_from_rows(pushes)),
        NOW,
    )
    page = tmp_path / "status.html"
    # The page reloads itself every few seconds; a file opened for a test does not need to.
    page.write_text(render_page(view).replace('http-equiv="refresh"', 'data-refresh="off"'))
    return page


@pytest.mark.acceptance
async def test_status_chart_grid_and_table_at_1280_and_400_px(tmp_path: Path) -> None:
    chromium_binary()
    url = busy_page(tmp_path).as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    async with browser(tmp_path / "profile") as tools:
        # A wide screen: three panels side by side, their text at about its natural size.
        await tools.open(url, 1280)
        panels = await tools.evaluate(PANELS)
        assert len(panels) == 4
        assert len({round(p["top"]) for p in panels[:3]}) == 1 and panels[3]["top"] > panels[0]["top"]
        sizes = await tools.evaluate(SVG_TEXT_SIZES)
        assert min(sizes) >= 11, sorted(sizes)[:3]
        wide = await tools.evaluate(TABLE_SCROLL)
        assert wide["scrollWidth"] <= wide["clientWidth"] + 1, wide  # the whole table fits: no scrolling
        await tools.screenshot(ARTIFACTS / "status-page-full-1280.png")
        await tools.screenshot_of("#notifications", ARTIFACTS / "status-chart-1280.png")

        # A phone: one panel per row, readable text, nothing wider than the screen; the table
        # scrolls sideways in its own box, and its last column can be scrolled into view.
        await tools.open(url, 400, mobile=True)
        assert await tools.evaluate("window.innerWidth") == 400
        panels = await tools.evaluate(PANELS)
        assert len({round(p["left"]) for p in panels}) == 1, panels
        assert all(300 <= p["width"] <= 400 for p in panels), panels
        sizes = await tools.evaluate(SVG_TEXT_SIZES)
        assert min(sizes) >= 10, f"chart text too small on a phone: {sorted(sizes)[:3]}"
        overflow = await tools.evaluate(OVERFLOW)
        assert overflow == [400, []], f"horizontal overflow at 400 px: {overflow}"
        narrow = await tools.evaluate(TABLE_SCROLL)
        assert narrow["boxRight"] <= 400 and narrow["scrollWidth"] > narrow["clientWidth"], narrow
        assert narrow["lastRight"] <= narrow["boxRight"] + 1 and narrow["lastLeft"] >= 0, narrow
        hint = await tools.evaluate("getComputedStyle(document.querySelector('.scroll-hint')).display")
        assert hint == "inline"
        await tools.evaluate("document.querySelector('#decision-table').parentElement.scrollLeft = 0")
        await tools.screenshot(ARTIFACTS / "status-page-400.png")
        await tools.screenshot_of("#notifications", ARTIFACTS / "status-chart-400.png")

        # Print: the table is not clipped by its scrolling box.
        await tools.call("Emulation.setEmulatedMedia", media="print")
        shown = await tools.evaluate("getComputedStyle(document.querySelector('.table-scroll')).overflowX")
        assert shown == "visible"
