"""The status page's view model: typed values built from ``RuntimeState`` and the database.

Everything the templates show is decided here, in pure functions over datetimes and
numbers; the templates only lay it out. Times stay ``datetime`` until a template filter
formats them. The process's last sweep is the one dict that still carries ISO strings
(``RuntimeState.last_sweep``, also served as JSON on ``/status``): it is read once, in
``sweep_from_process``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.status_chart import (
    KNOWN_SCENARIOS,
    ChartLayout,
    ChartUnavailable,
    DecisionChart,
    layout_chart,
    scenario_label,
)

REFRESH_SECONDS = 10

# --- formatting (also the templates' filters) --------------------------------------------------------


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


def format_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%d %b %Y, %H:%M:%S UTC")


def relative(when: dt.datetime, now: dt.datetime) -> str:
    delta = (when - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {human_duration(delta)}" if delta > 0 else f"{human_duration(-delta)} ago"


OUTCOME_LABELS = {"sent": "queued", "opted_out": "opted out", "daily_cap": "daily cap"}


def outcome_label(outcome: str) -> str:
    """A decision outcome in words: 'sent' means a push was queued, not that it arrived."""
    return OUTCOME_LABELS.get(outcome, outcome.replace("_", " "))


@dataclass(frozen=True)
class Moment:
    """An instant shown with how long ago (or how soon) it is."""

    at: dt.datetime
    now: dt.datetime

    @property
    def relative(self) -> str:
        return relative(self.at, self.now)


# --- sweep periods ----------------------------------------------------------------------------------

_EVERY = re.compile(r"every(?P<seconds>[0-9.e+-]+)s:(?P<index>-?[0-9]+)")
_DAILY = re.compile(r"daily@(?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}):(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})")


@dataclass(frozen=True)
class Period:
    """A sweep period, from its key (``scheduler.current_period``): when it started, which schedule."""

    start: dt.datetime
    schedule: str


def describe_period(key: str) -> Period | None:
    """``every60s:29935153`` → started 29935153 × 60 s after the epoch, "every 60 s";
    ``daily@03:00:2025-01-02`` → 2 Jan 2025 03:00 UTC, "daily at 03:00 UTC". None if unknown."""
    try:
        if match := _EVERY.fullmatch(key):
            seconds = float(match["seconds"])
            if seconds <= 0:
                return None
            start = dt.datetime.fromtimestamp(int(match["index"]) * seconds, dt.UTC)
            return Period(start, f"every {human_duration(seconds)}")
        if match := _DAILY.fullmatch(key):
            at = dt.time(int(match["hh"]), int(match["mm"]))
            start = dt.datetime.combine(dt.date.fromisoformat(match["date"]), at, tzinfo=dt.UTC)
            return Period(start, f"daily at {at:%H:%M} UTC")
    except (ValueError, OverflowError, OSError):
        return None
    return None


# --- sections ---------------------------------------------------------------------------------------

RoleKey = Literal["leader", "follower", "unknown"]


@dataclass(frozen=True)
class Role:
    key: RoleKey
    label: str
    note: str


def role_of(leader: bool, database_up: bool) -> Role:
    """Leadership is an advisory lock held through the database: without the database this
    instance leads nothing, and it cannot know whether another instance does."""
    if leader:
        return Role("leader", "Leader", "This instance runs the scheduled sweeps.")
    if database_up:
        return Role("follower", "Follower", "Another instance, the leader, runs the sweeps.")
    return Role(
        "unknown",
        "Not leading",
        "The database is unreachable: this instance cannot take the sweep lock, "
        "and cannot tell whether another instance holds it.",
    )


@dataclass(frozen=True)
class RuleRow:
    rule: str
    counts: tuple[int, ...]  # in the order of ``Sweep.outcomes``


@dataclass(frozen=True)
class Sweep:
    key: str
    period: Period | None
    mode: str | None
    as_of: dt.datetime | None
    finished_at: dt.datetime | None
    seconds: float | None
    mentors: int | None
    outcomes: tuple[str, ...]  # table columns: 'sent' first, then alphabetical
    rules: tuple[RuleRow, ...]
    source: Literal["process", "database"]
    instance_id: str | None = None

    @property
    def outcome_labels(self) -> tuple[str, ...]:
        return tuple(outcome_label(o) for o in self.outcomes)


def _per_rule(per_rule: Any) -> tuple[tuple[str, ...], tuple[RuleRow, ...]]:
    if not isinstance(per_rule, Mapping):
        return (), ()
    counts = {str(rule): c for rule, c in per_rule.items() if isinstance(c, Mapping)}
    seen = {str(o) for c in counts.values() for o in c}
    outcomes = tuple(sorted(seen, key=lambda o: (o != "sent", o)))
    rows = tuple(
        RuleRow(rule, tuple(_int(counts[rule].get(o)) or 0 for o in outcomes)) for rule in sorted(counts)
    )
    return outcomes, rows


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _instant(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def sweep_from_process(record: Mapping[str, Any]) -> Sweep:
    """The sweep this process finished last (``RuntimeState.last_sweep``, as ``/status`` shows it)."""
    key = str(record.get("sweep_key", ""))
    outcomes, rules = _per_rule(record.get("per_rule"))
    seconds = record.get("seconds")
    return Sweep(
        key=key,
        period=describe_period(key),
        mode=str(record["mode"]) if record.get("mode") else None,
        as_of=_instant(record.get("as_of")),
        finished_at=_instant(record.get("finished_at")),
        seconds=float(seconds) if isinstance(seconds, int | float) else None,
        mentors=_int(record.get("mentors")),
        outcomes=outcomes,
        rules=rules,
        source="process",
    )


def sweep_from_row(row: Mapping[str, Any]) -> Sweep:
    """The last finished sweep recorded in ``scenario_engine.scenario_sweep`` (``status_last_sweep``)."""
    key = str(row["sweep_key"])
    stats = row["stats"] if isinstance(row["stats"], Mapping) else {}
    outcomes, rules = _per_rule(stats.get("per_rule"))
    started, finished = _instant(row["started_at"]), _instant(row["finished_at"])
    return Sweep(
        key=key,
        period=describe_period(key),
        mode=str(stats["mode"]) if stats.get("mode") else None,
        as_of=_instant(row["as_of"]),
        finished_at=finished,
        seconds=(finished - started).total_seconds() if started and finished else None,
        mentors=_int(row["mentors"]),
        outcomes=outcomes,
        rules=rules,
        source="database",
        instance_id=str(row["instance_id"]),
    )


@dataclass(frozen=True)
class Backlogs:
    events_pending: int | None
    events_dead: int | None
    oldest_event_seconds: float | None
    pushes_pending: int | None
    pushes_dead: int | None
    oldest_push_seconds: float | None
    stale: bool  # the database is down: these are the last figures measured


def backlogs_of(backlogs: Mapping[str, Any], database_up: bool) -> Backlogs | None:
    """None before the database first answered."""
    if not backlogs:
        return None

    def age(key: str) -> float | None:
        value = backlogs.get(key)
        return float(value) if isinstance(value, int | float) and value > 0 else None

    return Backlogs(
        events_pending=_int(backlogs.get("events_pending")),
        events_dead=_int(backlogs.get("events_dead")),
        oldest_event_seconds=age("oldest_event_age_seconds"),
        pushes_pending=_int(backlogs.get("pushes_pending")),
        pushes_dead=_int(backlogs.get("pushes_dead")),
        oldest_push_seconds=age("oldest_push_age_seconds"),
        stale=not database_up,
    )


# Push statuses in the order shown, with what each means (push_notification.status).
DELIVERY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("sent", "Delivered", "accepted by the push gateway"),
    ("waiting", "Waiting", "queued, or being sent"),
    ("failed", "Failed", "permanent error (e.g. no device)"),
    ("dead", "Dead-lettered", "retries exhausted"),
    ("cancelled", "Cancelled", "no longer wanted; never sent"),
    ("abandoned", "Abandoned", "no longer wanted; an earlier attempt may have arrived"),
)
_WAITING = {"pending", "sending"}


@dataclass(frozen=True)
class DeliveryRow:
    scenario: str
    label: str
    counts: tuple[int, ...]  # in the order of ``DELIVERY_COLUMNS``

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Deliveries:
    """What became of the pushes queued in the days shown, per scenario."""

    rows: tuple[DeliveryRow, ...]
    columns: tuple[tuple[str, str, str], ...] = DELIVERY_COLUMNS

    @property
    def totals(self) -> tuple[int, ...]:
        return tuple(sum(r.counts[i] for r in self.rows) for i in range(len(self.columns)))

    @property
    def empty(self) -> bool:
        return not any(r.total for r in self.rows)


def deliveries_from_rows(rows: Iterable[Mapping[str, Any]]) -> Deliveries:
    """From ``status_deliveries_since`` rows (scenario_type, status, n)."""
    keys = [key for key, _, _ in DELIVERY_COLUMNS]
    counts: dict[str, list[int]] = {s: [0] * len(keys) for s in KNOWN_SCENARIOS}
    for row in rows:
        status = str(row["status"])
        column = "waiting" if status in _WAITING else status
        if column not in keys:
            continue  # a status this page does not know yet
        per = counts.setdefault(str(row["scenario_type"]), [0] * len(keys))
        per[keys.index(column)] += int(row["n"])
    ordered = [*KNOWN_SCENARIOS, *sorted(s for s in counts if s not in KNOWN_SCENARIOS)]
    return Deliveries(tuple(DeliveryRow(s, scenario_label(s), tuple(counts[s])) for s in ordered))


# --- the page ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredData:
    """What the page reads from the database, or why it could not (``status.StatusPageSource``)."""

    chart: DecisionChart | ChartUnavailable
    deliveries: Deliveries | None = None
    last_sweep: Sweep | None = None  # the last finished sweep in scenario_engine.scenario_sweep


@dataclass(frozen=True)
class Chart:
    data: DecisionChart
    layout: ChartLayout

    @property
    def rows(self) -> tuple[dt.date, ...]:
        """Days with at least one decision, newest first (the table under the chart)."""
        scenarios = self.data.scenarios
        return tuple(d for d in reversed(self.data.days) if any(self.data.day(s, d).total for s in scenarios))


@dataclass(frozen=True)
class RulesAndClock:
    """This instance's rules against the leader's (runtime/fleet.py) and its host's clock
    against the database's (runtime/clock.py)."""

    fingerprint: str | None
    leader_instance: str | None
    leader_fingerprint: str | None
    mismatch: bool
    evaluation_paused: bool
    skew_seconds: float | None
    skew_warn_seconds: float
    skewed: bool


