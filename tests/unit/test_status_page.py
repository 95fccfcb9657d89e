"""The status page (GET / on the status port), rendered by a real headless Chromium.

The acceptance test starts the real daemon, lets its first sweep write decisions next to
older ones inserted with SQL, and checks what Chromium rendered against the database. A
screenshot is kept in ``test-artifacts/status-page.png`` for people to look at.
"""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg
import pytest
from aiohttp import ClientSession

from scenario_engine.dev.embedded import free_port
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.server import serve_status
from scenario_engine.web.status_chart import (
    DayCounts,
    DecisionChart,
    chart_window,
    layout_chart,
)
from scenario_engine.web.status_view import (
    Period,
    StoredData,
    deliveries_from_rows,
    describe_period,
)
from tests.support.status_page import NOW, SCENARIOS, page_for, parse_dom


async def test_status_page_renders_while_the_database_is_down() -> None:
    """In process: a pool pointing at a closed port; the page still answers 200 and escapes its input."""
    dead_port = free_port()
    pool = await asyncpg.create_pool(
        f"postgresql://nobody@127.0.0.1:{dead_port}/nothing", min_size=0, max_size=2
    )
    assert pool is not None
    state = RuntimeState(instance_id="<b>host</b>&'x'")
    state.set_leader(False)
    state.last_sweep = {"sweep_key": "<i>key</i>", "as_of": "2025-01-01T00:00:00+00:00", "per_rule": {}}
    port = free_port()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: serve_status(state, "127.0.0.1", port, pool=pool, task_status=task_status)
            )
            async with ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/") as resp:
                    assert resp.status == 200
                    assert resp.content_type == "text/html"
                    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
                    page = await resp.text()
                async with http.get(f"http://127.0.0.1:{port}/status") as resp:
                    assert resp.status == 200  # the JSON endpoint is unchanged
            tg.cancel_scope.cancel()
    finally:
        await pool.close()
    dom = parse_dom(page)
    assert "Chart unavailable" in dom.by_id("chart-unavailable").text
    assert not dom.iter("svg")
    # Without the database the instance leads nothing, and cannot know who does.
    assert dom.by_id("role").text == "Not leading"
    assert "another instance, the leader" not in dom.text.lower()
    assert dom.by_id("readiness").text == "Not ready"
    assert dom.by_id("instance-id").text == "<b>host</b>&'x'"
    assert "<b>host" not in page and "&lt;b&gt;host&lt;/b&gt;&amp;" in page
    assert "<i>key</i>" not in page and "&lt;i&gt;key&lt;/i&gt;" in page


def test_without_the_database_the_instance_is_not_called_a_follower() -> None:
    state = RuntimeState(instance_id="solo")
    state.set_database(False)
    view, dom = page_for(state)
    assert view.role.key == "unknown"
    assert dom.by_id("role").text == "Not leading"
    assert "unreachable" in dom.by_id("role-card").text
    assert "Unknown while the database is unreachable" in dom.by_id("next-sweep-card").text
    state.set_database(True)
    assert page_for(state)[1].by_id("role").text == "Follower"
    state.set_leader(True)
    assert page_for(state)[1].by_id("role").text == "Leader"


def test_period_keys_are_shown_as_the_start_of_the_period() -> None:
    every = describe_period("every60s:29935153")
    assert every == Period(dt.datetime.fromtimestamp(29935153 * 60, dt.UTC), "every 1 min")
    assert describe_period("every0.5s:4") == Period(
        dt.datetime(1970, 1, 1, 0, 0, 2, tzinfo=dt.UTC), "every 0.5 s"
    )
    daily = describe_period("daily@03:30:2026-03-01")
    assert daily == Period(dt.datetime(2026, 3, 1, 3, 30, tzinfo=dt.UTC), "daily at 03:30 UTC")
    assert describe_period("<i>key</i>") is None and describe_period("every0s:1") is None
    state = RuntimeState(instance_id="x")
    state.last_sweep = {"sweep_key": "every60s:29935153", "per_rule": {}}
    _, dom = page_for(state)
    period = dom.by_id("sweep-period")
    (when,) = period.iter("time")
    assert when.text == "01 Dec 2026, 07:13:00 UTC" and when.attrs["datetime"] == "2026-12-01T07:13:00+00:00"
    assert period.text.startswith("started") and "(sweeps every 1 min)" in period.text
    assert "29935153" not in dom.by_id("last-sweep").text


