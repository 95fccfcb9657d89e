"""The status page's decision chart: its data, and its SVG geometry computed here, in Python.

Pure: no I/O, no markup. ``layout_chart`` turns a ``DecisionChart`` into coordinates and
labels; the template ``templates/_chart.svg.j2`` only draws what it is given. Each scenario's
panel has its own vertical scale, so that a scenario with few decisions is still readable
next to one with many (the table below the chart gives the exact numbers).

Each panel is its own SVG with its own viewBox (``PANEL_W`` × ``PANEL_H``), laid out by the page's
CSS grid: three side by side on a wide screen, one per row on a phone. One SVG holding all the
panels was scaled down as a whole to the width of a phone, its text to about 3 px; a panel on
its own is shown at about its natural size there, so its text stays readable. The legend is
HTML, so that it wraps.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scenario_engine.scenarios.registry import SCENARIOS, scenario_types

CHART_DAYS = 30
KNOWN_SCENARIOS = scenario_types()
SCENARIO_LABELS = {s.type: s.label for s in SCENARIOS}
QUEUED_COLOUR = "#3b7ea1"
SUPPRESSED_COLOUR = "#e2b36b"
QUEUED_LABEL = "queued for delivery"
SUPPRESSED_LABEL = "suppressed"


def scenario_label(scenario: str) -> str:
    return SCENARIO_LABELS.get(scenario, scenario.replace("_", " ").capitalize())


def number(value: int | float | None) -> str:
    """1 234 567 with narrow no-break spaces; — for no value."""
    if value is None or isinstance(value, bool):
        return "—"
    return f"{value:,}".replace(",", "\u202f")


# --- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayCounts:
    """Decisions of one scenario on one day: ``sent`` (a push was queued) and the rest."""

    sent: int = 0
    suppressed: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.suppressed


@dataclass(frozen=True)
class DecisionChart:
    """Queued vs suppressed decisions per scenario type and UTC day, for the days shown."""

    days: tuple[dt.date, ...]
    counts: Mapping[str, Mapping[dt.date, DayCounts]] = field(default_factory=dict)

    @property
    def scenarios(self) -> list[str]:
        """Known scenario types always (an empty panel says so), then any other seen in the data."""
        extra = sorted(s for s in self.counts if s not in KNOWN_SCENARIOS)
        return [*KNOWN_SCENARIOS, *extra]

    def day(self, scenario: str, day: dt.date) -> DayCounts:
        return self.counts.get(scenario, {}).get(day, DayCounts())

    def totals(self, scenario: str) -> DayCounts:
        per_day = self.counts.get(scenario, {}).values()
        return DayCounts(sum(c.sent for c in per_day), sum(c.suppressed for c in per_day))

    def peak(self, scenario: str) -> int:
        """The busiest day of one scenario: the top of its panel's scale."""
        return max((c.total for c in self.counts.get(scenario, {}).values()), default=0)


@dataclass(frozen=True)
class ChartUnavailable:
    reason: str


def chart_window(today: dt.date, days: int = CHART_DAYS) -> tuple[dt.date, ...]:
    """The ``days`` UTC days ending today, oldest first."""
    return tuple(today - dt.timedelta(days=days - 1 - i) for i in range(days))


def chart_from_rows(rows: Iterable[Mapping[str, Any]], days: Sequence[dt.date]) -> DecisionChart:
    """Build the chart from ``status_decisions_by_day`` rows (scenario_type, day, sent, suppressed)."""
    shown = set(days)
    counts: dict[str, dict[dt.date, DayCounts]] = {}
    for row in rows:
        day: dt.date = row["day"]
        if day not in shown:
            continue
        counts.setdefault(str(row["scenario_type"]), {})[day] = DayCounts(
            int(row["sent"]), int(row["suppressed"])
        )
    return DecisionChart(tuple(days), counts)


# --- geometry -------------------------------------------------------------------------------------

PANEL_W = 380
PANEL_H = 240
PLOT_RIGHT = 18
PLOT_TOP = 76  # panel title, totals, then the y-axis title on its own line above the plot
PLOT_BOTTOM = 46
PANEL_PAD = 14
TICK_FONT = 12.5
AXIS_FONT = 12.5
CHAR_W = 0.62  # average glyph width as a share of the font size (sans-serif digits ≈ 0.55)
MIN_BAR = 1.5  # a non-zero count stays visible however tall the panel's peak
Y_AXIS_TITLE = "Decisions per day"
X_AXIS_TITLE = "Day (UTC)"


@dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in SVG user units (for overlap checks)."""

    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )


@dataclass(frozen=True)
class Label:
    x: float
    y: float  # baseline
    text: str
    anchor: str = "start"  # SVG text-anchor
    font: float = TICK_FONT

    @property
    def box(self) -> Box:
        """Estimated extent: glyphs sit above the baseline, at most ``font`` high."""
        width = len(self.text) * self.font * CHAR_W
        left = {"start": self.x, "middle": self.x - width / 2, "end": self.x - width}[self.anchor]
        return Box(left, self.y - self.font, width, self.font * 1.2)


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Bar:
    kind: str  # "sent" (queued for delivery) or "suppressed": the CSS class
    x: float
    y: float
    w: float
    h: float
    day: dt.date
    count: int
    colour: str
    tip: str


@dataclass(frozen=True)
class Panel:
    scenario: str
    title: Label
    totals: Label
    x: float
    y: float
    w: float
    h: float
    plot: Box
    axis_max: int
    grid: tuple[Line, ...]
    y_ticks: tuple[Label, ...]
    y_title: Label
    bars: tuple[Bar, ...]
    baseline: Line
    x_marks: tuple[Line, ...]
    x_ticks: tuple[Label, ...]
    x_title: Label
    empty: Label | None


@dataclass(frozen=True)
class LegendItem:
    kind: str
    colour: str
    text: str


@dataclass(frozen=True)
class ChartLayout:
    """The chart's title and legend, and one panel per scenario, each ``width`` × ``height``
    user units in its own viewBox."""

    width: int
    height: int
    title: str
    legend: tuple[LegendItem, ...]
    panels: tuple[Panel, ...]


def nice_ceiling(value: int) -> tuple[int, int]:
    """(axis maximum, tick step) with 1-2-5 steps and about four ticks; the maximum is below 1.63×value."""
    if value <= 0:
        return 4, 1
    raw = value / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), 10 * magnitude)
    step = max(1, int(step))
    return step * math.ceil(value / step), step


def layout_chart(chart: DecisionChart) -> ChartLayout:
    scenarios = chart.scenarios
    first, last = chart.days[0], chart.days[-1]
    title = (
        "Decisions per day, by scenario: queued for delivery or suppressed, "
        f"{first:%d %b} – {last:%d %b %Y} (UTC)"
    )
    legend = (
        LegendItem("sent", QUEUED_COLOUR, "Queued for delivery"),
        LegendItem("suppressed", SUPPRESSED_COLOUR, "Suppressed (opted out, cooldown, daily cap, …)"),
    )
    panels = tuple(_panel(chart, scenario, 0, 0) for scenario in scenarios)
    return ChartLayout(PANEL_W, PANEL_H, title, legend, panels)


def _panel(chart: DecisionChart, scenario: str, x0: float, y0: float) -> Panel:
    label = scenario_label(scenario)
    totals = chart.totals(scenario)
    axis_max, step = nice_ceiling(chart.peak(scenario))
    ticks = range(0, axis_max + 1, step)
    # The plot starts right of the widest tick label, whatever the panel's scale.
    widest = max(len(number(t)) for t in ticks) * TICK_FONT * CHAR_W
    left = x0 + PANEL_PAD + max(widest, 16.0) + 8
    plot_w = x0 + PANEL_W - PLOT_RIGHT - left
    top = y0 + PLOT_TOP
    plot_h = PANEL_H - PLOT_TOP - PLOT_BOTTOM
    bottom = top + plot_h
    slot = plot_w / len(chart.days)
    bar_w = max(2.0, slot * 0.72)

    grid, y_ticks = [], []
    for tick in ticks:
        y = bottom - plot_h * tick / axis_max
        grid.append(Line(left, y, left + plot_w, y))
        y_ticks.append(Label(left - 6, y + 4, number(tick), "end"))

    bars = []
    for i, day in enumerate(chart.days):
        counts = chart.day(scenario, day)
        x = left + i * slot + (slot - bar_w) / 2
        y = bottom
        for kind, value, colour, words in (
            ("sent", counts.sent, QUEUED_COLOUR, QUEUED_LABEL),
            ("suppressed", counts.suppressed, SUPPRESSED_COLOUR, SUPPRESSED_LABEL),
        ):
            if not value:
                continue
            h = max(MIN_BAR, plot_h * value / axis_max)
            y -= h
            tip = f"{label}, {day:%a %d %b %Y}: {number(value)} {words} (of {number(counts.total)} decisions)"
            bars.append(Bar(kind, x, y, bar_w, h, day, value, colour, tip))

    last = len(chart.days) - 1
    x_marks, x_ticks = [], []
    for i in range(last, -1, -7):  # every seventh day counted back from today
        cx = left + i * slot + slot / 2
        x_marks.append(Line(cx, bottom, cx, bottom + 4))
        text = "Today" if i == last else f"{chart.days[i].day} {chart.days[i]:%b}"
        x_ticks.append(Label(cx, bottom + 17, text, "middle"))

    empty = (
        None
        if totals.total
        else Label(
            left + plot_w / 2, top + plot_h / 2, f"No decisions in these {len(chart.days)} days", "middle", 14
        )
    )
    return Panel(
        scenario=scenario,
        title=Label(x0 + PANEL_PAD, y0 + 24, label, font=17),
        totals=Label(
            x0 + PANEL_PAD,
            y0 + 44,
            f"{number(totals.sent)} queued · {number(totals.suppressed)} suppressed",
            font=14,
        ),
        x=x0,
        y=y0,
        w=PANEL_W,
        h=PANEL_H,
        plot=Box(left, top, plot_w, plot_h),
        axis_max=axis_max,
        grid=tuple(grid),
        y_ticks=tuple(y_ticks),
        # Horizontal, above the tick column: a rotated title beside the ticks covered them.
        y_title=Label(x0 + PANEL_PAD, top - 12, Y_AXIS_TITLE, font=AXIS_FONT),
        bars=tuple(bars),
        baseline=Line(left, bottom, left + plot_w, bottom),
        x_marks=tuple(x_marks),
        x_ticks=tuple(x_ticks),
        x_title=Label(left + plot_w / 2, bottom + 37, X_AXIS_TITLE, "middle", AXIS_FONT),
        empty=empty,
    )