def rules_and_clock(state: RuntimeState) -> RulesAndClock:
    fleet, clock = state.fleet, state.clock
    return RulesAndClock(
        fingerprint=fleet.fingerprint,
        leader_instance=fleet.leader_instance,
        leader_fingerprint=fleet.leader_fingerprint,
        mismatch=fleet.mismatch,
        evaluation_paused=state.evaluation_paused,
        skew_seconds=None if clock.skew_seconds is None else round(clock.skew_seconds, 3),
        skew_warn_seconds=clock.warn_after_seconds,
        skewed=clock.beyond_threshold,
    )


@dataclass(frozen=True)
class StatusPage:
    now: dt.datetime
    instance_id: str
    role: Role
    ready: bool
    stopping: bool
    database_up: bool
    listener_up: bool
    started: Moment
    next_sweep: Moment | None
    last_sweep: Sweep | None
    database_asked: bool  # whether the database could be asked for the last sweep
    backlogs: Backlogs | None
    chart: Chart | ChartUnavailable
    deliveries: Deliveries | None
    rules_and_clock: RulesAndClock
    refresh_seconds: int = REFRESH_SECONDS

    @property
    def title(self) -> str:
        return f"Scenario engine · {self.role.key} · {'ready' if self.ready else 'not ready'}"

    @property
    def chart_unavailable(self) -> str | None:
        """Why the chart is missing, or None when it is shown."""
        return self.chart.reason if isinstance(self.chart, ChartUnavailable) else None

    @property
    def chart_shown(self) -> Chart | None:
        return self.chart if isinstance(self.chart, Chart) else None

    @property
    def uptime(self) -> str:
        return human_duration((self.now - self.started.at).total_seconds())


