"""The programme page's two charts, as geometry computed here in Python (like ``status_chart``).

Pure: no I/O, no markup, no knowledge of the page's view model. ``layout_weekly`` draws the
messages sent per week with a y axis, week labels and a legend, and marks the weeks whose
outcomes are still being measured; ``layout_forest`` draws the summary's forest plot: one row per
organisation and kind of message, a point and its 95 % range where a difference is measured,
the words "not enough data yet" (and no point) where it is not, and a zero line. The templates
(``programme.html.j2``) only draw what they are given, so every coordinate is unit-tested
without a database or a browser.

Both charts are drawn in a small viewBox (360–420 user units wide) with text of 11.5–14 units:
shown at the width of a phone the SVG is scaled by about 0.9, so its text stays readable; on a
wide screen the page caps its displayed width instead of stretching it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scenario_engine.web.status_chart import CHAR_W, Box, Label, Line, nice_ceiling, number

MINUS = "\u2212"


def signed(value: float, decimals: int = 1) -> str:
    """'+8.2', '−3.0', '0.0' (a typographic minus): the page's way of writing a difference."""
    rounded = round(value, decimals)
    if rounded == 0:
        return f"{0:.{decimals}f}"
    text = f"{abs(rounded):.{decimals}f}"
    return f"+{text}" if rounded > 0 else f"{MINUS}{text}"


def fit(text: str, width: float, font: float, *, middle: bool = False) -> str:
    """``text`` cut with an ellipsis so that it is at most ``width`` units wide at ``font`` (as estimated
    by ``Label.box``, generous for digits and bold type). ``middle`` keeps both ends: organisations
    shown by id differ at the end of it ("Organisation 00000000-…-000000000002")."""
    most = max(1, int(width / (font * CHAR_W)))
    if len(text) <= most:
        return text
    if not middle:
        return text[: most - 1].rstrip() + "…"
    head = (most - 1) // 2
    tail = most - 1 - head
    return text[:head].rstrip() + "…" + text[len(text) - tail :].lstrip()


# --- the weekly chart -------------------------------------------------------------------------------

WEEK_W = 360
WEEK_PAD = 6
WEEK_PLOT_TOP = 70  # two legend lines, then the y axis' title above the plot
WEEK_PLOT_H = 96
WEEK_H = WEEK_PLOT_TOP + WEEK_PLOT_H + 44  # tick labels and the x axis' title below
WEEK_TICK_FONT = 11.5
WEEK_LEGEND_FONT = 12.5
WEEK_LABEL_EVERY = 3  # a label every third week, counted back from the latest
WEEK_Y_TITLE = "Messages sent per week"
WEEK_X_TITLE = "Week starting on Monday (UTC)"
SENT_LEGEND = "Messages sent"
MEASURING_LEGEND = "Sent, results still being measured"


@dataclass(frozen=True)
class WeekBar:
    x: float
    y: float
    w: float
    h: float
    value: int
    mature: bool  # False: hatched (some of the week's results are still being measured)
    tip: str


@dataclass(frozen=True)
class LegendEntry:
    kind: str  # "sent" or "measuring": the swatch's CSS class
    swatch: Box
    label: Label


@dataclass(frozen=True)
class WeeklyChart:
    width: int
    height: int
    plot: Box
    axis_max: int
    grid: tuple[Line, ...]
    y_ticks: tuple[Label, ...]
    y_title: Label
    bars: tuple[WeekBar, ...]
    baseline: Line
    x_marks: tuple[Line, ...]
    x_ticks: tuple[Label, ...]
    x_title: Label
    legend: tuple[LegendEntry, ...]
    description: str  # the text alternative: every week's number, and which are still measured

    @property
    def any_measuring(self) -> bool:
        return any(not b.mature for b in self.bars)


