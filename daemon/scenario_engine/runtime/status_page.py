"""The human status page (``GET /`` on the status port): server-side HTML with an inline SVG chart.

No JavaScript, no external assets: the page must work offline, behind any proxy, and be
readable by programme staff. Every value that reaches the page goes through ``html.escape``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

CHART_DAYS = 30
REFRESH_SECONDS = 10
KNOWN_SCENARIOS = ("inactivity", "milestone", "certification_expiry")
SCENARIO_LABELS = {
    "inactivity": "Inactivity",
    "milestone": "Milestone",
    "certification_expiry": "Certification expiry",
}
SENT_COLOUR = "#3b7ea1"
SUPPRESSED_COLOUR = "#e2b36b"


@dataclass(frozen=True)
class DayCounts:
    sent: int = 0
    suppressed: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.suppressed


@dataclass(frozen=True)
class DecisionChart:
    """Sent vs suppressed decisions per scenario type and UTC day, for the days shown."""

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

    @property
    def peak(self) -> int:
        return max((c.total for per_day in self.counts.values() for c in per_day.values()), default=0)


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


# --- formatting -------------------------------------------------------------------------------


def scenario_label(scenario: str) -> str:
    return SCENARIO_LABELS.get(scenario, scenario.replace("_", " ").capitalize())


def outcome_label(outcome: str) -> str:
    return outcome.replace("_", " ")


def human_duration(seconds: float) -> str:
    """3 s, 4 min 10 s, 2 h 5 min, 1 d 3 h."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds % 1 else f"{seconds:.0f} s"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def format_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%d %b %Y, %H:%M:%S UTC")


def relative(when: dt.datetime, now: dt.datetime) -> str:
    delta = (when - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {human_duration(delta)}" if delta > 0 else f"{human_duration(-delta)} ago"


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:,}".replace(",", "\u202f")  # narrow no-break space as thousands separator


def _time_html(value: Any, now: dt.datetime) -> str:
    when = parse_time(value)
    if when is None:
        return '<span class="muted">—</span>'
    return (
        f'<time datetime="{escape(when.isoformat())}">{escape(format_time(when))}</time>'
        f' <span class="muted">({escape(relative(when, now))})</span>'
    )


# --- page sections ------------------------------------------------------------------------------


def _pill(text: str, kind: str) -> str:
    return f'<span class="pill {escape(kind)}">{escape(text)}</span>'


def _header(status: Mapping[str, Any], now: dt.datetime) -> str:
    role = str(status.get("role", "unknown"))
    ready = bool(status.get("ready"))
    stopping = bool(status.get("stopping"))
    instance = str(status.get("instance_id", ""))
    readiness = (
        _pill("Stopping", "warn")
        if stopping
        else _pill(*(("Ready", "ok") if ready else ("Not ready", "warn")))
    )
    return f"""
<header>
  <div>
    <h1>Scenario engine status</h1>
    <p class="sub">Instance <strong class="mono" id="instance-id">{escape(instance)}</strong>
      · updated {escape(format_time(now))} · refreshes every {REFRESH_SECONDS} s</p>
  </div>
  <div class="pills"><span id="role">{_pill(role.capitalize(), "role-" + role)}</span>
    <span id="readiness">{readiness}</span></div>
</header>"""


def _card(label: str, value: str, note: str = "", kind: str = "", ident: str = "") -> str:
    id_attr = f' id="{escape(ident)}"' if ident else ""
    note_html = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<div class="card {escape(kind)}"{id_attr}><div class="label">{escape(label)}</div>'
        f'<div class="big">{value}</div>{note_html}</div>'
    )


