"""The outcomes report: what the engine decided in a period, what happened afterwards, and the
lift of the nudged over the held-out mentors (docs/OUTCOMES.md).

The database does the counting (queries/report.sql, set-based); this module only pivots the
few grouped rows into typed rows and applies the statistics, so that the numbers an
organisation shows its funders come from one place and can be checked by hand.

A report never mixes two experiments: a rule whose holdout salt or share changed has one row
per experiment, because a comparison across two assignments of the holdout is not a
comparison of like with like.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import fetch
from scenario_engine.outcomes.labels import OutcomeLabels, outcome_labels
from scenario_engine.outcomes.model import METHOD, MIN_FINAL_PER_ARM, Arm, Lift, lift, sum_arms
from scenario_engine.outcomes.organisations import organisation_label, organisation_names

# Every suppression the write path records (policy.py), so that CSV and JSON keep one shape
# whatever the data holds. The CHECK of scenario_decision.outcome also allows 'cancelled', but
# no decision is ever written so: a push withdrawn at send time (the re-check) stays a 'sent'
# decision, counted in sent and not in delivered; a column for it would always say 0.
SUPPRESSION_REASONS: tuple[str, ...] = (
    "opted_out",
    "cooldown",
    "daily_cap",
    "mentor_not_active",
)


@dataclass(frozen=True)
class Experiment:
    id: int
    holdout_percent: float
    global_holdout_percent: float
    started_at: dt.datetime


@dataclass(frozen=True)
class ReportRow:
    organization_id: uuid.UUID | None
    rule_name: str
    scenario_type: str
    experiment: Experiment | None  # None: decisions taken before experiments were recorded
    candidates: int
    sent: int
    delivered: int
    held_out: int
    suppressed: Mapping[str, int]
    treated: Arm
    holdout: Arm
    lift: Lift
    labels: OutcomeLabels


@dataclass(frozen=True)
class CertificationCounts:
    since: dt.datetime
    until: dt.datetime
    expiring: int = 0
    renewed_in_time: int = 0  # expired by as_of, renewed in time
    lapsed: int = 0  # expired by as_of, not renewed in time
    still_open: int = 0  # not expired at as_of: still being measured
    still_open_renewed: int = 0  # of those, already renewed


@dataclass(frozen=True)
class CertificationRow:
    organization_id: uuid.UUID
    period: CertificationCounts
    previous_period: CertificationCounts


@dataclass(frozen=True)
class ChannelCounts:
    """Deliveries of the period by one channel (docs/CHANNELS.md)."""

    channel: str
    sent: int = 0
    not_delivered: int = 0  # failed, dead, cancelled or abandoned
    pending: int = 0
    fell_back: int = 0  # switched to this channel from push (no device, token unregistered)
    sent_after_fallback: int = 0  # of sent: notifications only this channel reached


# The delivery experiments (docs/OUTCOMES.md, "Experiment arms"): per experiment, its new
# behaviour's arm, its old one's, and the words the report uses for the new one.
ARM_EXPERIMENTS: dict[str, tuple[str, str, str]] = {
    "timing": ("usual_hour", "immediate", "sending at the usual hour"),
    "digest": ("digest", "separate", "delivering in a digest"),
}


@dataclass(frozen=True)
class ArmComparison:
    """One rule's delivery experiment: the new behaviour's arm against the old one's."""

    rule_name: str
    experiment: str  # 'timing'
    new: Arm
    old: Arm
    lift: Lift

    @property
    def words(self) -> str:
        return ARM_EXPERIMENTS[self.experiment][2]


