"""`build_report` on a hand-computed dataset, written straight into the tables the write path
fills (scenario_decision, scenario_notification, push_notification, scenario_outcome,
scenario_experiment) as it fills them (queries/notifications.sql: one final decision per
candidate, the push with its decision's organisation and experiment), and the platform's
certifications.

The dataset (decisions with as_of in [2026-01-01, 2026-04-01)):

* org A, rule inactive_21d, experiment E1 (10 % holdout): 73 sent (56 achieved, 14 missed, 3
  pending; 65 of their pushes accepted by the gateway), 82 held out (48 achieved, 32 missed, 2
  pending), 9 suppressed; lift 56/70 − 48/80 = +20 pp, Newcombe's worked example 1: [5.24, 33.39].
* org A, inactive_21d, E2 (the same rule after its salt changed): 10 sent (9 achieved), 10 held
  out (3 achieved): Newcombe's example 2, but below the minimum of 30: no lift.
* org B, inactive_21d, E1: 40 treated, 29 held out: one short of the minimum: no lift.
* org B, cert_expiry, E3: 15/30 − 6/30 = +30 pp, interval [5.85, 49.85] (the Wilson bounds
  [33.15, 66.85] and [9.51, 37.31] combined by hand).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scenario_engine.outcomes.model import MIN_FINAL_PER_ARM
from scenario_engine.outcomes.report import Report, build_report
from tests.support.factories import add_certification

ORG_A = uuid.UUID("0000000a-0000-0000-0000-000000000000")
ORG_B = uuid.UUID("0000000b-0000-0000-0000-000000000000")
SINCE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
UNTIL = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
AS_OF = dt.datetime(2026, 3, 15, tzinfo=dt.UTC)  # the instant the report is taken
DAY = dt.timedelta(days=1)
_keys = itertools.count()


@dataclass(frozen=True)
class Group:
    org: uuid.UUID
    rule: str
    scenario_type: str
    experiment: int


async def add_experiment(conn: Any, rule: str, scenario_type: str, salt: str, percent: float) -> int:
    experiment_id: int = await conn.fetchval(
        "INSERT INTO scenario_engine.scenario_experiment (rule_name, scenario_type, holdout_salt, "
        "holdout_percent, global_holdout_salt, global_holdout_percent, started_at) "
        "VALUES ($1, $2, $3, $4, 'global-1', 0, $5) RETURNING id",
        rule,
        scenario_type,
        salt,
        percent,
        SINCE - 30 * DAY,
    )
    return experiment_id


async def add_candidate(
    conn: Any,
    group: Group,
    final: str,
    *,
    outcome_status: str | None = None,
    push_status: str | None = "sent",
    earlier: tuple[tuple[str, Group], ...] = (),
    at: dt.datetime | None = None,
) -> str:
    """One candidate (dedup key): ``earlier`` decisions (outcome, under which group) before its
    ``final`` one, which the write path marks ``final = false`` when it writes the next; for
    sent and holdout a ledger row, for sent a push (enqueued in the same statement: created at
    the decision's instant, with its organisation and experiment), and an outcome row when
    ``outcome_status`` is given."""
    n = next(_keys)
    key = f"{group.scenario_type}:{group.rule}:{n}"
    mentor = uuid.uuid4()
    at = at or SINCE + dt.timedelta(hours=n % 2000 + 1)

    async def decision(
        outcome: str, g: Group, when: dt.datetime, notification: int | None, final: bool
    ) -> int:
        decision_id: int = await conn.fetchval(
            "INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, "
            "outcome, reason, as_of, notification_id, organization_id, experiment_id, final) "
            "VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10) RETURNING id",
            mentor,
            g.scenario_type,
            g.rule,
            key,
            outcome,
            when,
            notification,
            g.org,
            g.experiment,
            final,
        )
        return decision_id

    for i, (outcome, g) in enumerate(earlier):
        await decision(outcome, g, at - (len(earlier) - i) * dt.timedelta(minutes=1), None, False)
    notification = None
    if final in ("sent", "holdout"):
        notification = await conn.fetchval(
            "INSERT INTO scenario_engine.scenario_notification (mentor_id, scenario_type, rule_name, "
            "subject, seq, dedup_key, as_of, held_out) VALUES ($1, $2, $3, 'spell', 1, $4, $5, $6) "
            "RETURNING id",
            mentor,
            group.scenario_type,
            group.rule,
            key,
            at,
            final == "holdout",
        )
    final_id = await decision(final, group, at, notification, True)
    if final == "sent" and push_status is not None:
        await conn.execute(
            "INSERT INTO scenario_engine.push_notification (notification_id, mentor_id, scenario_type, "
            "title, body, data, idempotency_key, status, created_at, organization_id, experiment_id, "
            "decided_at) "
            "VALUES ($1, $2, $3, 't', 'b', "
            "jsonb_build_object('rule', $4::text, 'notification_id', $1::bigint), $5, $6, $7, $8, $9, $7)",
            notification,
            mentor,
            group.scenario_type,
            group.rule,
            key,
            push_status,
            at,
            group.org,
            group.experiment,
        )
    if outcome_status is not None:
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id, "
            "scenario_type, rule_name, experiment_id, arm, subject, decided_at, window_ends_at, status) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, 'spell', $8::timestamptz, "
            "$8::timestamptz + interval '14 days', $9)",
            final_id,
            mentor,
            group.org,
            group.scenario_type,
            group.rule,
            group.experiment,
            "treated" if final == "sent" else "holdout",
            at,
            outcome_status,
        )
    return key


async def add_arm(conn: Any, group: Group, final: str, achieved: int, missed: int, pending: int = 0) -> None:
    for status, count in (("achieved", achieved), ("missed", missed), ("pending", pending)):
        for _ in range(count):
            await add_candidate(conn, group, final, outcome_status=status)


async def seed_outcomes(conn: Any) -> dict[str, Group]:
    """The dataset of the module docstring; returns its groups by name. Candidate n is decided
    at SINCE + n + 1 hours (in the order written here) unless placed explicitly."""
    global _keys
    _keys = itertools.count()
    e1 = await add_experiment(conn, "inactive_21d", "inactivity", "salt-1", 10)
    e2 = await add_experiment(conn, "inactive_21d", "inactivity", "salt-2", 20)
    e3 = await add_experiment(conn, "cert_expiry", "certification_expiry", "salt-c", 50)
    g1 = Group(ORG_A, "inactive_21d", "inactivity", e1)
    g2 = Group(ORG_A, "inactive_21d", "inactivity", e2)
    g3 = Group(ORG_B, "inactive_21d", "inactivity", e1)
    g4 = Group(ORG_B, "cert_expiry", "certification_expiry", e3)

    # g1 treated: 73 sent = 56 achieved + 14 missed + 3 pending. Two were first suppressed by the
    # cooldown (counted once, as sent); one was withdrawn at send time (its push cancelled).
    await add_candidate(conn, g1, "sent", outcome_status="achieved", earlier=(("cooldown", g1),))
    await add_candidate(conn, g1, "sent", outcome_status="missed", earlier=(("cooldown", g1),))
    pushes = ["failed"] * 2 + ["dead"] * 2 + ["abandoned", "pending", "sending"]
    for i in range(7):  # 7 of the achieved ones were not delivered
        await add_candidate(conn, g1, "sent", outcome_status="achieved", push_status=pushes[i])
    await add_candidate(conn, g1, "sent", outcome_status="achieved", push_status="cancelled")
    await add_arm(conn, g1, "sent", achieved=56 - 9, missed=14 - 1, pending=3)
    await add_arm(conn, g1, "holdout", achieved=48, missed=32, pending=2)
    for reason, count in (("opted_out", 4), ("cooldown", 2), ("daily_cap", 1), ("mentor_not_active", 1)):
        for _ in range(count):
            await add_candidate(conn, g1, reason)
    # opted out first, then the cooldown: one candidate, its latest suppression
    await add_candidate(conn, g1, "cooldown", earlier=(("opted_out", g1),))
    # not candidates: no-flood bookkeeping, and decisions outside [since, until)
    for _ in range(5):
        await add_candidate(conn, g1, "baseline")
    for at in (SINCE - dt.timedelta(seconds=1), UNTIL, UNTIL + DAY):
        await add_candidate(conn, g1, "sent", outcome_status="achieved", at=at)

    # g2: the same rule under a new salt. One candidate was suppressed under E1 and then sent
    # under E2: it belongs to E2 only.
    await add_candidate(conn, g2, "sent", outcome_status="achieved", earlier=(("cooldown", g1),))
    await add_arm(conn, g2, "sent", achieved=8, missed=1)
    await add_arm(conn, g2, "holdout", achieved=3, missed=7)

    await add_arm(conn, g3, "sent", achieved=30, missed=10)
    await add_arm(conn, g3, "holdout", achieved=10, missed=19)

    await add_arm(conn, g4, "sent", achieved=15, missed=15)
    await add_arm(conn, g4, "holdout", achieved=6, missed=24)
    for _ in range(2):
        await add_candidate(conn, g4, "opted_out")
    return {"g1": g1, "g2": g2, "g3": g3, "g4": g4}


def _row(report: Report, group: Group) -> Any:
    found = [
        r
        for r in report.rows
        if (r.organization_id, r.rule_name, r.experiment and r.experiment.id)
        == (group.org, group.rule, group.experiment)
    ]
    assert len(found) == 1, found
    return found[0]


async def test_counts_rates_and_lift_per_organisation_rule_and_experiment(conn: Any) -> None:
    groups = await seed_outcomes(conn)
    report = await build_report(conn, since=SINCE, until=UNTIL, as_of=AS_OF)
    assert report.method.startswith("Newcombe hybrid score interval")
    assert report.min_final_per_group == MIN_FINAL_PER_ARM == 30
    assert len(report.rows) == 4  # two experiments of one rule in one organisation stay apart

    g1 = _row(report, groups["g1"])
    assert (g1.candidates, g1.sent, g1.delivered, g1.held_out) == (73 + 82 + 9, 73, 65, 82)
    assert g1.suppressed == {
        "opted_out": 4,
        "cooldown": 3,
        "daily_cap": 1,
        "mentor_not_active": 1,
    }
    # The pending ones' windows closed long before as_of, but no resolution has run since:
    # still being measured, in no rate.
    assert (g1.treated.achieved, g1.treated.missed, g1.treated.measuring) == (56, 14, 3)
    assert (g1.holdout.achieved, g1.holdout.missed, g1.holdout.measuring) == (48, 32, 2)
    assert g1.treated.rate_percent == pytest.approx(80.0)
    assert g1.holdout.rate_percent == pytest.approx(60.0)
    assert g1.lift.points == pytest.approx(20.0)
    assert (round(g1.lift.low, 2), round(g1.lift.high, 2)) == (5.24, 33.39)  # Newcombe 1998, table II
    assert g1.lift.note is None
    assert g1.experiment.holdout_percent == 10.0
    assert (g1.labels.achieved, g1.labels.missed) == ("re-activated", "still inactive")

    g2 = _row(report, groups["g2"])
    assert (g2.candidates, g2.sent, g2.delivered, g2.held_out) == (20, 10, 10, 10)
    assert sum(g2.suppressed.values()) == 0  # its E1 cooldown decision was superseded by the send
    assert (g2.treated.rate_percent, g2.holdout.rate_percent) == (pytest.approx(90.0), pytest.approx(30.0))
    assert (g2.lift.points, g2.lift.low, g2.lift.high) == (None, None, None)
    assert g2.lift.note is not None and "treated has 10 and holdout has 10" in g2.lift.note

    g3 = _row(report, groups["g3"])
    assert (g3.candidates, g3.sent, g3.held_out, g3.treated.final, g3.holdout.final) == (69, 40, 29, 40, 29)
    assert g3.lift.points is None
    assert g3.lift.note is not None and "holdout has 29" in g3.lift.note and "treated" not in g3.lift.note

    g4 = _row(report, groups["g4"])
    assert (g4.candidates, g4.sent, g4.held_out, g4.suppressed["opted_out"]) == (62, 30, 30, 2)
    assert g4.lift.points == pytest.approx(30.0)
    assert (round(g4.lift.low, 2), round(g4.lift.high, 2)) == (5.85, 49.85)
    assert (g4.labels.achieved, g4.labels.missed) == ("renewed in time", "lapsed")


async def test_filters_and_an_unknown_rule_give_a_report_that_says_what_it_covers(conn: Any) -> None:
    groups = await seed_outcomes(conn)
    only_b = await build_report(conn, since=SINCE, until=UNTIL, organization_id=ORG_B, as_of=AS_OF)
    assert {(r.organization_id, r.rule_name) for r in only_b.rows} == {
        (ORG_B, "inactive_21d"),
        (ORG_B, "cert_expiry"),
    }
    assert _row(only_b, groups["g3"]).candidates == 69

    one_rule = await build_report(conn, since=SINCE, until=UNTIL, rule_name="cert_expiry", as_of=AS_OF)
    assert [(r.rule_name, r.candidates) for r in one_rule.rows] == [("cert_expiry", 62)]

    # the first 100 hours: candidates 0–98, all of org A's first experiment (73 sent, then holdouts)
    early = await build_report(conn, since=SINCE, until=SINCE + dt.timedelta(hours=100), as_of=AS_OF)
    assert [(r.experiment and r.experiment.id, r.candidates, r.sent, r.held_out) for r in early.rows] == [
        (groups["g1"].experiment, 99, 73, 26)
    ]

    unknown = await build_report(conn, since=SINCE, until=UNTIL, rule_name="no_such_rule", as_of=AS_OF)
    assert unknown.rows == ()
    assert unknown.notes == (
        "no decisions of rule 'no_such_rule' with as_of in "
        "[2026-01-01T00:00:00+00:00, 2026-04-01T00:00:00+00:00)",
    )


def _summary(report: Report) -> list[tuple[Any, ...]]:
    return [
        (
            r.organization_id,
            r.rule_name,
            r.experiment and r.experiment.id,
            r.candidates,
            r.sent,
            r.delivered,
            r.held_out,
            tuple(r.suppressed.values()),
            r.treated,
            r.holdout,
        )
        for r in report.rows
    ]


async def test_a_database_written_before_0016_reports_the_same_after_the_0017_backfill(conn: Any) -> None:
    """Before 0016 every decision row was final and no push named its organisation or
    experiment; 0017 derives both from the decisions, so such a history is counted as if the
    write path of today had written it."""
    await seed_outcomes(conn)
    expected = _summary(await build_report(conn, since=SINCE, until=UNTIL, as_of=AS_OF))
    await conn.execute("UPDATE scenario_engine.scenario_decision SET final = true")
    await conn.execute(
        "UPDATE scenario_engine.push_notification SET organization_id = NULL, experiment_id = NULL"
    )
    migration = Path(__file__).resolve().parents[2] / "sql" / "0017_report_reads.sql"
    text = re.sub(r"--[^\n]*", "", migration.read_text())
    backfill = [sql for sql in text.split(";") if sql.strip().startswith("UPDATE")]
    assert len(backfill) == 2
    for sql in backfill * 2:  # a second run changes nothing
        await conn.execute(sql)
    assert _summary(await build_report(conn, since=SINCE, until=UNTIL, as_of=AS_OF)) == expected


async def seed_certifications(conn: Any) -> None:
    """Org A: this period 9 expiring (1 renewed in time, 4 lapsed, 4 still open on 15 March of
    which 1 already renewed), previous period 2 (1 renewed, 1 lapsed); org B: 1 renewed this
    period, 1 lapsed before."""

    async def mentor(org: uuid.UUID) -> uuid.UUID:
        mentor_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO public.peer_mentor (organization_id, joined_at) VALUES ($1, $2) RETURNING id",
            org,
            SINCE - 800 * DAY,
        )
        return mentor_id

    def at(y: int, m: int, d: int, h: int = 0) -> dt.datetime:
        return dt.datetime(y, m, d, h, tzinfo=dt.UTC)

    async def cert(
        org: uuid.UUID,
        expires: dt.datetime,
        renewed: dt.datetime | None = None,
        *,
        renewal_type: str = "first_aid",
        renewal_revoked: bool = False,
        revoked: dt.datetime | None = None,
    ) -> None:
        m = await mentor(org)
        await add_certification(conn, m, expires_at=expires, revoked_at=revoked)
        if renewed is not None:
            await add_certification(
                conn,
                m,
                issued_at=renewed,
                expires_at=renewed + 730 * DAY,
                type_=renewal_type,
                revoked_at=renewed + DAY if renewal_revoked else None,
            )

    await cert(ORG_A, at(2026, 2, 1), renewed=at(2026, 1, 20))  # renewed in time
    await cert(ORG_A, at(2026, 2, 10), renewed=at(2026, 2, 15))  # renewed too late: lapsed
    await cert(ORG_A, at(2026, 3, 1))  # lapsed
    await cert(ORG_A, at(2026, 3, 20))  # still open on 15 March
    await cert(ORG_A, at(2026, 3, 25), renewed=at(2026, 3, 10))  # still open, already renewed
    await cert(ORG_A, at(2026, 3, 28), renewed=at(2026, 3, 1), renewal_type="safeguarding")  # open
    await cert(ORG_A, at(2026, 2, 5), revoked=at(2025, 12, 1))  # revoked: not counted
    await cert(ORG_A, at(2026, 2, 20), renewed=at(2026, 2, 1), renewal_revoked=True)  # lapsed
    await cert(ORG_A, at(2026, 3, 30), renewed=at(2026, 3, 20))  # renewal after as_of: still open
    await cert(ORG_A, at(2026, 4, 1))  # at until: the next period
    await cert(ORG_A, at(2026, 1, 1))  # at since: this period, lapsed
    await cert(ORG_A, at(2025, 11, 1), renewed=at(2025, 10, 15))  # previous period, renewed
    await cert(ORG_A, at(2025, 12, 31, 23))  # previous period, lapsed
    await cert(ORG_A, at(2025, 10, 2))  # before the previous period (it starts on 3 October)
    await cert(ORG_B, at(2026, 3, 1), renewed=at(2026, 2, 1))
    await cert(ORG_B, at(2025, 11, 20))


async def test_certifications_this_and_the_previous_period_per_organisation(conn: Any) -> None:
    await seed_certifications(conn)
    report = await build_report(conn, since=SINCE, until=UNTIL, as_of=AS_OF)
    assert report.previous_since == dt.datetime(2025, 10, 3, tzinfo=dt.UTC)  # 90 days before
    by_org = {c.organization_id: c for c in report.certifications}
    assert set(by_org) == {ORG_A, ORG_B}

    def counts(c: Any) -> tuple[int, int, int, int]:
        return (c.expiring, c.renewed_in_time, c.lapsed, c.still_open)

    # The mature rule: the one renewed ahead of an expiry after as_of is still open (already
    # renewed), not renewed in time beside lapses whose peers have not expired yet.
    assert counts(by_org[ORG_A].period) == (9, 1, 4, 4) and by_org[ORG_A].period.still_open_renewed == 1
    assert counts(by_org[ORG_A].previous_period) == (2, 1, 1, 0)
    assert (by_org[ORG_A].previous_period.since, by_org[ORG_A].previous_period.until) == (
        report.previous_since,
        SINCE,
    )
    assert counts(by_org[ORG_B].period) == (1, 1, 0, 0)
    assert counts(by_org[ORG_B].previous_period) == (1, 0, 1, 0)

    # taken after the period, nothing is open any more: the open ones have lapsed
    later = await build_report(conn, since=SINCE, until=UNTIL, organization_id=ORG_A, as_of=UNTIL + DAY)
    assert [counts(c.period) for c in later.certifications] == [(9, 3, 6, 0)]