def _overview(status: Mapping[str, Any], now: dt.datetime) -> str:
    role = str(status.get("role", "unknown"))
    ready = bool(status.get("ready"))
    db_up = status.get("database") == "up"
    listener_up = status.get("listener") == "up"
    role_note = (
        "This instance runs the scheduled sweeps."
        if role == "leader"
        else "Another instance, the leader, runs the sweeps."
    )
    up, down = '<span class="ok-text">up</span>', '<span class="bad-text">down</span>'
    checks = f"Database {up if db_up else down} · Listener {up if listener_up else down}"
    started = parse_time(status.get("started_at"))
    uptime = human_duration((now - started).total_seconds()) if started else "—"
    started_note = f"since {escape(format_time(started))}" if started else ""
    return (
        '<section class="cards four" aria-label="Overview">'
        + _card("Role", escape(role.capitalize()), escape(role_note), ident="role-card")
        + _card("Ready", "Yes" if ready else "No", checks, "ok" if ready else "attention", ident="ready-card")
        + _card("Running for", escape(uptime), started_note)
        + _card("Next sweep", *_next_sweep(status, now), ident="next-sweep-card")
        + "</section>"
    )


def _next_sweep(status: Mapping[str, Any], now: dt.datetime) -> tuple[str, str]:
    when = parse_time(status.get("next_sweep_at"))
    if when is None:
        if status.get("role") == "leader":
            return '<span class="muted">—</span>', "Not scheduled yet."
        return '<span class="muted">—</span>', "Scheduled by the leader instance."
    return escape(when.astimezone(dt.UTC).strftime("%H:%M:%S")), (
        f"UTC, {escape(when.astimezone(dt.UTC).strftime('%d %b %Y'))} ({escape(relative(when, now))})"
    )


def _last_sweep(status: Mapping[str, Any], now: dt.datetime) -> str:
    sweep = status.get("last_sweep")
    if not isinstance(sweep, Mapping):
        message = (
            "This instance has not finished a sweep since it started."
            if status.get("role") == "leader"
            else "This instance is a follower: the leader runs the sweeps."
        )
        return (
            '<section class="panel" id="last-sweep"><h2>Last sweep</h2>'
            f'<p class="muted">{escape(message)}</p></section>'
        )
    seconds = sweep.get("seconds")
    duration = human_duration(float(seconds)) if isinstance(seconds, int | float) else "—"
    facts = [
        ("Sweep", f'<span class="mono">{escape(str(sweep.get("sweep_key", "—")))}</span>'),
        ("Evaluated as of", _time_html(sweep.get("as_of"), now)),
        ("Finished", _time_html(sweep.get("finished_at"), now)),
        ("Duration", escape(duration)),
        ("Mentors evaluated", escape(number(sweep.get("mentors")))),
    ]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return (
        f'<section class="panel" id="last-sweep"><h2>Last sweep</h2><dl class="facts">{rows}</dl>'
        f"{_per_rule_table(sweep.get('per_rule'))}</section>"
    )


