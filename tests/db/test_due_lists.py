"""The incremental sweep's due lists do not deduplicate (issue 18): the planner cannot estimate a
window on an unnested threshold (``occurred_at > since - threshold``) and guesses a tenth of the
table — a million activities at 1M — and a ``UNION`` or ``DISTINCT`` over such a list sized its
hash table for them: ≈ 20 ms of the 1M incremental sweep's ≈ 55 ms went to allocating it for 287
rows, outside pg_stat_statements' execution time. The lists may name a mentor more than once;
``sweep.due_mentors`` takes each once."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg

from scenario_engine.db.queries import bind
from scenario_engine.scenarios.anniversary import AnniversaryRule
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from scenario_engine.sweep import due_mentors, due_statements
from tests.support.factories import add_activity, add_certification, add_mentor

UTC = dt.UTC
T1 = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)
T0 = T1 - dt.timedelta(minutes=15)
DAY = dt.timedelta(days=1)
MINUTE = dt.timedelta(minutes=1)
DEDUPLICATING = {"Aggregate", "SetOp", "Unique"}


def _rules() -> Rules:
    return Rules(
        daily_cap=3,
        inactivity=[
            InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7),
            InactivityRule(name="inactive_7d", threshold_days=7, cooldown_days=7),
        ],
        milestone=[
            MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3], cooldown_days=2)
        ],
        certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7, 1])],
        anniversary=[AnniversaryRule(name="anniversary")],
    )


def _nodes(plan: dict[str, Any]) -> list[str]:
    return [plan["Node Type"], *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def test_no_due_list_deduplicates(pool: asyncpg.Pool[Any]) -> None:
    statements = due_statements(_rules(), T0, T1)
    assert len(statements) == 5  # four scenarios' lists and policy_due
    for name, params in statements:
        sql, args = bind(name, params)
        [row] = await pool.fetch("EXPLAIN (FORMAT JSON) " + sql, *args)
        plan = json.loads(row[0]) if isinstance(row[0], str) else row[0]
        nodes = _nodes(plan[0]["Plan"])
        assert not DEDUPLICATING & set(nodes), (name, nodes)


async def test_a_mentor_listed_more_than_once_is_evaluated_once(pool: asyncpg.Pool[Any]) -> None:
    rules = _rules()
    # Two activities dated between the sweeps (each listed by inactivity_due's "dated since" and
    # by milestone_due) and two certifications entering a tier: listed several times by each.
    m = await add_mentor(pool, joined_at=T1 - 500 * DAY)
    await add_activity(pool, m, T1 - 10 * MINUTE)
    await add_activity(pool, m, T1 - 5 * MINUTE)
    await add_certification(pool, m, expires_at=T1 + 7 * DAY - 5 * MINUTE)
    await add_certification(pool, m, expires_at=T1 + 30 * DAY - 5 * MINUTE, type_="safeguarding")
    other = await add_mentor(pool, joined_at=T1 - 500 * DAY)
    await add_activity(pool, other, T1 - 3 * DAY)
    async with pool.acquire() as conn:
        listed = {
            name: sum(1 for r in await conn.fetch(*_bound(name, params)) if r["mentor_id"] == m)
            for name, params in due_statements(rules, T0, T1)
        }
        due = await due_mentors(conn, rules, T0, T1)
    assert listed["inactivity_due"] >= 2 and listed["milestone_due"] == 2 and listed["certification_due"] == 2
    assert due.mentors == [m]
    assert {t for t, ms in due.of_type.items() if m in ms} == {
        "inactivity",
        "milestone",
        "certification_expiry",
    }
    assert due.everywhere == set()


def _bound(name: str, params: dict[str, Any]) -> list[Any]:
    sql, args = bind(name, params)
    return [sql, *args]
