"""The programme-health page (``GET /programme``): what the nudges did, for programme staff.

Per organisation and scenario, the last weeks (12 by default): messages sent and delivered,
how often mentors then did the hoped-for thing, the difference against the comparison group
that was deliberately not messaged (the holdout), and for certifications how many were renewed
in time or lapsed. The readers are programme staff and their funders, not operators: every
figure is said in plain words: each scenario package names itself and its outcome
(``SCENARIO_WORDS`` collects them from the registry), and the template only lays it out.

``build_programme_health`` is pure (rows in, a frozen view model out) so that the numbers and
the wording are tested without a database; ``load_programme_health`` runs the page's named
queries and hands their rows to it. Outcomes, differences and renewals come from the queries
and the outcomes model `report` uses (queries/outcomes.sql, outcomes/model.py): rates over the
mature cohort only, the rest "still being measured", one definition of a renewal in time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncpg

from scenario_engine.db.errors import DB_ERRORS
from scenario_engine.db.queries import fetch
from scenario_engine.logs import get_logger
from scenario_engine.outcomes import model
from scenario_engine.outcomes.model import MIN_FINAL_PER_ARM, Arm, sum_arms
from scenario_engine.outcomes.organisations import organisation_names
from scenario_engine.outcomes.report import ArmComparison, arm_comparisons
from scenario_engine.scenarios.registry import SCENARIOS
from scenario_engine.web.programme_chart import (
    ForestEntry,
    ForestPlot,
    WeeklyChart,
    layout_forest,
    layout_weekly,
    signed,
)
from scenario_engine.web.status_page import environment

log = get_logger("scenario_engine.programme")

DEFAULT_WEEKS = 12
# Twelve weeks of decisions on a large programme take a moment; a database that does not
# answer in this time gets the "figures unavailable" page rather than a hanging request.
LOAD_TIMEOUT_SECONDS = 10.0
# The page's window is [since, as_of], as_of included; the shared queries take [since, until).
# timestamptz counts microseconds, so until = as_of + 1 µs is exactly "as_of included".
_INCLUSIVE = dt.timedelta(microseconds=1)


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
    return signed(value)


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


def rate_text(arm: Arm) -> str:
    """The mature rate as a whole percentage, '42 %', or '—' with nothing mature yet."""
    share = arm.share
    return "—" if share is None else percent(share)


def rate_detail(arm: Arm) -> str:
    """'21 of 50; still being measured: 8 (3 already achieved)'."""
    parts = [f"{arm.achieved} of {arm.final}"] if arm.final else []
    if arm.measuring:
        parts.append(arm.measuring_words)
    return "; ".join(parts) if parts else "nothing measured yet"


@dataclass(frozen=True)
class WeekFigures:
    week: dt.date
    in_progress: bool  # the week holding as_of: its figures are still growing
    sent: int = 0
    delivered: int = 0
    outcome: Arm = field(default_factory=Arm)  # the messaged decisions of the week

    @property
    def label(self) -> str:
        return week_label(self.week) + (" (so far)" if self.in_progress else "")

    @property
    def mature(self) -> bool:
        """Every outcome of the week's messages is known: its rate will not change any more."""
        return self.outcome.measuring == 0


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
    experiment), over the window: the outcomes model's lift (``result``, mature cohorts only)
    in the page's words. ``difference`` and the interval are percentage points."""

    name: str  # the set-up's configured name; shown only when a scenario has several
    started_at: dt.datetime  # when the current comparison set-up began
    measured_from: dt.date  # the later of the window's first day and started_at
    keeps_back: bool  # the set-up keeps a comparison group back (a rule or global holdout share > 0)
    outcome: str  # the scenario's outcome words ("came back")
    result: model.Lift

    @property
    def treated(self) -> Arm:
        return self.result.treated

    @property
    def holdout(self) -> Arm:
        return self.result.holdout

    @property
    def difference(self) -> float | None:
        return self.result.points

    @property
    def low(self) -> float | None:
        return self.result.low

    @property
    def high(self) -> float | None:
        return self.result.high

    @property
    def measured_from_words(self) -> str:
        return day_words(self.measured_from)

    @property
    def has_comparison(self) -> bool:
        return self.keeps_back or self.holdout.decisions > 0

    @property
    def enough_data(self) -> bool:
        return self.result.enough_data

    @property
    def verdict(self) -> str:
        """One sentence a funder can read (the outcomes model's words)."""
        return model.verdict(self.result, self.outcome, has_comparison=self.has_comparison)

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
        return self.result.shortfall_words


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
    def outcome(self) -> Arm:
        total = Arm()
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
    def chart(self) -> WeeklyChart:
        """Messages sent per week, with axes; weeks whose results are still being measured marked."""
        return layout_weekly(
            [w.sent for w in self.weeks],
            [w.label for w in self.weeks],
            [f"{w.week.day} {w.week:%b}" for w in self.weeks],
            [w.mature for w in self.weeks],
        )


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
class SummaryRow:
    """One line of the across-organisations summary: an organisation's kind of message, what was
    sent, its outcome over the mature cohort (with those still being measured), and — for each
    current comparison set-up — the difference with its range (None: nothing is compared)."""

    organisation: OrganisationHealth
    scenario: ScenarioHealth
    lift: Lift | None

    @property
    def key(self) -> str:
        """Identifies the row in the page, in the table and in the forest plot alike."""
        name = f"-{self.lift.name}" if self.lift is not None and self.scenario.show_lift_names else ""
        return f"{self.organisation.anchor}-{self.scenario.scenario_type}{name}"

    @property
    def label(self) -> str:
        """The kind of message, with the set-up's name where the kind has several."""
        if self.lift is not None and self.scenario.show_lift_names:
            return f"{self.scenario.title} ({self.lift.name})"
        return self.scenario.title

    @property
    def missing(self) -> str:
        """What the row says without a difference: 'not enough data yet' or 'not measured'."""
        return "not enough data yet" if self.lift is None else self.lift.figure

    @property
    def forest_entry(self) -> ForestEntry:
        lift = self.lift
        measured = lift is not None and lift.difference is not None
        return ForestEntry(
            key=self.key,
            group=self.organisation.name,
            label=self.label,
            point=lift.difference if measured and lift is not None else None,
            low=lift.low if measured and lift is not None else None,
            high=lift.high if measured and lift is not None else None,
            missing=self.missing,
        )

    @property
    def sent(self) -> int:
        return self.scenario.sent

    @property
    def outcome(self) -> Arm:
        return self.scenario.outcome