@dataclass(frozen=True)
class Report:
    since: dt.datetime
    until: dt.datetime
    as_of: dt.datetime
    organization_id: uuid.UUID | None
    rule_name: str | None
    rows: tuple[ReportRow, ...]
    certifications: tuple[CertificationRow, ...]
    notes: tuple[str, ...] = ()
    method: str = METHOD
    min_final_per_group: int = MIN_FINAL_PER_ARM
    # Names of the organisations above: the rules file's (issue 20), else the platform's
    # organization table's (outcomes/organisations.py).
    organisation_names: Mapping[uuid.UUID, str] = field(default_factory=dict)
    channels: tuple[ChannelCounts, ...] = ()
    arm_experiments: tuple[ArmComparison, ...] = ()
    # Per rule: pushes delivered inside another's digest, and candidates the daily cap dropped.
    digests: tuple[tuple[str, int, int], ...] = ()

    @property
    def only_email_share(self) -> float | None:
        """Of the delivered notifications, the share that only email reached (None: none delivered)."""
        sent = sum(c.sent for c in self.channels)
        only = sum(c.sent_after_fallback for c in self.channels if c.channel == "email")
        return only / sent if sent else None

    previous_since: dt.datetime = field(init=False)

    def organisation(self, organization_id: uuid.UUID | None) -> str:
        """How the table names an organisation: its name, else its id."""
        return organisation_label(organization_id, self.organisation_names, unrecorded="(none)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "previous_since", self.since - (self.until - self.since))


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass
class _Acc:
    candidates: int = 0
    sent: int = 0
    delivered: int = 0
    held_out: int = 0
    suppressed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUPPRESSION_REASONS, 0))
    arms: dict[str, Arm] = field(default_factory=lambda: {"treated": Arm(), "holdout": Arm()})


_Key = tuple[Any, str, str, int | None]


def _key(r: Mapping[str, Any]) -> _Key:
    return (r["organization_id"], r["rule_name"], r["scenario_type"], r["experiment_id"])


def _pivot(
    decisions: Iterable[Mapping[str, Any]],
    delivered: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Mapping[str, Any]],
) -> dict[_Key, _Acc]:
    groups: dict[_Key, _Acc] = {}
    for r in decisions:
        acc = groups.setdefault(_key(r), _Acc())
        n = int(r["candidates"])
        acc.candidates += n
        outcome = r["outcome"]
        if outcome == "sent":
            acc.sent += n
        elif outcome == "holdout":
            acc.held_out += n
        else:
            acc.suppressed[outcome] = acc.suppressed.get(outcome, 0) + n
    for r in delivered:
        # A push is counted by its enqueue instant, its decision by the sweep's: at a period's
        # edge the two can fall on either side. Such a push has no sent decision in this
        # period's group and is left out rather than shown as a row of zero candidates.
        sent_group = groups.get(_key(r))
        if sent_group is not None and sent_group.sent:
            sent_group.delivered += int(r["delivered"])
    # outcome_counts has a row per week of the decision too: added up here, per arm.
    for (key, arm), counts in sum_arms(outcomes, lambda r: (_key(r), r["arm"])).items():
        arms = groups.setdefault(key, _Acc()).arms
        if arm in arms:
            arms[arm] = arms[arm] + counts
    return groups


def _sort_key(row: ReportRow) -> tuple[str, str, int]:
    return (str(row.organization_id or ""), row.rule_name, row.experiment.id if row.experiment else -1)


# Connections the report uses at once (a pool of this size serves it without waiting), and the
# parallel workers each of its queries may start: four queries with one worker each keep a
# small server busy without queueing a dozen processes on its cores (docs/BENCHMARKS.md).
CONCURRENT_QUERIES = 4
WORKERS_PER_QUERY = 1


async def _fetch_all(
    source: Conn | asyncpg.Pool[Any], calls: Sequence[tuple[str, dict[str, Any]]]
) -> list[list[Any]]:
    """The named queries' rows, in order. From a pool they run at once, each on a connection of
    its own: they are independent scans of different tables, so on a few cores the report takes
    about as long as its slowest query rather than their sum."""
    if isinstance(source, asyncpg.Pool):
        pool = source

        async def one(name: str, params: dict[str, Any]) -> list[Any]:
            async with pool.acquire() as c, c.transaction(readonly=True):
                await c.execute(f"SET LOCAL max_parallel_workers_per_gather = {WORKERS_PER_QUERY}")
                return await fetch(c, name, **params)

        return list(await asyncio.gather(*(one(name, params) for name, params in calls)))
    return [await fetch(source, name, **params) for name, params in calls]


