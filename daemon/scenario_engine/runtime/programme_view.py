"""The programme-health page (``GET /programme``): what the nudges did, for programme staff.

Per organisation and scenario, the last weeks (12 by default): messages sent and delivered,
how often mentors then did the hoped-for thing, the difference against the comparison group
that was deliberately not messaged (the holdout), and for certifications how many were renewed
in time or lapsed. The readers are programme staff and their funders, not operators: every
figure is said in plain words: each scenario package names itself and its outcome
(``SCENARIO_WORDS`` collects them from the registry), and the template only lays it out.

``build_programme_health`` is pure (rows in, a frozen view model out) so that the numbers and
the wording are tested without a database; ``load_programme_health`` runs the four named
queries of ``queries/programme.sql`` and hands their rows to it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
import asyncpg

from scenario_engine.db.queries import fetch
from scenario_engine.logs import get_logger
from scenario_engine.outcomes.organisations import organisation_names
from scenario_engine.outcomes.stats import newcombe_interval
from scenario_engine.runtime.backoff import DB_ERRORS
from scenario_engine.runtime.status_page import environment
from scenario_engine.scenarios.registry import SCENARIOS

log = get_logger("scenario_engine.programme")

DEFAULT_WEEKS = 12
# Twelve weeks of decisions on a large programme take a moment; a database that does not
# answer in this time gets the "figures unavailable" page rather than a hanging request.
LOAD_TIMEOUT_SECONDS = 10.0
# Below this many final outcomes in either group a difference is noise: say so, show no number.
MIN_FINAL_OUTCOMES = 30


# --- plain words: the one place that names scenarios for programme staff -----------------------------


@dataclass(frozen=True)
class ScenarioWords:
    """How staff call a scenario and the outcome it hopes for (each scenario package says it:
    ``title``, ``about`` and ``OutcomeSpec.plain`` in its scenario.py)."""

    title: str
    outcome: str  # "came back": reads after "mentors who …"
    about: str  # one sentence: what the messages are and what counts as success


SCENARIO_WORDS: Mapping[str, ScenarioWords] = {
    s.type: ScenarioWords(s.title, s.outcome.plain, s.about) for s in SCENARIOS
}


def scenario_words(scenario_type: str) -> ScenarioWords:
    """Words for a scenario this page does not know yet: its type in words, a neutral outcome."""
    known = SCENARIO_WORDS.get(scenario_type)
    if known is not None:
        return known
    title = scenario_type.replace("_", " ").strip().capitalize() or "Other"
    return ScenarioWords(f"{title} messages", "did what the message asked", "")


# --- formatting -------------------------------------------------------------------------------------


def week_label(week: dt.date) -> str:
    """'week of 2 Nov' (the Monday)."""
    return f"week of {week.day} {week:%b}"


def day_words(day: dt.date) -> str:
    """'2 Nov 2026'."""
    return f"{day.day} {day:%b %Y}"


def percent(share: float) -> str:
    """A share 0…1 as a whole percentage: '42 %'."""
    return f"{round(share * 100)}\u00a0%"


def points(value: float) -> str:
    """A difference in percentage points, always signed: '+8.2', '−3.0', '0.0'."""
    rounded = round(value, 1)
    if rounded == 0:
        return "0.0"
    return f"+{rounded:.1f}" if rounded > 0 else f"\u2212{-rounded:.1f}"


def week_start(instant: dt.datetime) -> dt.date:
    """The Monday (UTC) of the week holding ``instant``."""
    day = instant.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


def window_weeks(as_of: dt.datetime, weeks: int = DEFAULT_WEEKS) -> tuple[dt.date, ...]:
    """The Mondays of the ``weeks`` UTC weeks ending with the one holding ``as_of``, oldest first."""
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    last = week_start(as_of)
    return tuple(last - dt.timedelta(weeks=weeks - 1 - i) for i in range(weeks))


def window_start(weeks: Sequence[dt.date]) -> dt.datetime:
    return dt.datetime.combine(weeks[0], dt.time(0), tzinfo=dt.UTC)


# --- the view model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """How many mentors did the hoped-for thing, of those whose result is known."""

    achieved: int = 0
    final: int = 0
    pending: int = 0  # results not known yet (the measuring window is still open)

    @property
    def share(self) -> float | None:
        return self.achieved / self.final if self.final else None

    @property
    def text(self) -> str:
        """'42 %', or '—' with nothing measured yet."""
        share = self.share
        return "—" if share is None else percent(share)

    @property
    def detail(self) -> str:
        """'21 of 50', plus '8 still being measured'."""
        parts = [f"{self.achieved} of {self.final}"] if self.final else []
        if self.pending:
            parts.append(f"{self.pending} still being measured")
        return "; ".join(parts) if parts else "nothing measured yet"

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.achieved + other.achieved, self.final + other.final, self.pending + other.pending)


@dataclass(frozen=True)
class WeekFigures:
    week: dt.date
    in_progress: bool  # the week holding as_of: its figures are still growing
    sent: int = 0
    delivered: int = 0
    outcome: Rate = field(default_factory=Rate)

    @property
    def label(self) -> str:
        return week_label(self.week) + (" (so far)" if self.in_progress else "")


@dataclass(frozen=True)
class CertificationWeek:
    week: dt.date
    in_progress: bool
    renewed: int = 0
    lapsed: int = 0

    @property
    def label(self) -> str:
        return week_label(self.week) + (" (so far)" if self.in_progress else "")

    @property
    def expired(self) -> int:
        return self.renewed + self.lapsed


@dataclass(frozen=True)
class Lift:
    """Messaged vs comparison group, for one set-up of one kind of message (a rule's current
    experiment), over the window. ``difference`` and the interval are percentage points."""

    name: str  # the set-up's configured name; shown only when a scenario has several
    started_at: dt.datetime  # when the current comparison set-up began
    measured_from: dt.date  # the later of the window's first day and started_at
    keeps_back: bool  # the set-up keeps a comparison group back (a rule or global holdout share > 0)
    treated: Rate
    holdout: Rate
    outcome: str  # the scenario's outcome words ("came back")
    difference: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def measured_from_words(self) -> str:
        return day_words(self.measured_from)

    @property
    def has_comparison(self) -> bool:
        return self.keeps_back or self.holdout.final > 0 or self.holdout.pending > 0

    @property
    def enough_data(self) -> bool:
        return self.difference is not None

    @property
    def verdict(self) -> str:
        """One sentence a funder can read."""
        if not self.has_comparison:
            return (
                "No comparison group is kept back for these messages, so the difference they make "
                "cannot be measured."
            )
        if self.difference is None or self.low is None or self.high is None:
            return "Not enough data yet."
        if self.low > 0:
            return f"Mentors who got the message {self.outcome} more often than those who did not."
        if self.high < 0:
            return f"Mentors who got the message {self.outcome} less often than those who did not."
        return "No clear difference yet between mentors who got the message and those who did not."

    @property
    def figure(self) -> str:
        """'+8.2 points', or 'not enough data yet'."""
        if self.difference is None:
            return "not enough data yet" if self.has_comparison else "not measured"
        return f"{points(self.difference)} points"

    @property
    def interval(self) -> str:
        """'95 % confidence: +1.3 to +15.0 points', or what is still missing."""
        if self.low is not None and self.high is not None:
            return f"95\u00a0% confidence range: {points(self.low)} to {points(self.high)} points."
        if not self.has_comparison:
            return ""
        return (
            f"{self.treated.final} results known for mentors who got the message and "
            f"{self.holdout.final} for those who did not; at least {MIN_FINAL_OUTCOMES} of each are needed."
        )


@dataclass(frozen=True)
class Sparkline:
    """Bars of messages sent per week; geometry decided here, drawn by the template."""

    bars: tuple[tuple[float, float, float, float], ...]  # x, y, w, h in the viewBox
    width: int
    height: int
    description: str  # the text alternative


@dataclass(frozen=True)
class ScenarioHealth:
    scenario_type: str
    words: ScenarioWords
    weeks: tuple[WeekFigures, ...]
    lifts: tuple[Lift, ...]
    certifications: tuple[CertificationWeek, ...] | None  # certification reminders only

    @property
    def title(self) -> str:
        return self.words.title

    @property
    def sent(self) -> int:
        return sum(w.sent for w in self.weeks)

    @property
    def delivered(self) -> int:
        return sum(w.delivered for w in self.weeks)

    @property
    def outcome(self) -> Rate:
        total = Rate()
        for week in self.weeks:
            total = total + week.outcome
        return total

    @property
    def delivered_share(self) -> str:
        return percent(self.delivered / self.sent) if self.sent else "—"

    @property
    def renewed(self) -> int:
        return sum(c.renewed for c in self.certifications or ())

    @property
    def lapsed(self) -> int:
        return sum(c.lapsed for c in self.certifications or ())

    @property
    def show_lift_names(self) -> bool:
        return len(self.lifts) > 1

    @property
    def sparkline(self) -> Sparkline:
        return sparkline([w.sent for w in self.weeks], [w.label for w in self.weeks])


@dataclass(frozen=True)
class OrganisationHealth:
    organization_id: uuid.UUID | None  # None: decisions taken before organisations were recorded
    scenarios: tuple[ScenarioHealth, ...]
    label: str | None = None  # the platform's name for it (outcomes/organisations.py), if any

    @property
    def name(self) -> str:
        if self.organization_id is None:
            return "Organisation not recorded"
        return self.label or f"Organisation {self.organization_id}"

    @property
    def anchor(self) -> str:
        return f"org-{self.organization_id}" if self.organization_id else "org-unrecorded"


@dataclass(frozen=True)
class ProgrammeHealth:
    as_of: dt.datetime
    weeks: tuple[dt.date, ...]
    organisations: tuple[OrganisationHealth, ...]
    organization_id: uuid.UUID | None = None  # the one organisation asked for, if any
    organisation_names: Mapping[uuid.UUID, str] = field(default_factory=dict)

    @property
    def first_week(self) -> str:
        return day_words(self.weeks[0])

    @property
    def as_of_words(self) -> str:
        when = self.as_of.astimezone(dt.UTC)
        return f"{day_words(when.date())}, {when:%H:%M} UTC"

    @property
    def title(self) -> str:
        if self.organization_id is not None:
            name = self.organisation_names.get(self.organization_id)
            return f"Programme health · {name or f'organisation {self.organization_id}'}"
        return "Programme health"


@dataclass(frozen=True)
class ProgrammeUnavailable:
    """The figures could not be read: the page says so instead of failing."""

    reason: str
    organization_id: uuid.UUID | None = None

    @property
    def title(self) -> str:
        return "Programme health · figures unavailable"


# --- geometry ---------------------------------------------------------------------------------------

SPARK_W = 240
SPARK_H = 44
SPARK_GAP = 4


def sparkline(values: Sequence[int], labels: Sequence[str]) -> Sparkline:
    """Weekly bars with a shared baseline, scaled to the busiest week (a week with any message
    keeps a visible bar); the description lists every week, for screen readers and for print."""
    n = max(1, len(values))
    peak = max(values, default=0)
    bar_w = (SPARK_W - SPARK_GAP * (n - 1)) / n
    bars = []
    for i, value in enumerate(values):
        h = 0.0 if peak == 0 or value == 0 else max(2.0, (SPARK_H - 2) * value / peak)
        bars.append((round(i * (bar_w + SPARK_GAP), 2), round(SPARK_H - h, 2), round(bar_w, 2), round(h, 2)))
    parts = ", ".join(f"{label}: {value}" for label, value in zip(labels, values, strict=True))
    return Sparkline(tuple(bars), SPARK_W, SPARK_H, f"Messages sent per week — {parts}.")


# --- building the page from rows --------------------------------------------------------------------


@dataclass(frozen=True)
class ProgrammeRows:
    """The rows of the four queries of ``queries/programme.sql``."""

    sends: Sequence[Mapping[str, Any]] = ()
    outcomes: Sequence[Mapping[str, Any]] = ()
    lifts: Sequence[Mapping[str, Any]] = ()
    certifications: Sequence[Mapping[str, Any]] = ()


def _org(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _lift_from_row(row: Mapping[str, Any], first_day: dt.date, outcome: str) -> Lift:
    treated = Rate(int(row["treated_achieved"]), int(row["treated_final"]), int(row["treated_pending"]))
    holdout = Rate(int(row["holdout_achieved"]), int(row["holdout_final"]), int(row["holdout_pending"]))
    started: dt.datetime = row["started_at"]
    # The rule's own holdout or the global one: either keeps a comparison group back.
    keeps_back = float(row["holdout_percent"]) > 0 or float(row["global_holdout_percent"]) > 0
    lift = Lift(
        name=str(row["rule_name"]),
        started_at=started,
        measured_from=max(first_day, started.astimezone(dt.UTC).date()),
        keeps_back=keeps_back,
        treated=treated,
        holdout=holdout,
        outcome=outcome,
    )
    if treated.final < MIN_FINAL_OUTCOMES or holdout.final < MIN_FINAL_OUTCOMES:
        return lift
    interval = newcombe_interval(treated.achieved, treated.final, holdout.achieved, holdout.final)
    difference = treated.achieved / treated.final - holdout.achieved / holdout.final
    return replace(lift, difference=100 * difference, low=100 * interval.low, high=100 * interval.high)


def _scenario_order(scenario_type: str) -> tuple[int, str]:
    known = list(SCENARIO_WORDS)
    return (known.index(scenario_type), "") if scenario_type in known else (len(known), scenario_type)


def build_programme_health(
    rows: ProgrammeRows,
    as_of: dt.datetime,
    weeks: int = DEFAULT_WEEKS,
    organization_id: uuid.UUID | None = None,
    names: Mapping[uuid.UUID, str] | None = None,
) -> ProgrammeHealth:
    """The page from the queries' rows. Rows outside the window are ignored; every week of the
    window is shown, empty weeks as zeros; an organisation asked for but without figures is
    still shown (and says it has none). ``names``: organisations' names, where known."""
    mondays = window_weeks(as_of, weeks)
    shown = set(mondays)
    current = mondays[-1]

    sends: dict[tuple[uuid.UUID | None, str], dict[dt.date, tuple[int, int]]] = {}
    for row in rows.sends:
        if row["week"] in shown:
            key = (_org(row["organization_id"]), str(row["scenario_type"]))
            sends.setdefault(key, {})[row["week"]] = (int(row["sent"]), int(row["delivered"]))
    outcomes: dict[tuple[uuid.UUID | None, str], dict[dt.date, Rate]] = {}
    for row in rows.outcomes:
        if row["week"] in shown:
            key = (_org(row["organization_id"]), str(row["scenario_type"]))
            outcomes.setdefault(key, {})[row["week"]] = Rate(
                int(row["achieved"]), int(row["final"]), int(row["pending"])
            )
    lift_rows: dict[tuple[uuid.UUID | None, str], list[Mapping[str, Any]]] = {}
    for row in rows.lifts:
        lift_rows.setdefault((_org(row["organization_id"]), str(row["scenario_type"])), []).append(row)
    certs: dict[uuid.UUID | None, dict[dt.date, tuple[int, int]]] = {}
    for row in rows.certifications:
        if row["week"] in shown:
            certs.setdefault(_org(row["organization_id"]), {})[row["week"]] = (
                int(row["renewed"]),
                int(row["lapsed"]),
            )

    keys = set(sends) | set(outcomes) | set(lift_rows) | {(org, "certification_expiry") for org in certs}
    orgs: set[uuid.UUID | None] = {org for org, _ in keys}
    if organization_id is not None:
        orgs = {organization_id}  # the queries were filtered already; shown even without figures

    organisations = []
    for org in sorted(orgs, key=lambda o: (o is None, str(o))):
        scenarios = []
        for scenario in sorted({s for o, s in keys if o == org}, key=_scenario_order):
            words = scenario_words(scenario)
            per_sends = sends.get((org, scenario), {})
            per_outcomes = outcomes.get((org, scenario), {})
            week_rows = tuple(
                WeekFigures(
                    week=m,
                    in_progress=m == current,
                    sent=per_sends.get(m, (0, 0))[0],
                    delivered=per_sends.get(m, (0, 0))[1],
                    outcome=per_outcomes.get(m, Rate()),
                )
                for m in mondays
            )
            lifts = tuple(
                _lift_from_row(r, mondays[0], words.outcome)
                for r in sorted(lift_rows.get((org, scenario), []), key=lambda r: str(r["rule_name"]))
            )
            cert_weeks = None
            if scenario == "certification_expiry":
                per_cert = certs.get(org, {})
                cert_weeks = tuple(
                    CertificationWeek(m, m == current, *per_cert.get(m, (0, 0))) for m in mondays
                )
            scenarios.append(ScenarioHealth(scenario, words, week_rows, lifts, cert_weeks))
        label = None if org is None else (names or {}).get(org)
        organisations.append(OrganisationHealth(org, tuple(scenarios), label))
    return ProgrammeHealth(as_of, mondays, tuple(organisations), organization_id, names or {})