@dataclass(frozen=True)
class ProgrammeHealth:
    as_of: dt.datetime
    weeks: tuple[dt.date, ...]
    organisations: tuple[OrganisationHealth, ...]
    organization_id: uuid.UUID | None = None  # the one organisation asked for, if any
    organisation_names: Mapping[uuid.UUID, str] = field(default_factory=dict)
    # How delivering differently changed outcomes, per rule (docs/OUTCOMES.md, "Experiment arms").
    delivery_experiments: tuple[ArmComparison, ...] = ()

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

    @property
    def summary(self) -> tuple[SummaryRow, ...]:
        """Per organisation and kind of message (in page order), one row per current comparison
        set-up, or one row without a difference where there is none: the data of a summary
        table and its forest plot (a point and an interval per row that has one)."""
        return tuple(
            SummaryRow(org, scenario, lift)
            for org in self.organisations
            for scenario in org.scenarios
            for lift in (scenario.lifts or (None,))
        )

    @property
    def forest(self) -> ForestPlot:
        """The summary's forest plot: a point and its range per summary row that has one."""
        return layout_forest([row.forest_entry for row in self.summary])


@dataclass(frozen=True)
class ProgrammeUnavailable:
    """The figures could not be read: the page says so instead of failing."""

    reason: str
    organization_id: uuid.UUID | None = None

    @property
    def title(self) -> str:
        return "Programme health · figures unavailable"