async def build_report(
    conn: Conn | asyncpg.Pool[Any],
    *,
    since: dt.datetime,
    until: dt.datetime,
    organization_id: uuid.UUID | None = None,
    rule_name: str | None = None,
    as_of: dt.datetime,
) -> Report:
    """Counts of decisions with ``as_of`` in [since, until), their outcomes and lift per
    (organisation, rule, experiment), and certification renewals this and the previous period.

    ``as_of`` is the instant the report is taken at: the outcomes and certifications judged
    (the mature cohort: windows closed by then) are those of that instant, the rest are still
    being measured, and renewals issued later are not known; so a report can be reproduced
    later. Given a pool, the counting queries run concurrently (``_fetch_all``); given a
    connection, one by one."""
    since, until, as_of = _aware(since), _aware(until), _aware(as_of)
    if since >= until:
        raise ValueError(
            f"the period is empty: since {since.isoformat()} is not before until {until.isoformat()}"
        )
    params = {"since": since, "until": until, "organization_id": organization_id, "rule_name": rule_name}
    previous_since = since - (until - since)
    (
        cert_records,
        decision_records,
        delivered_records,
        outcome_records,
        experiment_records,
        channel_records,
        arm_records,
        digest_records,
    ) = await _fetch_all(
        conn,
        [
            (
                "certification_renewals",
                {
                    "since": previous_since,
                    "until": until,
                    "split": since,
                    "as_of": as_of,
                    "organization_id": organization_id,
                },
            ),
            ("report_decision_counts", params),
            ("report_delivered_counts", params),
            ("outcome_counts", {**params, "as_of": as_of}),
            ("outcome_experiments", {"rule_name": rule_name}),
            ("report_channel_counts", params),
            ("arm_outcome_counts", {**params, "as_of": as_of}),
            ("report_digest_counts", params),
        ],
    )
    groups = _pivot(decision_records, delivered_records, outcome_records)
    experiments = {
        int(e["id"]): Experiment(
            id=int(e["id"]),
            holdout_percent=float(e["holdout_percent"]),
            global_holdout_percent=float(e["global_holdout_percent"]),
            started_at=e["started_at"],
        )
        for e in experiment_records
    }
    rows = []
    for (org, rule, scenario_type, experiment_id), acc in groups.items():
        treated, holdout = acc.arms["treated"], acc.arms["holdout"]
        rows.append(
            ReportRow(
                organization_id=org,
                rule_name=rule,
                scenario_type=scenario_type,
                experiment=None if experiment_id is None else experiments.get(experiment_id),
                candidates=acc.candidates,
                sent=acc.sent,
                delivered=acc.delivered,
                held_out=acc.held_out,
                suppressed=dict(acc.suppressed),
                treated=treated,
                holdout=holdout,
                lift=lift(treated, holdout),
                labels=outcome_labels(scenario_type),
            )
        )
    rows.sort(key=_sort_key)

    # certification_renewals has a row per week of expiry too: added up per organisation and period.
    sums: dict[uuid.UUID, dict[bool, list[int]]] = {}
    for r in cert_records:
        counts = sums.setdefault(r["organization_id"], {}).setdefault(bool(r["after_split"]), [0] * 5)
        for i, column in enumerate(_CERT_COLUMNS):
            counts[i] += int(r[column])
    certifications = tuple(
        CertificationRow(
            organization_id=org,
            period=CertificationCounts(since, until, *periods.get(True, [0] * 5)),
            previous_period=CertificationCounts(previous_since, since, *periods.get(False, [0] * 5)),
        )
        for org, periods in sorted(sums.items(), key=lambda item: str(item[0]))
    )

    names = await organisation_names(
        conn,
        [organization_id, *(r.organization_id for r in rows), *(c.organization_id for c in certifications)],
    )
    notes = []
    if not rows:
        scope = f" of rule {rule_name!r}" if rule_name is not None else ""
        where = f" in organisation {organization_id}" if organization_id is not None else ""
        notes.append(f"no decisions{scope}{where} with as_of in [{since.isoformat()}, {until.isoformat()})")
    return Report(
        since=since,
        until=until,
        as_of=as_of,
        organization_id=organization_id,
        rule_name=rule_name,
        rows=tuple(rows),
        certifications=certifications,
        notes=tuple(notes),
        organisation_names=names,
        channels=_channels(channel_records),
        arm_experiments=_arm_experiments(arm_records),
        digests=tuple(
            sorted((str(r["rule_name"]), int(r["merged"]), int(r["capped"])) for r in digest_records)
        ),
    )