# --- loading ----------------------------------------------------------------------------------------


async def load_programme_health(
    conn: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any],
    as_of: dt.datetime,
    weeks: int = DEFAULT_WEEKS,
    organization_id: uuid.UUID | None = None,
) -> ProgrammeHealth:
    """Run the page's queries for the window ending at ``as_of`` and build the page.

    The four reads run in one repeatable-read, read-only transaction: the sends, outcomes and
    lift are counted from one snapshot, so their totals agree with each other."""
    mondays = window_weeks(as_of, weeks)
    params = {"since": window_start(mondays), "until": as_of, "organization_id": organization_id}
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        fetched = [
            await fetch(conn, name, **params)
            for name in (
                "programme_weekly_sends",
                "programme_weekly_outcomes",
                "programme_current_lift",
                "programme_weekly_certifications",
            )
        ]
        names = await organisation_names(
            conn, [organization_id, *(r["organization_id"] for rows in fetched for r in rows)]
        )
    return build_programme_health(
        ProgrammeRows(*(_records(r) for r in fetched)), as_of, weeks, organization_id, names
    )


TEMPLATE = "programme.html.j2"


def render_programme(page: ProgrammeHealth | ProgrammeUnavailable) -> str:
    """The whole page as one HTML document, through the status page's template environment
    (autoescaping on, undefined names fail)."""
    return (
        environment()
        .get_template(TEMPLATE)
        .render(page=page, available=isinstance(page, ProgrammeHealth), min_final=MIN_FINAL_OUTCOMES)
    )


