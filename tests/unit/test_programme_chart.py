"""The programme page's charts (web/programme_chart.py), as geometry: no database, no browser."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scenario_engine.web.programme_chart import (
    FOREST_W,
    MEASURING_LEGEND,
    WEEK_W,
    WEEK_X_TITLE,
    WEEK_Y_TITLE,
    ForestEntry,
    fit,
    forest_range,
    layout_forest,
    layout_weekly,
    signed,
)
from scenario_engine.web.status_chart import Label

WEEKS = 12
LABELS = [f"week of {d} Nov" for d in range(1, WEEKS + 1)]
SHORT = [f"{d} Nov" for d in range(1, WEEKS + 1)]


def inside(label: Label, width: float) -> bool:
    box = label.box
    return box.x >= -0.01 and box.x + box.w <= width + 0.01


# --- the weekly chart ---------------------------------------------------------------------------


def test_the_weekly_chart_has_axes_week_labels_and_a_legend() -> None:
    values = [0, 3, 8, 40, 12, 0, 0, 5, 9, 21, 17, 2]
    mature = [True] * 9 + [False] * 3
    chart = layout_weekly(values, LABELS, SHORT, mature)
    # The y axis: 1-2-5 ticks from 0 to a maximum above the busiest week, with its unit.
    assert chart.axis_max == 40 and [t.text for t in chart.y_ticks] == ["0", "10", "20", "30", "40"]
    assert chart.y_title.text == "Messages sent per week" == WEEK_Y_TITLE
    # The x axis: the latest week and every third before it, in order, and its title.
    assert [t.text for t in chart.x_ticks] == ["12 Nov", "9 Nov", "6 Nov", "3 Nov"]
    assert chart.x_title.text == WEEK_X_TITLE
    assert len(chart.x_marks) == len(chart.x_ticks)
    # A bar per week with a message, inside the plot, as tall as its share of the axis.
    assert [b.value for b in chart.bars] == [v for v in values if v]
    plot = chart.plot
    for bar in chart.bars:
        assert plot.x <= bar.x and bar.x + bar.w <= plot.x + plot.w
        assert plot.y - 1e-9 <= bar.y and abs(bar.y + bar.h - (plot.y + plot.h)) < 1e-9
        assert bar.h == pytest.approx(max(2.0, plot.h * bar.value / chart.axis_max))
    # Weeks still being measured are marked (hatched), in the legend and in the text alternative.
    assert [b.mature for b in chart.bars] == [True] * 6 + [False] * 3
    assert chart.any_measuring
    assert [e.kind for e in chart.legend] == ["sent", "measuring"]
    assert chart.legend[1].label.text == MEASURING_LEGEND
    assert "week of 10 Nov: 21 (results still being measured)" in chart.description
    assert "week of 4 Nov: 40," in chart.description
    assert "still being measured" in chart.bars[-1].tip


@pytest.mark.parametrize("peak", [0, 1, 7, 99, 1234, 98_765, 4_000_000])
def test_no_label_of_the_weekly_chart_covers_another_or_leaves_it(peak: int) -> None:
    values = [peak] * WEEKS
    chart = layout_weekly(values, LABELS, SHORT, [True] * WEEKS)
    labels = [*chart.y_ticks, *chart.x_ticks, chart.y_title, chart.x_title, *(e.label for e in chart.legend)]
    for a, b in itertools.combinations(labels, 2):
        assert not a.box.overlaps(b.box), (peak, a, b)
    for label in labels:
        assert inside(label, WEEK_W), label
        assert label.box.y >= 0 and label.box.y + label.box.h <= chart.height
    for tick in chart.y_ticks:  # left of the plot
        assert tick.box.x + tick.box.w <= chart.plot.x


def test_a_quiet_period_draws_no_bar_and_a_measured_one_no_hatching() -> None:
    chart = layout_weekly([0] * WEEKS, LABELS, SHORT, [False] * WEEKS)
    assert chart.bars == () and not chart.any_measuring and chart.axis_max == 4
    with pytest.raises(ValueError, match="one value"):
        layout_weekly([1, 2], LABELS, SHORT, [True, True])


# --- the forest plot ----------------------------------------------------------------------------

MEASURED = ForestEntry("a-quiet", "Riverside", "Check-ins with quiet mentors", 35.0, 12.0, 53.0)
WORSE = ForestEntry("b-quiet", "Hillcrest", "Check-ins with quiet mentors", -30.0, -47.9, -8.5)
UNCLEAR = ForestEntry("a-cert", "Riverside", "Certification reminders", 2.0, -4.0, 8.0)
SMALL = ForestEntry("c-quiet", "Small org", "Check-ins with quiet mentors", None, None, None)
UNMEASURED = ForestEntry("a-mile", "Riverside", "Milestone celebrations", None, None, None, "not measured")


def test_each_row_has_a_point_and_its_range_or_says_why_not() -> None:
    plot = layout_forest([MEASURED, UNCLEAR, UNMEASURED, WORSE, SMALL])
    assert [g.text for g in plot.groups] == ["Riverside", "Hillcrest", "Small org"]
    assert [r.key for r in plot.rows] == ["a-quiet", "a-cert", "a-mile", "b-quiet", "c-quiet"]
    assert [r.tone for r in plot.rows] == ["good", "unclear", "missing", "bad", "missing"]
    assert [r.measured for r in plot.rows] == [True, True, False, True, False]
    for row, entry in zip(plot.rows, [MEASURED, UNCLEAR, UNMEASURED, WORSE, SMALL], strict=True):
        if entry.point is None:
            assert row.point_x is None and row.interval is None and row.caps == ()
            assert row.value.text == entry.missing
            continue
        assert entry.low is not None and entry.high is not None
        assert row.point_x == pytest.approx(plot.x(entry.point))
        assert row.low_x == pytest.approx(plot.x(entry.low))
        assert row.high_x == pytest.approx(plot.x(entry.high))
        assert row.low_x is not None and row.high_x is not None and row.point_x is not None
        assert row.low_x <= row.point_x <= row.high_x
        assert row.band.x <= row.low_x and row.high_x <= row.band.x + row.band.w
        assert row.interval is not None and row.interval.y1 == row.interval.y2 == row.cy
        assert len(row.caps) == 2
        assert row.value.text == f"{signed(entry.point)} ({signed(entry.low)} to {signed(entry.high)})"
    assert plot.rows[0].value.text == "+35.0 (+12.0 to +53.0)"
    assert plot.rows[3].value.text == "\u221230.0 (\u221247.9 to \u22128.5)"
    # The zero line crosses every row, at zero; right of it means "more with the message".
    assert plot.zero.x1 == plot.zero.x2 == pytest.approx(plot.x(0))
    assert plot.zero.y1 <= plot.rows[0].band.y and plot.zero.y2 >= plot.rows[-1].band.y + plot.rows[-1].band.h
    assert plot.hints[0].x < plot.zero.x1 < plot.hints[1].x and "higher" in plot.hints[1].text
    assert plot.x(plot.low) < plot.x(0) < plot.x(plot.high)
    assert "0" in [t.text for t in plot.x_ticks]
    assert "3 of 5 measured" in plot.description and "not enough data yet" in plot.description


def test_rows_are_stacked_without_overlap_and_text_stays_inside() -> None:
    long_group = "Organisation 00000000-0000-0000-0000-00000000000a"
    long_label = "Check-ins with quiet mentors (inactive_30d_strict_variant)"
    entries = [
        ForestEntry("1", long_group, long_label, 3.0, -1.0, 7.0),
        ForestEntry("2", long_group, "Milestone celebrations", None, None, None),
        MEASURED,
    ]
    plot = layout_forest(entries)
    texts = [*plot.groups, *(r.label for r in plot.rows), *(r.value for r in plot.rows)]
    for label in [*texts, *plot.x_ticks, *plot.hints, plot.x_title]:
        assert inside(label, FOREST_W), label
        assert label.box.y >= 0 and label.box.y + label.box.h <= plot.height
    # A long label is cut at its end; an organisation's id in the middle, keeping what tells it apart.
    assert plot.rows[0].label.text.endswith("…")
    group = plot.groups[0].text
    assert "…" in group and group.startswith("Organisation 0") and group.endswith("0000000a")
    boxes = [*(t.box for t in texts), *(r.band for r in plot.rows)]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for p, q in itertools.combinations([*plot.x_ticks, *plot.hints, plot.x_title], 2):
        assert not p.box.overlaps(q.box), (p, q)
    # The axis lies below the last row.
    assert plot.axis.y1 >= plot.rows[-1].band.y + plot.rows[-1].band.h


@given(
    st.lists(
        st.tuples(st.floats(-100, 100), st.floats(0, 60), st.floats(0, 60)).map(
            lambda t: (t[0], t[0] - t[1], t[0] + t[2])
        ),
        max_size=8,
    )
)
def test_the_axis_holds_zero_and_every_range(ranges: list[tuple[float, float, float]]) -> None:
    entries = [ForestEntry(str(i), "Org", "Kind", p, lo, hi) for i, (p, lo, hi) in enumerate(ranges)]
    low, high, step = forest_range(entries)
    assert low < 0 < high and step > 0
    assert (high - low) / step <= 12
    for _, lo, hi in ranges:
        assert low <= lo and hi <= high
    plot = layout_forest(entries)
    for row in plot.rows:
        assert row.low_x is not None and row.high_x is not None
        assert row.band.x - 1e-6 <= row.low_x <= row.high_x <= row.band.x + row.band.w + 1e-6


def test_nothing_measured_still_draws_a_scale_around_zero() -> None:
    plot = layout_forest([SMALL])
    assert plot.low < 0 < plot.high and not any(r.measured for r in plot.rows)
    assert [t.text for t in plot.x_ticks] == ["\u22126", "\u22124", "\u22122", "0", "+2", "+4", "+6"]
    with pytest.raises(ValueError, match="point and both ends"):
        ForestEntry("x", "Org", "Kind", 1.0, None, 3.0)


def test_fit_and_signed() -> None:
    assert fit("short", 200, 13) == "short"
    cut = fit("a rather long label that does not fit", 100, 13)
    assert cut.endswith("…") and len(cut) < 20
    middle = fit("Organisation 00000000-0000-4000-8000-000000000002", 300, 13, middle=True)
    assert middle.startswith("Organisation") and middle.endswith("0002") and "…" in middle
    assert len(middle) <= int(300 / (13 * 0.62))
    assert [signed(v) for v in (8.24, -3.0, 0.04, -0.04)] == ["+8.2", "\u22123.0", "0.0", "0.0"]