def layout_weekly(
    values: Sequence[int], labels: Sequence[str], short_labels: Sequence[str], mature: Sequence[bool]
) -> WeeklyChart:
    """Bars of messages sent per week on a shared baseline, scaled to a 1-2-5 axis over the busiest
    week (a week with any message keeps a visible bar). ``labels`` name the weeks in the text
    alternative and tooltips ("week of 2 Nov"), ``short_labels`` on the x axis ("2 Nov");
    ``mature[i]`` False marks week i as still being measured (its bar is hatched)."""
    n = len(values)
    if not n or not (n == len(labels) == len(short_labels) == len(mature)):
        raise ValueError("one value, label, short label and maturity per week, at least one week")
    axis_max, step = nice_ceiling(max(values))
    ticks = range(0, axis_max + 1, step)
    widest = max(len(number(t)) for t in ticks) * WEEK_TICK_FONT * CHAR_W
    left = WEEK_PAD + max(widest, 8.0) + 6
    right = WEEK_W - WEEK_PAD - 10  # room for half of the latest week's label
    top, plot_h = float(WEEK_PLOT_TOP), float(WEEK_PLOT_H)
    bottom = top + plot_h
    plot_w = right - left
    slot = plot_w / n
    bar_w = slot * 0.7

    grid, y_ticks = [], []
    for tick in ticks:
        y = bottom - plot_h * tick / axis_max
        grid.append(Line(left, y, right, y))
        y_ticks.append(Label(left - 5, y + 4, number(tick), "end", WEEK_TICK_FONT))

    bars = []
    for i, value in enumerate(values):
        if not value:
            continue
        h = max(2.0, plot_h * value / axis_max)
        state = "" if mature[i] else "; results still being measured"
        bars.append(
            WeekBar(
                left + i * slot + (slot - bar_w) / 2,
                bottom - h,
                bar_w,
                h,
                value,
                mature[i],
                f"{labels[i]}: {number(value)} sent{state}",
            )
        )

    x_marks, x_ticks = [], []
    for i in range(n - 1, -1, -WEEK_LABEL_EVERY):
        cx = left + i * slot + slot / 2
        x_marks.append(Line(cx, bottom, cx, bottom + 4))
        x_ticks.append(Label(cx, bottom + 17, short_labels[i], "middle", WEEK_TICK_FONT))

    legend = (
        LegendEntry(
            "sent", Box(WEEK_PAD, 4, 14, 14), Label(WEEK_PAD + 20, 15.5, SENT_LEGEND, font=WEEK_LEGEND_FONT)
        ),
        LegendEntry(
            "measuring",
            Box(WEEK_PAD, 24, 14, 14),
            Label(WEEK_PAD + 20, 35.5, MEASURING_LEGEND, font=WEEK_LEGEND_FONT),
        ),
    )
    parts = ", ".join(
        f"{label}: {number(value)}{'' if ok or not value else ' (results still being measured)'}"
        for label, value, ok in zip(labels, values, mature, strict=True)
    )
    return WeeklyChart(
        width=WEEK_W,
        height=WEEK_H,
        plot=Box(left, top, plot_w, plot_h),
        axis_max=axis_max,
        grid=tuple(grid),
        y_ticks=tuple(y_ticks),
        y_title=Label(WEEK_PAD, top - 10, WEEK_Y_TITLE, font=WEEK_LEGEND_FONT),
        bars=tuple(bars),
        baseline=Line(left, bottom, right, bottom),
        x_marks=tuple(x_marks),
        x_ticks=tuple(x_ticks),
        x_title=Label(left + plot_w / 2, bottom + 36, WEEK_X_TITLE, "middle", WEEK_LEGEND_FONT),
        legend=legend,
        description=f"Messages sent per week, oldest first — {parts}.",
    )


# --- the forest plot --------------------------------------------------------------------------------

FOREST_W = 360
FOREST_PAD = 8
FOREST_PLOT_LEFT = 22  # the outermost tick labels are centred on the plot's edges
FOREST_PLOT_RIGHT = FOREST_W - 22
GROUP_H = 24
ROW_H = 42  # label and value on one line, then the interval's strip
ROW_H_WRAPPED = 58  # the value on a line of its own, under the label
AXIS_H = 66
GROUP_FONT = 14.0
BOLD_DIGITS = 1.15  # bold digits run wider than CHAR_W assumes: an organisation id is mostly digits
ROW_FONT = 12.5
VALUE_FONT = 12.5
TICK_FONT = 11.5
POINT_R = 4.5
CAP_H = 5.0
FOREST_X_TITLE = "Difference, percentage points (95\u00a0% range)"
LEFT_HINT = "\u2190 lower with message"
RIGHT_HINT = "higher with message \u2192"