def _per_rule_table(per_rule: Any) -> str:
    if not isinstance(per_rule, Mapping) or not per_rule:
        return '<p class="muted">No rule produced a decision in this sweep.</p>'
    outcomes: set[str] = set()
    for counts in per_rule.values():
        if isinstance(counts, Mapping):
            outcomes.update(str(o) for o in counts)
    ordered = sorted(outcomes, key=lambda o: (o != "sent", o))
    head = "".join(f'<th scope="col" class="num">{escape(outcome_label(o))}</th>' for o in ordered)
    body = []
    for rule in sorted(per_rule, key=str):
        counts = per_rule[rule] if isinstance(per_rule[rule], Mapping) else {}
        cells = "".join(f'<td class="num">{escape(number(counts.get(o, 0)))}</td>' for o in ordered)
        body.append(f'<tr><th scope="row" class="mono">{escape(str(rule))}</th>{cells}</tr>')
    return (
        '<table class="data" id="per-rule"><caption>Decisions per rule in this sweep</caption>'
        f'<thead><tr><th scope="col">Rule</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _backlogs(status: Mapping[str, Any]) -> str:
    backlogs = status.get("backlogs")
    if not isinstance(backlogs, Mapping) or not backlogs:
        return (
            '<section class="panel" id="backlogs"><h2>Backlogs</h2>'
            '<p class="muted">Not measured yet: the database has not answered since start.</p></section>'
        )

    def count(key: str, label: str, note: str, dead: bool = False) -> str:
        value = backlogs.get(key)
        kind = "attention" if dead and isinstance(value, int) and value > 0 else ""
        return _card(label, escape(number(value)), escape(note), kind, ident=f"backlog-{key}")

    def age(key: str, label: str) -> str:
        value = backlogs.get(key)
        text = human_duration(float(value)) if isinstance(value, int | float) and value > 0 else "—"
        note = "oldest still waiting" if text != "—" else "nothing waiting"
        return _card(label, escape(text), escape(note), ident=f"backlog-{key}")

    stale = (
        '<p class="stale">The database is down: these are the last figures measured.</p>'
        if status.get("database") != "up"
        else ""
    )
    return (
        f'<section class="panel" id="backlogs"><h2>Backlogs</h2>{stale}'
        '<h3>Change events</h3><div class="cards three">'
        + count("events_pending", "Waiting", "not yet evaluated")
        + count("events_dead", "Dead-lettered", "failed repeatedly", dead=True)
        + age("oldest_event_age_seconds", "Oldest waiting")
        + '</div><h3>Push notifications</h3><div class="cards three">'
        + count("pushes_pending", "Waiting", "queued or sending")
        + count("pushes_dead", "Dead-lettered", "undeliverable", dead=True)
        + age("oldest_push_age_seconds", "Oldest waiting")
        + "</div></section>"
    )


# --- the chart ------------------------------------------------------------------------------------

PANEL_W = 380
PANEL_H = 228
PANELS_PER_ROW = 3
GAP = 20
LEGEND_H = 34
PLOT_LEFT = 44
PLOT_RIGHT = 18
PLOT_TOP = 58
PLOT_BOTTOM = 46
MIN_BAR = 1.5  # a non-zero count stays visible however tall the peak


def nice_ceiling(value: int) -> tuple[int, int]:
    """(axis maximum, tick step) with 1-2-5 steps and about four ticks."""
    if value <= 0:
        return 4, 1
    raw = value / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), 10 * magnitude)
    step = max(1, int(step))
    return step * math.ceil(value / step), step


def _svg_text(x: float, y: float, text: str, cls: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}" text-anchor="{anchor}"{extra}>{escape(text)}</text>'


def render_chart_svg(chart: DecisionChart) -> str:
    scenarios = chart.scenarios
    rows = math.ceil(len(scenarios) / PANELS_PER_ROW)
    width = PANELS_PER_ROW * PANEL_W + (PANELS_PER_ROW - 1) * GAP
    height = LEGEND_H + rows * PANEL_H + (rows - 1) * GAP
    axis_max, step = nice_ceiling(chart.peak)
    first, last = chart.days[0], chart.days[-1]
    out = [
        f'<svg id="decision-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-labelledby="chart-title chart-desc">',
        '<title id="chart-title">Sent and suppressed notifications per day, by scenario, '
        f"{escape(first.strftime('%d %b'))} – {escape(last.strftime('%d %b %Y'))} (UTC)</title>",
        '<desc id="chart-desc">Stacked bars, one per day: the lower part counts notifications sent, the '
        "upper part decisions suppressed. All panels share one vertical scale. The table below the chart "
        "lists the same numbers.</desc>",
        '<g class="legend" id="chart-legend">',
        f'<rect class="legend-swatch sent" x="0" y="8" width="16" height="16" rx="3" fill="{SENT_COLOUR}"/>',
        _svg_text(22, 21, "Sent", "legend-text"),
        f'<rect class="legend-swatch suppressed" x="80" y="8" width="16" height="16" rx="3" '
        f'fill="{SUPPRESSED_COLOUR}"/>',
        _svg_text(102, 21, "Suppressed (opted out, cooldown, daily cap, …)", "legend-text"),
        "</g>",
    ]
    for index, scenario in enumerate(scenarios):
        col, row = index % PANELS_PER_ROW, index // PANELS_PER_ROW
        x0 = col * (PANEL_W + GAP)
        y0 = LEGEND_H + row * (PANEL_H + GAP)
        out.append(_panel(chart, scenario, x0, y0, axis_max, step))
    out.append("</svg>")
    return "".join(out)