def _records(rows: Iterable[asyncpg.Record]) -> tuple[Mapping[str, Any], ...]:
    return tuple(dict(r) for r in rows)


class BadOrganization(ValueError):
    """The ``organization`` query parameter is not one organisation id."""


def parse_organization(values: Sequence[str]) -> uuid.UUID | None:
    """``?organization=UUID`` → that id; absent → None (every organisation)."""
    if not values:
        return None
    if len(values) > 1:
        raise BadOrganization("Give at most one organization parameter.")
    try:
        return uuid.UUID(values[0].strip())
    except ValueError:
        raise BadOrganization(
            "The organization parameter must be an organisation id, such as "
            "/programme?organization=00000000-0000-0000-0000-0000000000aa."
        ) from None


async def programme_page(
    pool: asyncpg.Pool[Any] | None,
    as_of: dt.datetime,
    organization_id: uuid.UUID | None = None,
    *,
    weeks: int = DEFAULT_WEEKS,
    limit_seconds: float = LOAD_TIMEOUT_SECONDS,
) -> ProgrammeHealth | ProgrammeUnavailable:
    """The page's model, or why the figures cannot be shown: a database that is down or slow
    gives a page that says so, never an error page."""
    if pool is None:
        return ProgrammeUnavailable("This server was started without a database connection.", organization_id)
    try:
        with anyio.fail_after(limit_seconds):
            async with pool.acquire() as conn:
                return await load_programme_health(conn, as_of, weeks, organization_id)
    except DB_ERRORS as exc:
        log.warning("programme_page_unavailable", error=repr(exc))
        if isinstance(exc, TimeoutError):
            return ProgrammeUnavailable("The programme's database did not answer in time.", organization_id)
        return ProgrammeUnavailable("The programme's database could not be reached.", organization_id)