@dataclass(frozen=True)
class ForestEntry:
    """One row to draw: ``group`` (the organisation) heads a run of rows; ``low``, ``point`` and
    ``high`` in percentage points, all three or none; ``missing`` what to say without them."""

    key: str  # identifies the row in the page (data-row)
    group: str
    label: str
    point: float | None
    low: float | None
    high: float | None
    missing: str = "not enough data yet"

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.point, self.low, self.high)]
        if any(given) and not all(given):
            raise ValueError("a difference needs its point and both ends of its range")


@dataclass(frozen=True)
class ForestRow:
    key: str
    label: Label
    value: Label  # "+35.0 (+18.1 to +49.0)", or the missing words
    band: Box  # the strip the interval is drawn in
    cy: float
    point_x: float | None  # None: nothing measured, no point and no interval
    low_x: float | None
    high_x: float | None
    tone: str  # "good" (range above zero), "bad" (below), "unclear" (includes zero), "missing"
    tip: str

    @property
    def measured(self) -> bool:
        return self.point_x is not None

    @property
    def radius(self) -> float:
        return POINT_R

    @property
    def interval(self) -> Line | None:
        """The 95 % range as a horizontal line through the point; None when nothing is measured."""
        if self.low_x is None or self.high_x is None:
            return None
        return Line(self.low_x, self.cy, self.high_x, self.cy)

    @property
    def caps(self) -> tuple[Line, ...]:
        """Short upright strokes at both ends of the range."""
        ends = [v for v in (self.low_x, self.high_x) if v is not None]
        return tuple(Line(v, self.cy - CAP_H, v, self.cy + CAP_H) for v in ends)


@dataclass(frozen=True)
class ForestPlot:
    width: int
    height: int
    low: float  # the axis' range, percentage points
    high: float
    groups: tuple[Label, ...]
    rows: tuple[ForestRow, ...]
    zero: Line
    grid: tuple[Line, ...]
    axis: Line
    x_marks: tuple[Line, ...]
    x_ticks: tuple[Label, ...]
    hints: tuple[Label, ...]
    x_title: Label
    description: str

    @property
    def measured(self) -> int:
        """How many rows have a difference (a point and its range)."""
        return sum(1 for r in self.rows if r.measured)

    def x(self, value: float) -> float:
        """The x of ``value`` percentage points."""
        return FOREST_PLOT_LEFT + (value - self.low) / (self.high - self.low) * (
            FOREST_PLOT_RIGHT - FOREST_PLOT_LEFT
        )


def forest_range(entries: Sequence[ForestEntry]) -> tuple[float, float, float]:
    """(axis low, axis high, tick step) in points: always holds zero and every range, with 1-2-5
    ticks, at most about seven, and at least one tick on each side of zero; at least −5 to +5,
    so a narrow spread is not blown up."""
    lows = [e.low for e in entries if e.low is not None]
    highs = [e.high for e in entries if e.high is not None]
    low, high = min([0.0, *lows]), max([0.0, *highs])
    if high - low < 10:  # a narrow spread still gets a readable scale around zero
        low, high = min(low, -5.0), max(high, 5.0)
    raw = (high - low) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    axis_low, axis_high = math.floor(low / step) * step, math.ceil(high / step) * step
    # Zero is never on the plot's edge: a step of room on each side shows both directions.
    return min(axis_low, -step), max(axis_high, step), step


