"""The report's daily roll-ups (sql/0032) stay equal to their definition (issue 18, item 4).

`report` and the programme page read report_decision_day and report_push_day for the whole
UTC days of a period and the base tables only for its partial ends. The roll-ups are kept by
statement triggers on scenario_decision and push_notification, so they must equal a recount
from scratch (report_rollups_rebuild's SELECT) after any mix of the engine's writes: sweeps
(decisions, final flags moving, pushes), outcome resolutions, the push worker's status changes,
erasure (`forget`: its DELETEs reach the roll-ups through the same triggers; the roll-ups hold
counts per organisation, rule and day, nothing about a mentor) and retention pruning. And the
report's queries, over periods that start and end mid-day, give what the old full scans gave.
An installation upgraded by 0032 gets its roll-ups back-filled by the migration.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import asyncpg

from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.migrations import discover, migrate
from scenario_engine.db.queries import fetch
from scenario_engine.engine import Engine
from scenario_engine.privacy import forget_mentor, prune_personal_data
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_activity, add_certification, add_mentor

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

# What the triggers should have built: the rows of report_rollups_rebuild, n <> 0 kept.
DECISION_DAYS = """
SELECT (d.as_of AT TIME ZONE 'UTC')::date AS day, d.organization_id, d.rule_name, d.scenario_type,
       d.experiment_id, d.outcome, d.final, count(*) AS n
FROM scenario_engine.scenario_decision d GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
PUSH_DAYS = """
SELECT (p.decided_at AT TIME ZONE 'UTC')::date AS day, p.organization_id, p.experiment_id,
       p.scenario_type, p.data ->> 'rule' AS rule_name, p.channel, p.status,
       p.fell_back_from IS NOT NULL AS fell_back, coalesce(p.digest_of <> p.id, false) AS merged,
       p.notification_id IS NOT NULL AS notified, count(*) AS n
FROM scenario_engine.push_notification p GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
"""

OUTCOME_DAYS = """
SELECT (o.decided_at AT TIME ZONE 'UTC')::date AS day,
       (o.window_ends_at AT TIME ZONE 'UTC')::date AS window_day,
       o.organization_id, o.rule_name, o.scenario_type, o.experiment_id, o.arm, o.timing_arm,
       o.digest_arm, o.status, count(*) AS n
FROM scenario_engine.scenario_outcome o GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
"""

# The statements `report` ran before 0032 (full scans of the period), as the oracle.
OLD_DECISION_COUNTS = """
SELECT d.organization_id, d.rule_name, d.scenario_type, d.experiment_id, d.outcome,
       count(*)::bigint AS candidates
FROM scenario_engine.scenario_decision d
WHERE d.final AND d.as_of >= $1 AND d.as_of < $2 AND d.outcome <> 'baseline'
GROUP BY 1, 2, 3, 4, 5
"""
OLD_CHANNEL_COUNTS = """
SELECT p.channel, p.status, (p.fell_back_from IS NOT NULL) AS fell_back, count(*)::bigint AS pushes
FROM scenario_engine.push_notification p
WHERE p.notification_id IS NOT NULL AND p.decided_at >= $1 AND p.decided_at < $2
GROUP BY 1, 2, 3
"""
OLD_WEEKLY_SENT = """
SELECT d.organization_id, d.scenario_type, date_trunc('week', d.as_of AT TIME ZONE 'UTC')::date AS week,
       count(*) AS sent
FROM scenario_engine.scenario_decision d
WHERE d.outcome = 'sent' AND d.as_of >= $1 AND d.as_of <= $2
GROUP BY 1, 2, 3
"""

MATURE = """
       count(*) FILTER (WHERE o.window_ends_at <= c.cutoff AND o.status = 'achieved')::bigint,
       count(*) FILTER (WHERE o.window_ends_at <= c.cutoff AND o.status = 'missed')::bigint,
       count(*) FILTER (WHERE o.window_ends_at > c.cutoff OR o.status = 'pending')::bigint,
       count(*) FILTER (WHERE o.window_ends_at > c.cutoff AND o.status = 'achieved')::bigint
FROM scenario_engine.scenario_outcome o
CROSS JOIN (SELECT least($2::timestamptz, $3::timestamptz) AS cutoff) c
WHERE o.decided_at >= $1 AND o.decided_at < $2
"""
OLD_OUTCOME_COUNTS = (
    "SELECT o.organization_id, o.rule_name, o.scenario_type, o.experiment_id, o.arm, "
    "date_trunc('week', o.decided_at AT TIME ZONE 'UTC')::date AS week,"
    + MATURE
    + "GROUP BY 1, 2, 3, 4, 5, 6"
)
OLD_ARM_COUNTS = (
    "SELECT o.rule_name, 'timing'::text, o.timing_arm,"
    + MATURE
    + "AND o.timing_arm IS NOT NULL GROUP BY 1, 2, 3 UNION ALL "
    + "SELECT o.rule_name, 'digest'::text, o.digest_arm,"
    + MATURE
    + "AND o.digest_arm IS NOT NULL GROUP BY 1, 2, 3"
)