def latest_sweep(own: Sweep | None, stored: Sweep | None) -> Sweep | None:
    """This process's last sweep, unless the database holds a later one (another instance
    has led since); the process's own record of the same sweep is the more detailed one."""
    if own is None or stored is None:
        return own or stored
    if (
        stored.key != own.key
        and stored.finished_at
        and own.finished_at
        and stored.finished_at > own.finished_at
    ):
        return stored
    return own


def build_page(state: RuntimeState, stored: StoredData, now: dt.datetime | None = None) -> StatusPage:
    """The page for this process's state and what the database holds. After a restart, or on
    a follower, the last sweep comes from the database (``latest_sweep``)."""
    now = now or dt.datetime.now(dt.UTC)
    own = sweep_from_process(state.last_sweep) if state.last_sweep is not None else None
    chart: Chart | ChartUnavailable = (
        stored.chart
        if isinstance(stored.chart, ChartUnavailable)
        else Chart(stored.chart, layout_chart(stored.chart))
    )
    return StatusPage(
        now=now,
        instance_id=state.instance_id,
        role=role_of(state.leader, state.database_ok),
        ready=state.ready,
        stopping=state.stopping.is_set(),
        database_up=state.database_ok,
        listener_up=state.listener_ok,
        started=Moment(state.started_at, now),
        next_sweep=Moment(state.next_sweep_at, now) if state.next_sweep_at else None,
        last_sweep=latest_sweep(own, stored.last_sweep),
        database_asked=not isinstance(stored.chart, ChartUnavailable),
        backlogs=backlogs_of(state.backlogs, state.database_ok),
        chart=chart,
        deliveries=stored.deliveries,
        rules_and_clock=rules_and_clock(state),
    )