def layout_forest(entries: Sequence[ForestEntry]) -> ForestPlot:
    low, high, step = forest_range(entries)
    span = FOREST_PLOT_RIGHT - FOREST_PLOT_LEFT

    def x(value: float) -> float:
        return FOREST_PLOT_LEFT + (value - low) / (high - low) * span

    groups, rows = [], []
    y = 0.0
    previous: str | None = None
    for entry in entries:
        if entry.group != previous:
            groups.append(
                Label(
                    FOREST_PAD,
                    y + 17,
                    fit(entry.group, FOREST_W - 2 * FOREST_PAD, GROUP_FONT * BOLD_DIGITS, middle=True),
                    font=GROUP_FONT,
                )
            )
            y += GROUP_H
            previous = entry.group
        point_x: float | None = None
        low_x: float | None = None
        high_x: float | None = None
        if entry.point is not None and entry.low is not None and entry.high is not None:
            between = f"{signed(entry.low)} to {signed(entry.high)}"
            value = f"{signed(entry.point)} ({between})"
            tone = "good" if entry.low > 0 else "bad" if entry.high < 0 else "unclear"
            tip = f"{entry.group}, {entry.label}: {signed(entry.point)} points, 95\u00a0% range {between}"
            point_x, low_x, high_x = x(entry.point), x(entry.low), x(entry.high)
        else:
            value, tone, tip = entry.missing, "missing", f"{entry.group}, {entry.label}: {entry.missing}"
        label_x = FOREST_PAD + 10
        right = FOREST_W - FOREST_PAD
        label = Label(label_x, y + 14, fit(entry.label, right - label_x, ROW_FONT), font=ROW_FONT)
        value_label = Label(right, y + 14, value, "end", VALUE_FONT)
        height = ROW_H
        if label.box.x + label.box.w + 10 > value_label.box.x:  # both do not fit on one line
            value_label = Label(right, y + 30, value, "end", VALUE_FONT)
            height = ROW_H_WRAPPED
        band_y = y + height - 22
        rows.append(
            ForestRow(
                key=entry.key,
                label=label,
                value=value_label,
                band=Box(FOREST_PLOT_LEFT, band_y, span, 16),
                cy=band_y + 8,
                point_x=point_x,
                low_x=low_x,
                high_x=high_x,
                tone=tone,
                tip=tip,
            )
        )
        y += height
    top_of_rows = 0.0 if not rows else rows[0].band.y - 2
    axis_y = y + 4
    ticks = []
    tick = low
    while tick <= high + step / 1000:
        ticks.append(round(tick, 6))
        tick += step
    grid = tuple(Line(x(t), top_of_rows, x(t), axis_y) for t in ticks if t != 0)
    x_marks = tuple(Line(x(t), axis_y, x(t), axis_y + 4) for t in ticks)
    x_ticks = tuple(Label(x(t), axis_y + 18, _tick_text(t), "middle", TICK_FONT) for t in ticks)
    hints = (
        Label(FOREST_PLOT_LEFT - 14, axis_y + 36, LEFT_HINT, "start", TICK_FONT),
        Label(FOREST_PLOT_RIGHT + 14, axis_y + 36, RIGHT_HINT, "end", TICK_FONT),
    )
    measured = sum(1 for r in rows if r.measured)
    return ForestPlot(
        width=FOREST_W,
        height=round(axis_y + AXIS_H - 6),
        low=low,
        high=high,
        groups=tuple(groups),
        rows=tuple(rows),
        zero=Line(x(0), top_of_rows, x(0), axis_y),
        grid=grid,
        axis=Line(FOREST_PLOT_LEFT, axis_y, FOREST_PLOT_RIGHT, axis_y),
        x_marks=x_marks,
        x_ticks=x_ticks,
        hints=hints,
        x_title=Label(FOREST_W / 2, axis_y + 56, FOREST_X_TITLE, "middle", TICK_FONT),
        description=(
            "Difference the messages make, in percentage points, per organisation and kind of "
            f"message: {measured} of {len(rows)} measured. "
            + "; ".join(r.tip for r in rows)
            + ". A range wholly right of the zero line means the message helps."
        ),
    )


def _tick_text(value: float) -> str:
    whole = float(value).is_integer()
    return signed(value, 0 if whole else 1)