# --- building the page from rows --------------------------------------------------------------------


@dataclass(frozen=True)
class ProgrammeRows:
    """The rows the page is built from: ``programme_weekly_sends`` (queries/programme.sql) and,
    shared with `report`, ``outcome_counts``, ``outcome_experiments`` and
    ``certification_renewals`` (queries/outcomes.sql)."""

    sends: Sequence[Mapping[str, Any]] = ()
    outcomes: Sequence[Mapping[str, Any]] = ()
    experiments: Sequence[Mapping[str, Any]] = ()
    certifications: Sequence[Mapping[str, Any]] = ()
    arms: Sequence[Mapping[str, Any]] = ()  # arm_outcome_counts: the delivery experiments


def _org(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _lifts(
    rows: ProgrammeRows,
) -> dict[tuple[uuid.UUID | None, str], list[tuple[Mapping[str, Any], Arm, Arm]]]:
    """Per (organisation, scenario type): each rule's current experiment with its two arms over
    the window. A difference never mixes two holdout set-ups; a rule whose current set-up has
    no outcome in the window gives none."""
    current = {int(e["id"]): e for e in rows.experiments if e["current"]}
    arms = sum_arms(
        (r for r in rows.outcomes if r["experiment_id"] is not None and int(r["experiment_id"]) in current),
        lambda r: (_org(r["organization_id"]), int(r["experiment_id"]), str(r["arm"])),
    )
    out: dict[tuple[uuid.UUID | None, str], list[tuple[Mapping[str, Any], Arm, Arm]]] = {}
    for org, experiment_id in sorted({(o, e) for o, e, _ in arms}, key=lambda k: (str(k[0]), k[1])):
        experiment = current[experiment_id]
        treated = arms.get((org, experiment_id, "treated"), Arm())
        holdout = arms.get((org, experiment_id, "holdout"), Arm())
        out.setdefault((org, str(experiment["scenario_type"])), []).append((experiment, treated, holdout))
    return out


def _lift(
    experiment: Mapping[str, Any], treated: Arm, holdout: Arm, first_day: dt.date, outcome: str
) -> Lift:
    started: dt.datetime = experiment["started_at"]
    # The rule's own holdout or the global one: either keeps a comparison group back.
    keeps_back = float(experiment["holdout_percent"]) > 0 or float(experiment["global_holdout_percent"]) > 0
    return Lift(
        name=str(experiment["rule_name"]),
        started_at=started,
        measured_from=max(first_day, started.astimezone(dt.UTC).date()),
        keeps_back=keeps_back,
        outcome=outcome,
        result=model.lift(treated, holdout),
    )


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
    # The messaged decisions' outcomes per week, whatever the rule or experiment.
    weekly = sum_arms(
        (r for r in rows.outcomes if r["arm"] == "treated" and r["week"] in shown),
        lambda r: (_org(r["organization_id"]), str(r["scenario_type"]), r["week"]),
    )
    outcomes: dict[tuple[uuid.UUID | None, str], dict[dt.date, Arm]] = {}
    for (org, scenario, week), arm in weekly.items():
        outcomes.setdefault((org, scenario), {})[week] = arm
    lift_rows = _lifts(rows)
    certs: dict[uuid.UUID | None, dict[dt.date, tuple[int, int]]] = {}
    for row in rows.certifications:
        if row["week"] in shown:
            renewed, lapsed = certs.setdefault(_org(row["organization_id"]), {}).get(row["week"], (0, 0))
            certs[_org(row["organization_id"])][row["week"]] = (
                renewed + int(row["renewed_in_time"]),
                lapsed + int(row["lapsed"]),
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
                    outcome=per_outcomes.get(m, Arm()),
                )
                for m in mondays
            )
            lifts = tuple(
                _lift(experiment, treated, holdout, mondays[0], words.outcome)
                for experiment, treated, holdout in sorted(
                    lift_rows.get((org, scenario), []), key=lambda x: str(x[0]["rule_name"])
                )
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
    return ProgrammeHealth(
        as_of, mondays, tuple(organisations), organization_id, names or {}, arm_comparisons(rows.arms)
    )


# --- loading ----------------------------------------------------------------------------------------


async def load_programme_health(
    conn: asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any],
    as_of: dt.datetime,
    weeks: int = DEFAULT_WEEKS,
    organization_id: uuid.UUID | None = None,
) -> ProgrammeHealth:
    """Run the page's queries for the window ending at ``as_of`` (included) and build the page.

    The reads run in one repeatable-read, read-only transaction: the sends, outcomes, set-ups
    and renewals are counted from one snapshot, so their totals agree with each other. The
    outcomes and the renewals are judged at ``as_of``, as `report` judges them."""
    mondays = window_weeks(as_of, weeks)
    since, until = window_start(mondays), as_of + _INCLUSIVE
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sends = await fetch(
            conn, "programme_weekly_sends", since=since, until=as_of, organization_id=organization_id
        )
        outcomes = await fetch(
            conn,
            "outcome_counts",
            since=since,
            until=until,
            as_of=as_of,
            organization_id=organization_id,
            rule_name=None,
        )
        experiments = await fetch(conn, "outcome_experiments", rule_name=None)
        arms = await fetch(
            conn,
            "arm_outcome_counts",
            since=since,
            until=until,
            as_of=as_of,
            organization_id=organization_id,
            rule_name=None,
        )
        certifications = await fetch(
            conn,
            "certification_renewals",
            since=since,
            until=until,
            split=since,
            as_of=as_of,
            organization_id=organization_id,
        )
        names = await organisation_names(
            conn,
            [
                organization_id,
                *(r["organization_id"] for rows in (sends, outcomes, certifications) for r in rows),
            ],
        )
    return build_programme_health(
        ProgrammeRows(*(_records(r) for r in (sends, outcomes, experiments, certifications, arms))),
        as_of,
        weeks,
        organization_id,
        names,
    )