def arm_comparisons(records: Iterable[Mapping[str, Any]]) -> tuple[ArmComparison, ...]:
    """Rows of ``arm_outcome_counts`` → per rule and delivery experiment, new arm against old
    (the report and the programme page alike)."""
    return _arm_experiments(records)


def _arm_experiments(records: Iterable[Mapping[str, Any]]) -> tuple[ArmComparison, ...]:
    arms = sum_arms(records, lambda r: (str(r["rule_name"]), str(r["experiment"]), str(r["arm"])))
    out = []
    for rule, experiment in sorted({(k[0], k[1]) for k in arms}):
        new_arm, old_arm, _ = ARM_EXPERIMENTS[experiment]
        new, old = arms.get((rule, experiment, new_arm), Arm()), arms.get((rule, experiment, old_arm), Arm())
        out.append(ArmComparison(rule, experiment, new, old, lift(new, old)))
    return tuple(out)


def _channels(records: Iterable[Mapping[str, Any]]) -> tuple[ChannelCounts, ...]:
    acc: dict[str, dict[str, int]] = {}
    for r in records:
        c = acc.setdefault(
            str(r["channel"]),
            dict.fromkeys(("sent", "not_delivered", "pending", "fell_back", "sent_after_fallback"), 0),
        )
        n = int(r["pushes"])
        status = r["status"]
        key = (
            "sent" if status == "sent" else "pending" if status in ("pending", "sending") else "not_delivered"
        )
        c[key] += n
        if r["fell_back"]:
            c["fell_back"] += n
            if status == "sent":
                c["sent_after_fallback"] += n
    return tuple(ChannelCounts(channel, **counts) for channel, counts in sorted(acc.items()))


_CERT_COLUMNS = ("expiring", "renewed_in_time", "lapsed", "still_open", "still_open_renewed")


# --- output: one documented shape per format (docs/OUTCOMES.md, "Reading the output") ----------


def _iso(value: dt.datetime) -> str:
    return value.isoformat()


def _org(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


# Outputs carry four decimals: more would be float noise (20.000000000000007), less could hide
# a difference a reader recomputes from the counts.
DECIMALS = 4


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, DECIMALS)


def _arm_json(arm: Arm) -> dict[str, Any]:
    """The mature cohort (final = achieved + missed, the rate's denominator) and, apart, the
    decisions still being measured with how many of them already achieved."""
    return {
        "final": arm.final,
        "achieved": arm.achieved,
        "missed": arm.missed,
        "rate_percent": _num(arm.rate_percent),
        "still_being_measured": arm.measuring,
        "already_achieved": arm.measuring_achieved,
    }


def _experiment_json(e: Experiment | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "id": e.id,
        "holdout_percent": e.holdout_percent,
        "global_holdout_percent": e.global_holdout_percent,
        "started_at": _iso(e.started_at),
    }