def _rows(records: list[Any]) -> list[tuple[Any, ...]]:
    return sorted((tuple(r.values()) for r in records), key=repr)


async def assert_rollups_exact(conn: asyncpg.Connection[Any], when: str) -> None:
    for table, definition in (
        ("report_decision_day", DECISION_DAYS),
        ("report_push_day", PUSH_DAYS),
        ("report_outcome_day", OUTCOME_DAYS),
    ):
        kept = await conn.fetch(f"SELECT * FROM scenario_engine.{table} WHERE n <> 0")
        assert _rows(kept) == _rows(await conn.fetch(definition)), f"{table} after {when}"


async def assert_queries_agree(conn: asyncpg.Connection[Any], rnd: random.Random) -> None:
    """The roll-up-backed queries give the old scans' rows: over a period with ragged ends
    (a partial day of more or of less than 12 hours is added or subtracted), one within a day,
    and one from midnight to midnight."""
    since = T0 + dt.timedelta(minutes=rnd.randint(-24 * 60, 15 * 24 * 60))
    ragged = (since, since + dt.timedelta(minutes=rnd.randint(0, 20 * 24 * 60)))
    day = T0.replace(hour=0, minute=0) + dt.timedelta(days=rnd.randint(0, 20))
    one_day = (day + dt.timedelta(hours=rnd.randint(0, 11)), day + dt.timedelta(hours=rnd.randint(12, 23)))
    periods = [ragged, one_day, (day - dt.timedelta(days=3), day + dt.timedelta(days=4))]
    # Boundaries a minute either side of a decision's instant: its day is partial, with rows.
    instants = [
        r[0] for r in await conn.fetch("SELECT DISTINCT as_of FROM scenario_engine.scenario_decision")
    ]
    for x in rnd.sample(instants, min(3, len(instants))):
        minute = dt.timedelta(minutes=1)
        periods += [(x - dt.timedelta(days=5), x - minute), (x + minute, x + dt.timedelta(days=5))]
    for since, until in periods:
        await _agree(conn, rnd, since, until)


async def _agree(
    conn: asyncpg.Connection[Any], rnd: random.Random, since: dt.datetime, until: dt.datetime
) -> None:
    params = {"since": since, "until": until, "organization_id": None, "rule_name": None}
    assert _rows(await fetch(conn, "report_decision_counts", **params)) == _rows(
        await conn.fetch(OLD_DECISION_COUNTS, since, until)
    )
    assert _rows(await fetch(conn, "report_channel_counts", **params)) == _rows(
        await conn.fetch(OLD_CHANNEL_COUNTS, since, until)
    )
    # The outcomes, judged at an instant on a day where windows end (and at random ones).
    ends = await conn.fetch("SELECT window_ends_at FROM scenario_engine.scenario_outcome")
    instants = [e["window_ends_at"] + dt.timedelta(minutes=rnd.choice([-7, 0, 0, 9])) for e in ends[:3]]
    for as_of in [*instants, until - dt.timedelta(hours=rnd.randint(0, 100)), until + dt.timedelta(days=9)]:
        outcome_params = {**params, "as_of": as_of}
        assert _rows(await fetch(conn, "outcome_counts", **outcome_params)) == _rows(
            await conn.fetch(OLD_OUTCOME_COUNTS, since, until, as_of)
        ), as_of
        assert _rows(await fetch(conn, "arm_outcome_counts", **outcome_params)) == _rows(
            await conn.fetch(OLD_ARM_COUNTS, since, until, as_of)
        ), as_of
    sends = await fetch(conn, "programme_weekly_sends", since=since, until=until, organization_id=None)
    assert _rows(
        [{k: r[k] for k in ("organization_id", "scenario_type", "week", "sent")} for r in sends]
    ) == (_rows(await conn.fetch(OLD_WEEKLY_SENT, since, until)))