TEMPLATE = "programme.html.j2"


def render_programme(page: ProgrammeHealth | ProgrammeUnavailable) -> str:
    """The whole page as one HTML document, through the status page's template environment
    (autoescaping on, undefined names fail)."""
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            page=page,
            available=isinstance(page, ProgrammeHealth),
            min_final=MIN_FINAL_PER_ARM,
            rate_text=rate_text,
            rate_detail=rate_detail,
            points=points,
        )
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
    names: Mapping[uuid.UUID, str] | None = None,
) -> ProgrammeHealth | ProgrammeUnavailable:
    """The page's model, or why the figures cannot be shown: a database that is down or slow
    gives a page that says so, never an error page. ``names``: the rules file's organisation
    names, shown instead of the ids."""
    if pool is None:
        return ProgrammeUnavailable("This server was started without a database connection.", organization_id)
    try:
        with anyio.fail_after(limit_seconds):
            async with pool.acquire() as conn:
                health = await load_programme_health(conn, as_of, weeks, organization_id)
                if not names:
                    return health
                named = tuple(  # the rules file's names first, then the platform's
                    dataclasses.replace(o, label=names.get(o.organization_id) or o.label)
                    if o.organization_id
                    else o
                    for o in health.organisations
                )
                return dataclasses.replace(
                    health, organisations=named, organisation_names={**health.organisation_names, **names}
                )
    except DB_ERRORS as exc:
        log.warning("programme_page_unavailable", error=repr(exc))
        if isinstance(exc, TimeoutError):
            return ProgrammeUnavailable("The programme's database did not answer in time.", organization_id)
        return ProgrammeUnavailable("The programme's database could not be reached.", organization_id)