def _counts_json(c: CertificationCounts) -> dict[str, Any]:
    return {
        "since": _iso(c.since),
        "until": _iso(c.until),
        "expiring": c.expiring,
        "renewed_in_time": c.renewed_in_time,
        "lapsed": c.lapsed,
        "still_open": c.still_open,
        "still_open_renewed": c.still_open_renewed,
    }


def report_json(report: Report) -> dict[str, Any]:
    """The JSON document of ``report --output json``: keys are stable, numbers are numbers,
    absent values are null (never a string such as "n/a")."""
    return {
        "method": report.method,
        "min_final_per_group": report.min_final_per_group,
        "since": _iso(report.since),
        "until": _iso(report.until),
        "as_of": _iso(report.as_of),
        "organization_id": _org(report.organization_id),
        "rule": report.rule_name,
        "rows": [
            {
                "organization_id": _org(r.organization_id),
                "organization_name": report.organisation_names.get(r.organization_id)
                if r.organization_id is not None
                else None,
                "rule": r.rule_name,
                "scenario_type": r.scenario_type,
                "experiment": _experiment_json(r.experiment),
                "candidates": r.candidates,
                "sent": r.sent,
                "delivered": r.delivered,
                "held_out": r.held_out,
                "suppressed": dict(r.suppressed),
                "outcome_labels": {"achieved": r.labels.achieved, "missed": r.labels.missed},
                "treated": _arm_json(r.treated),
                "holdout": _arm_json(r.holdout),
                "lift_points": _num(r.lift.points),
                "lift_interval": None
                if r.lift.low is None or r.lift.high is None
                else {"low": _num(r.lift.low), "high": _num(r.lift.high)},
                "lift_note": r.lift.note,
            }
            for r in report.rows
        ],
        "certifications": [
            {
                "organization_id": str(c.organization_id),
                "organization_name": report.organisation_names.get(c.organization_id),
                "period": _counts_json(c.period),
                "previous_period": _counts_json(c.previous_period),
            }
            for c in report.certifications
        ],
        "channels": [
            {
                "channel": c.channel,
                "sent": c.sent,
                "not_delivered": c.not_delivered,
                "pending": c.pending,
                "fell_back": c.fell_back,
                "sent_after_fallback": c.sent_after_fallback,
            }
            for c in report.channels
        ],
        "only_email_share": _num(report.only_email_share),
        "digests": [
            {"rule": rule, "merged": merged, "capped": capped} for rule, merged, capped in report.digests
        ],
        "arm_experiments": [
            {
                "rule": a.rule_name,
                "experiment": a.experiment,
                "new": _arm_json(a.new),
                "old": _arm_json(a.old),
                "difference_points": _num(a.lift.points),
                "difference_interval": None
                if a.lift.low is None or a.lift.high is None
                else {"low": _num(a.lift.low), "high": _num(a.lift.high)},
                "note": a.lift.note,
            }
            for a in report.arm_experiments
        ],
        "notes": list(report.notes),
    }


CSV_COLUMNS: tuple[str, ...] = (
    "organization_id",
    "rule",
    "scenario_type",
    "experiment_id",
    "holdout_percent",
    "global_holdout_percent",
    "candidates",
    "sent",
    "delivered",
    "held_out",
    *(f"suppressed_{reason}" for reason in SUPPRESSION_REASONS),
    "achieved_label",
    "missed_label",
    "treated_final",
    "treated_achieved",
    "treated_rate_percent",
    "treated_still_being_measured",
    "treated_already_achieved",
    "holdout_final",
    "holdout_achieved",
    "holdout_rate_percent",
    "holdout_still_being_measured",
    "holdout_already_achieved",
    "lift_points",
    "lift_low",
    "lift_high",
    "lift_note",
    "method",
    "min_final_per_group",
)