def _panel(chart: DecisionChart, scenario: str, x0: float, y0: float, axis_max: int, step: int) -> str:
    label = scenario_label(scenario)
    totals = chart.totals(scenario)
    plot_w = PANEL_W - PLOT_LEFT - PLOT_RIGHT
    plot_h = PANEL_H - PLOT_TOP - PLOT_BOTTOM
    left, top = x0 + PLOT_LEFT, y0 + PLOT_TOP
    bottom = top + plot_h
    slot = plot_w / len(chart.days)
    bar_w = max(2.0, slot * 0.72)
    parts = [
        f'<g class="panel" data-scenario="{escape(scenario)}">',
        f'<rect class="panel-bg" x="{x0:.1f}" y="{y0:.1f}" width="{PANEL_W}" height="{PANEL_H}" rx="10"/>',
        _svg_text(x0 + 14, y0 + 24, label, "panel-title"),
        _svg_text(
            x0 + 14,
            y0 + 44,
            f"{number(totals.sent)} sent · {number(totals.suppressed)} suppressed",
            "panel-totals",
        ),
    ]
    # Horizontal grid lines and y tick labels.
    for tick in range(0, axis_max + 1, step):
        y = bottom - plot_h * tick / axis_max
        parts.append(
            f'<line class="grid" x1="{left:.1f}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(_svg_text(left - 6, y + 4, number(tick), "tick", "end"))
    parts.append(
        _svg_text(
            x0 + 12,
            top + plot_h / 2,
            "Decisions per day",
            "axis-title",
            "middle",
            f' transform="rotate(-90 {x0 + 12:.1f} {top + plot_h / 2:.1f})"',
        )
    )
    # Bars: sent at the bottom, suppressed stacked on top.
    for i, day in enumerate(chart.days):
        counts = chart.day(scenario, day)
        if not counts.total:
            continue
        x = left + i * slot + (slot - bar_w) / 2
        day_text = day.strftime("%a %d %b %Y")
        y = bottom
        for kind, value, colour in (
            ("sent", counts.sent, SENT_COLOUR),
            ("suppressed", counts.suppressed, SUPPRESSED_COLOUR),
        ):
            if not value:
                continue
            h = max(MIN_BAR, plot_h * value / axis_max)
            y -= h
            tip = f"{label}, {day_text}: {number(value)} {kind} (of {number(counts.total)} decisions)"
            parts.append(
                f'<rect class="bar {kind}" x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
                f'fill="{colour}" data-day="{day.isoformat()}" data-count="{value}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    if not totals.total:
        parts.append(
            _svg_text(left + plot_w / 2, top + plot_h / 2, "No decisions in these 30 days", "empty", "middle")
        )
    # X axis: baseline, a tick label every seven days counted back from today, and a title.
    parts.append(
        f'<line class="axis" x1="{left:.1f}" x2="{left + plot_w:.1f}" y1="{bottom:.1f}" y2="{bottom:.1f}"/>'
    )
    last = len(chart.days) - 1
    for i in range(last, -1, -7):
        cx = left + i * slot + slot / 2
        parts.append(
            f'<line class="axis" x1="{cx:.1f}" x2="{cx:.1f}" y1="{bottom:.1f}" y2="{bottom + 4:.1f}"/>'
        )
        text = "Today" if i == last else f"{chart.days[i].day} {chart.days[i]:%b}"
        parts.append(_svg_text(cx, bottom + 17, text, "tick", "middle"))
    parts.append(_svg_text(left + plot_w / 2, bottom + 37, "Day (UTC)", "axis-title", "middle"))
    parts.append("</g>")
    return "".join(parts)


def _count_cell(n: int) -> str:
    return f'<td class="num{" zero" if n == 0 else ""}">{escape(number(n))}</td>'


def render_chart_table(chart: DecisionChart) -> str:
    scenarios = chart.scenarios
    days = [d for d in chart.days if any(chart.day(s, d).total for s in scenarios)]
    if not days:
        return '<p class="muted" id="decision-table-empty">No decisions were logged in the last 30 days.</p>'
    group_head = "".join(
        f'<th scope="colgroup" colspan="2">{escape(scenario_label(s))}</th>' for s in scenarios
    )
    sub_head = '<th scope="col" class="num">Sent</th><th scope="col" class="num">Suppressed</th>' * len(
        scenarios
    )
    body = []
    for day in reversed(days):
        cells: list[str] = []
        for s in scenarios:
            c = chart.day(s, day)
            cells.extend(_count_cell(n) for n in (c.sent, c.suppressed))
        body.append(
            f'<tr data-day="{day.isoformat()}"><th scope="row">{escape(day.strftime("%a %d %b %Y"))}</th>'
            f"{''.join(cells)}</tr>"
        )
    foot = "".join(
        f'<td class="num">{escape(number(chart.totals(s).sent))}</td>'
        f'<td class="num">{escape(number(chart.totals(s).suppressed))}</td>'
        for s in scenarios
    )
    return (
        '<table class="data" id="decision-table"><caption>Notifications per day (UTC), days with at least '
        "one decision, newest first</caption>"
        f'<thead><tr><td></td>{group_head}</tr><tr><th scope="col">Day</th>{sub_head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody>"
        f'<tfoot><tr><th scope="row">Total, 30 days</th>{foot}</tr></tfoot></table>'
    )


def _chart_section(chart: DecisionChart | ChartUnavailable) -> str:
    intro = (
        "Every decision the engine logged, per scenario and day (UTC). <strong>Sent</strong>: a push was "
        "queued. <strong>Suppressed</strong>: a rule matched but the push was held back."
    )
    if isinstance(chart, ChartUnavailable):
        body = (
            '<div class="unavailable" id="chart-unavailable" role="status">'
            "<strong>Chart unavailable.</strong> "
            f"{escape(chart.reason)} The rest of this page comes from the daemon itself and is current.</div>"
        )
    else:
        body = f'<div class="chart">{render_chart_svg(chart)}</div>{render_chart_table(chart)}'
    return (
        '<section class="panel" id="notifications"><h2>Notifications in the last 30 days</h2>'
        f'<p class="intro">{intro}</p>{body}</section>'
    )


STYLE = """
:root { color-scheme: light; --ink: #1f2a37; --muted: #5f6b7a; --line: #dde3ea; --bg: #f4f6f8;
  --card: #ffffff; --ok: #2f7d5b; --ok-bg: #e5f3ec; --warn: #9a5b13; --warn-bg: #fbf0dc;
  --accent: #3b7ea1; --bad: #a43d3d; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1220px; margin: 0 auto; padding: 14px 24px 40px; }
header { display: flex; justify-content: space-between; align-items: center; gap: 16px; margin-bottom: 12px; }
h1 { font-size: 26px; margin: 0; font-weight: 650; }
h2 { font-size: 20px; margin: 0 0 8px; font-weight: 650; }
h3 { font-size: 13px; margin: 10px 0 6px; text-transform: uppercase; letter-spacing: .06em;
  color: var(--muted); }
.sub { margin: 4px 0 0; color: var(--muted); }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: .92em; }
.muted { color: var(--muted); }
.pills { display: flex; gap: 10px; }
.pill { display: inline-block; padding: 6px 16px; border-radius: 999px; font-weight: 650; font-size: 18px;
  border: 1px solid transparent; }
.pill.ok { background: var(--ok-bg); color: var(--ok); border-color: #b9dcc9; }
.pill.warn { background: var(--warn-bg); color: var(--warn); border-color: #efd3a4; }
.pill.role-leader { background: #e3eef5; color: #225a78; border-color: #bcd5e4; }
.pill.role-follower { background: #eceff3; color: #44505e; border-color: #d3d9e0; }
.cards { display: grid; gap: 12px; }
.cards.four { grid-template-columns: repeat(4, 1fr); margin-bottom: 16px; }
.cards.three { grid-template-columns: repeat(3, 1fr); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 10px 16px; }
.panel .card { background: #f9fafb; }
.card .label { color: var(--muted); font-size: 14px; }
.card .big { font-size: 28px; font-weight: 650; line-height: 1.2; margin: 2px 0;
  font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 13.5px; }
.card.ok .big { color: var(--ok); }
.card.attention { border-color: #efd3a4; background: var(--warn-bg); }
.card.attention .big { color: var(--warn); }
.ok-text { color: var(--ok); font-weight: 600; }
.bad-text { color: var(--bad); font-weight: 600; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-bottom: 16px; }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 14px 20px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0 0 12px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
table.data { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; margin-top: 8px; }
table.data caption { text-align: left; color: var(--muted); font-size: 14px; padding-bottom: 6px; }
table.data th, table.data td { border-bottom: 1px solid var(--line); padding: 5px 10px; text-align: left; }
table.data thead th { font-size: 14px; color: var(--muted); font-weight: 600; }
table.data th[scope=colgroup] { text-align: center; color: var(--ink); border-bottom: 2px solid var(--line); }
table.data tbody th { font-weight: 500; }
table.data tfoot th, table.data tfoot td { font-weight: 650; border-top: 2px solid var(--line); }
table.data .num { text-align: right; }
table.data td.zero { color: #a3adb8; }
.stale { margin: 0; color: var(--warn); }
.intro { margin: 0 0 8px; color: var(--muted); max-width: 70em; }
.chart svg { display: block; width: 100%; height: auto; max-width: 1180px; }
.chart { margin-bottom: 12px; }
.unavailable { background: var(--warn-bg); border: 1px solid #efd3a4; color: var(--warn); border-radius: 10px;
  padding: 14px 18px; }
svg .panel-bg { fill: #f9fafb; stroke: var(--line); }
svg .panel-title { font-size: 17px; font-weight: 650; fill: var(--ink); }
svg .panel-totals { font-size: 14px; fill: var(--muted); }
svg .legend-text { font-size: 14px; fill: var(--ink); }
svg .tick { font-size: 11.5px; fill: var(--muted); }
svg .axis-title { font-size: 12px; fill: var(--muted); }
svg .grid { stroke: #e6eaef; stroke-width: 1; }
svg .axis { stroke: #9aa5b1; stroke-width: 1; }
svg .empty { font-size: 14px; fill: var(--muted); }
svg .bar:hover { opacity: .8; }
"""


def render_page(
    status: Mapping[str, Any], chart: DecisionChart | ChartUnavailable, now: dt.datetime | None = None
) -> str:
    """The whole page for a ``RuntimeState.status()`` dict and the decision chart (or why it is missing)."""
    now = now or dt.datetime.now(dt.UTC)
    title = f"Scenario engine · {status.get('role', '?')} · {'ready' if status.get('ready') else 'not ready'}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
{_header(status, now)}
{_overview(status, now)}
<div class="columns">
{_last_sweep(status, now)}
{_backlogs(status)}
</div>
{_chart_section(chart)}
</main>
</body>
</html>
"""
