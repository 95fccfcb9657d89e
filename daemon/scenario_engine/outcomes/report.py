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