def report_csv_rows(report: Report) -> list[dict[str, Any]]:
    """One dict per report row, keyed by CSV_COLUMNS (empty cells for absent values).
    Certifications are not rows of this table; the JSON and table outputs carry them."""
    out = []
    for r in report.rows:
        e = r.experiment
        row: dict[str, Any] = {
            "organization_id": _org(r.organization_id) or "",
            "rule": r.rule_name,
            "scenario_type": r.scenario_type,
            "experiment_id": "" if e is None else e.id,
            "holdout_percent": "" if e is None else e.holdout_percent,
            "global_holdout_percent": "" if e is None else e.global_holdout_percent,
            "candidates": r.candidates,
            "sent": r.sent,
            "delivered": r.delivered,
            "held_out": r.held_out,
            **{f"suppressed_{reason}": r.suppressed.get(reason, 0) for reason in SUPPRESSION_REASONS},
            "achieved_label": r.labels.achieved,
            "missed_label": r.labels.missed,
            "method": report.method,
            "min_final_per_group": report.min_final_per_group,
            "lift_points": _blank(r.lift.points),
            "lift_low": _blank(r.lift.low),
            "lift_high": _blank(r.lift.high),
            "lift_note": r.lift.note or "",
        }
        for name, arm in (("treated", r.treated), ("holdout", r.holdout)):
            row[f"{name}_final"] = arm.final
            row[f"{name}_achieved"] = arm.achieved
            row[f"{name}_rate_percent"] = _blank(arm.rate_percent)
            row[f"{name}_still_being_measured"] = arm.measuring
            row[f"{name}_already_achieved"] = arm.measuring_achieved
        out.append({column: row[column] for column in CSV_COLUMNS})
    return out


def _blank(value: float | None) -> float | str:
    return "" if value is None else round(value, DECIMALS)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} %"


def _points(value: float) -> str:
    return f"{value:+.1f}"