async def test_rollups_equal_a_recount_after_random_engine_writes(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    rnd = random.Random(32)
    # A daily cap of one: a mentor's second candidate of a day is capped, and sent on a later
    # day, which makes the capped row no longer final (an UPDATE of the decision log).
    engine = Engine(
        pool,
        Rules(
            daily_cap=1,
            inactivity=[
                InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=2, max_reminders=3)
            ],
            milestone=[MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3, 5])],
            certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7, 1])],
        ),
    )
    mentors: list[uuid.UUID] = []
    for _ in range(24):
        m = await add_mentor(pool, joined_at=T0 - dt.timedelta(days=rnd.randint(30, 400)))
        mentors.append(m)
        for _ in range(rnd.randint(0, 4)):
            await add_activity(pool, m, T0 - dt.timedelta(hours=rnd.randint(1, 60 * 24)))
        if rnd.random() < 0.6:
            expires = T0 + dt.timedelta(days=rnd.randint(0, 20))
            await add_certification(pool, m, issued_at=T0 - dt.timedelta(days=360), expires_at=expires)
    as_of = T0
    await assert_rollups_exact(conn, "the set-up")
    actions = ["sweep"] * 5 + ["activity"] * 3 + ["push"] * 2 + ["forget"] * 2 + ["prune"] * 2
    rnd.shuffle(actions)
    for step, action in enumerate(["sweep", *actions]):
        as_of += dt.timedelta(hours=rnd.randint(5, 40), minutes=rnd.randint(0, 59))
        if action == "sweep":  # decisions, final flags, pushes and the outcome resolution
            await engine.run_scheduled_evaluation(as_of)
        elif action == "activity":
            for m in rnd.sample(mentors, 6):
                await add_activity(pool, m, as_of - dt.timedelta(hours=rnd.randint(0, 30)))
            await engine.run_scheduled_evaluation(as_of)
        elif action == "push":  # the push worker's outcomes, one statement for several rows
            await conn.execute(
                "UPDATE scenario_engine.push_notification "
                "SET status = (ARRAY['sent', 'failed', 'dead'])[1 + id % 3] "
                "WHERE status = 'pending' AND id % 4 <> $1",
                step % 4,
            )
        elif action == "forget":  # a mentor with decisions: their rows go, cascades included
            named = await conn.fetchval(
                "SELECT mentor_id FROM scenario_engine.scenario_decision ORDER BY random() LIMIT 1"
            )
            await forget_mentor(conn, named or rnd.choice(mentors))
        else:  # retention (by the rows' created_at, the wall clock): some redacted, some pushes deleted
            later = dt.datetime.now(UTC) + dt.timedelta(days=3)
            await prune_personal_data(
                conn, as_of=later, retention=dt.timedelta(days=1), batch_size=5, max_batches=1
            )
        await assert_rollups_exact(conn, f"step {step}: {action}")
        await assert_queries_agree(conn, rnd)
    # The sequence did what it is meant to exercise.
    assert await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_decision WHERE NOT final") > 0
    assert (
        await conn.fetchval("SELECT count(*) FROM scenario_engine.push_notification WHERE status = 'sent'")
        > 0
    )
    await conn.execute("TRUNCATE scenario_engine.push_notification, scenario_engine.scenario_outcome")
    await assert_rollups_exact(conn, "TRUNCATE")


async def test_an_upgraded_installation_gets_its_rollups_back_filled(empty_db_url: str) -> None:
    """Rows written before 0032 (no triggers yet) are counted by the migration."""
    conn = await connect(empty_db_url)
    pool = await create_pool(empty_db_url)
    try:
        await migrate(conn, [m for m in discover() if m.version < 32])
        for days in (30, 40, 50):
            m = await add_mentor(conn, joined_at=T0 - dt.timedelta(days=400))
            await add_activity(conn, m, T0 - dt.timedelta(days=days))
        rule = InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)
        await Engine(pool, Rules(inactivity=[rule])).run_scheduled_evaluation(T0)
        assert await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_decision") > 0
        assert await conn.fetchval("SELECT to_regclass('scenario_engine.report_decision_day')") is None
        await migrate(conn)
        await assert_rollups_exact(conn, "the upgrade")
        assert await conn.fetchval(
            "SELECT sum(n) FROM scenario_engine.report_decision_day"
        ) == await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_decision")
    finally:
        await pool.close()
        await conn.close()