def test_each_panel_has_its_own_scale() -> None:
    """A scenario with a handful of decisions is not a sliver beside one with thousands."""
    days = chart_window(NOW.date())
    chart = DecisionChart(
        days, {"inactivity": {days[-1]: DayCounts(1200, 30)}, "milestone": {days[-3]: DayCounts(2, 1)}}
    )
    layout = layout_chart(chart)
    panels = {p.scenario: p for p in layout.panels}
    assert [panels[s].axis_max for s in SCENARIOS] == [1500, 3, 4, 4]
    for scenario in ("inactivity", "milestone"):
        panel = panels[scenario]
        tallest = sum(b.h for b in panel.bars if b.day == max(b.day for b in panel.bars))
        assert tallest >= 0.6 * panel.plot.h, (scenario, tallest)
        for bar in panel.bars:
            assert panel.plot.y - 1e-9 <= bar.y and bar.y + bar.h <= panel.plot.y + panel.plot.h + 1e-9
    assert not panels["certification_expiry"].bars and panels["certification_expiry"].empty is not None


@pytest.mark.parametrize("peak", [0, 1, 7, 99, 1234, 98_765, 4_000_000])
def test_the_y_axis_title_covers_no_tick_label(peak: int) -> None:
    days = chart_window(NOW.date())
    panel = layout_chart(DecisionChart(days, {"inactivity": {days[-1]: DayCounts(peak, 0)}})).panels[0]
    labels = [*panel.y_ticks, *panel.x_ticks, panel.title, panel.totals, panel.x_title]
    for label in labels:
        assert not panel.y_title.box.overlaps(label.box), (peak, label)
    for tick in panel.y_ticks:  # tick labels stay inside the panel, left of the plot
        assert tick.box.x >= panel.x and tick.box.x + tick.box.w <= panel.plot.x


def test_sent_is_labelled_queued_and_deliveries_are_shown() -> None:
    rows = [
        {"scenario_type": "inactivity", "status": "sent", "n": 5},
        {"scenario_type": "inactivity", "status": "pending", "n": 1},
        {"scenario_type": "inactivity", "status": "sending", "n": 2},
        {"scenario_type": "milestone", "status": "dead", "n": 3},
        {"scenario_type": "certification_expiry", "status": "abandoned", "n": 1},
    ]
    deliveries = deliveries_from_rows(rows)
    assert [r.counts for r in deliveries.rows] == [
        (5, 3, 0, 0, 0, 0),
        (0, 0, 0, 3, 0, 0),
        (0, 0, 0, 0, 0, 1),
        (0, 0, 0, 0, 0, 0),  # anniversary: nothing yet
    ]
    days = chart_window(NOW.date())
    chart = DecisionChart(days, {"inactivity": {days[-1]: DayCounts(8, 1)}})
    _, dom = page_for(RuntimeState(instance_id="x"), StoredData(chart, deliveries))
    legend = {li.text for li in dom.by_id("chart-legend").iter("li")}
    assert "Queued for delivery" in legend and "Sent" not in legend
    assert "8 queued · 1 suppressed" in dom.by_id("decision-chart").text
    column_heads = dom.by_id("decision-table").iter("thead")[0].iter("tr")[1].iter("th")
    assert [th.text for th in column_heads][1:3] == ["Queued", "Suppressed"]
    table = dom.by_id("delivery-table")
    assert [th.text for th in table.iter("thead")[0].iter("th")][1:3] == ["Delivered", "Waiting"]
    assert [td.text for td in table.iter("tfoot")[0].iter("td")] == ["5", "3", "0", "3", "0", "1"]