def _aligned(header: list[str], body: list[list[str]], text: frozenset[int]) -> list[str]:
    """Columns padded to their widest cell: text columns (by index) to the left, numbers right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i in text else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *(line(cells) for cells in body)]


def _measuring_cell(arm: Arm, verb: str) -> str:
    """'12 (3 already achieved)': decisions still being measured, in no rate."""
    return f"{arm.measuring} ({arm.measuring_achieved} already {verb})" if arm.measuring else "0"


def _experiment_cell(e: Experiment | None) -> str:
    if e is None:
        return "none"
    share = f"{e.holdout_percent:g} %" + (
        f" + global {e.global_holdout_percent:g} %" if e.global_holdout_percent else ""
    )
    return f"#{e.id} ({share} held out)"


def format_table(report: Report) -> str:
    """The readable report of ``report --output table`` (the default)."""
    out = [
        f"Outcomes of decisions taken in [{_iso(report.since)}, {_iso(report.until)}), "
        f"as of {_iso(report.as_of)}",
        f"Lift = treated rate − holdout rate, in percentage points; interval: {report.method}; "
        f"no lift below {report.min_final_per_group} final outcomes in either group.",
        f"Rates and lifts count the mature cohort only: decisions whose outcome window closed by "
        f"{_iso(report.as_of)}; the others are still being measured and in no rate.",
    ]
    if report.organization_id is not None or report.rule_name is not None:
        where = "any" if report.organization_id is None else report.organisation(report.organization_id)
        out.append(f"Only organisation {where}, rule {report.rule_name or 'any'}.")
    out.append("")
    out.extend(report.notes)
    if report.channels:
        parts = [
            f"{c.channel} {c.sent} sent, {c.not_delivered} not delivered"
            + (f" ({c.fell_back} by fallback)" if c.fell_back else "")
            for c in report.channels
        ]
        out.append("Delivery by channel: " + "; ".join(parts) + ".")
        if (share := report.only_email_share) is not None:
            out.append(f"Only email reached {share * 100:.1f} % of the delivered notifications.")
        out.append("")
    if report.digests:
        out.append(
            "Digests and the daily cap, per rule (pushes merged into a digest; candidates the cap dropped)"
        )
        out.extend(
            f"  {rule}: {merged} merged, {capped} dropped by the cap"
            for rule, merged, capped in report.digests
        )
        out.append("")
    if report.arm_experiments:
        out.append("Experiment arms (new behaviour − old, mature cohort, 95 % range)")
        for a in report.arm_experiments:
            if a.lift.points is None or a.lift.low is None or a.lift.high is None:
                out.append(f"  {a.rule_name}: {a.words}: {a.lift.note}")
            else:
                out.append(
                    f"  {a.rule_name}: {a.words}: {_points(a.lift.points)} points, "
                    f"95 % range {_points(a.lift.low)} to {_points(a.lift.high)}"
                )
        out.append("")
    if report.rows:
        out.append("Decisions")
        body = [
            [
                report.organisation(r.organization_id),
                r.rule_name,
                _experiment_cell(r.experiment),
                str(r.candidates),
                str(r.sent),
                str(r.delivered),
                str(r.held_out),
                str(sum(r.suppressed.values())),
                ", ".join(f"{k} {v}" for k, v in r.suppressed.items() if v) or "—",
            ]
            for r in report.rows
        ]
        header = [
            "organisation",
            "rule",
            "experiment",
            "candidates",
            "sent",
            "delivered",
            "held out",
            "suppressed",
        ]
        out.extend(_aligned([*header, "by reason"], body, text=frozenset({0, 1, 2, 8})))
        out.append("")
        out.append("Outcomes (mature cohort; still being measured: N (M already achieved), in no rate)")
        body = []
        for r in report.rows:
            t, h = r.treated, r.holdout
            if r.lift.points is None or r.lift.low is None or r.lift.high is None:
                lift_cell, interval_cell = "—", "not enough data"
            else:
                lift_cell = _points(r.lift.points)
                interval_cell = f"[{_points(r.lift.low)}, {_points(r.lift.high)}]"
            body.append(
                [
                    report.organisation(r.organization_id),
                    r.rule_name,
                    _experiment_cell(r.experiment),
                    f"{r.labels.achieved} / {r.labels.missed}",
                    f"{t.achieved}/{t.final}",
                    _pct(t.rate_percent),
                    f"{h.achieved}/{h.final}",
                    _pct(h.rate_percent),
                    _measuring_cell(t + h, "achieved"),
                    lift_cell,
                    interval_cell,
                ]
            )
        header = ["organisation", "rule", "experiment", "outcome", "treated", "rate", "holdout", "rate"]
        out.extend(
            _aligned(
                [*header, "still being measured", "lift (pp)", "95 % interval"],
                body,
                text=frozenset({0, 1, 2, 3}),
            )
        )
        notes = [
            f"  {report.organisation(r.organization_id)} {r.rule_name} "
            f"{_experiment_cell(r.experiment)}: {r.lift.note}"
            for r in report.rows
            if r.lift.note
        ]
        if notes:
            out.append("")
            out.extend(notes)
    out.append("")
    out.append(
        f"Certifications (platform data): this period [{_iso(report.since)}, {_iso(report.until)}), "
        f"previous [{_iso(report.previous_since)}, {_iso(report.since)})"
    )
    if not report.certifications:
        out.append("no certifications expiring in either period")
    else:
        body = []
        for c in report.certifications:
            for label, counts in (("this", c.period), ("previous", c.previous_period)):
                body.append(
                    [
                        report.organisation(c.organization_id),
                        label,
                        str(counts.expiring),
                        str(counts.renewed_in_time),
                        str(counts.lapsed),
                        _measuring_cell(
                            Arm(measuring=counts.still_open, measuring_achieved=counts.still_open_renewed),
                            "renewed",
                        ),
                    ]
                )
        out.extend(
            _aligned(
                ["organisation", "period", "expiring", "renewed in time", "lapsed", "still open"],
                body,
                text=frozenset({0, 1}),
            )
        )
    return "\n".join(out)
