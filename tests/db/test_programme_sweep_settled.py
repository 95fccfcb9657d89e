"""A full sweep's batch with per-organisation programmes, when no mentor of it moved (issue 20).

The reads ahead (evaluate._Prefetch) read the batch's organisations together with whether any
mentor of its id range is in another organisation than the engine last saw them in (or is seen
for the first time). When none is, the batch has nothing to record or baseline, and the writer
skips the moves statement (``mentor_programme_moves_range``) — it was the largest part of the
programmes' extra database time in a steady sweep. Observed here by a lock that stops any
write to scenario_mentor_programme: a settled batch completes under it, and a batch with a
mentor seen for the first time, or one who moved, runs into it. And the sweep's
organisation-override path (the default rule's id range without the other organisations'
mentors, their variants in one statement) decides a settled steady sweep exactly as the
single-mentor path does.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.engine import Engine
from scenario_engine.evaluate import SeenRules, ensure_rules_seen, evaluate_set_based
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import ORG, add_activity, add_certification, add_mentor
from tests.support.programmes import OSLO, two_orgs

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
# An organisation listed for policy keys alone: its mentors run the default rules.
BERGEN = uuid.UUID("0b6f0000-0000-4000-8000-000000000002")


def _with_oslo(rules: Rules) -> Rules:
    """``rules`` plus an organisation that runs inactive_21d with its own threshold."""
    oslo = {str(OSLO): {"name": "Oslo", "rules": {"inactive_21d": {"threshold_days": 14}}}}
    return Rules.model_validate({**rules.model_dump(exclude={"organizations"}), "organizations": oslo})


async def _mentor(conn: Any, org: uuid.UUID, last_active: dt.datetime) -> uuid.UUID:
    mentor = await add_mentor(conn, joined_at=AS_OF - 400 * DAY)
    await conn.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", mentor, org)
    await add_activity(conn, mentor, last_active)
    return mentor


async def _seen(conn: Any, mentor: uuid.UUID) -> None:
    """Record ``mentor`` as last seen in their present organisation."""
    await conn.execute(
        "INSERT INTO scenario_engine.scenario_mentor_programme (mentor_id, organization_id, seen_at) "
        "SELECT id, organization_id, $2 FROM peer_mentor WHERE id = $1",
        mentor,
        AS_OF - 2 * DAY,
    )


async def _sweep_batch_under_lock(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules, mentors: list[uuid.UUID]
) -> list[tuple[uuid.UUID, str, str]]:
    """``mentors`` evaluated as a full sweep's batch, with a reader, while another session holds
    scenario_mentor_programme against writers (reads still go through); a write there fails
    after 300 ms instead of waiting."""
    experiments = await ensure_rules_seen(conn, rules, AS_OF, SeenRules())
    batch = sorted(mentors)
    locker = await connect(db_url, application_name="locker")
    reader = await connect(db_url, application_name="reader")
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE scenario_engine.scenario_mentor_programme IN EXCLUSIVE MODE")
        await conn.execute("SET lock_timeout = '300ms'")
        try:
            outcomes = await evaluate_set_based(
                conn, rules, experiments, AS_OF, lambda _t: batch, reader=reader, bounds=(None, batch[-1])
            )
        finally:
            await conn.execute("RESET lock_timeout")
            await tx.rollback()
    finally:
        await reader.close()
        await locker.close()
    return sorted((o.candidate.mentor_id, o.candidate.rule_name, o.decision.outcome) for o in outcomes)


async def test_a_settled_batch_writes_nothing_and_decides_each_mentor_under_its_programme(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules
) -> None:
    """Every mentor of the range is where the engine last saw them: the batch completes while
    scenario_mentor_programme is locked against writers, and still decides the Oslo mentor
    under Oslo's 14-day threshold and the default one under 21 days (both inactive 15 days)."""
    oslo = await _mentor(conn, OSLO, AS_OF - 15 * DAY)
    default = await _mentor(conn, ORG, AS_OF - 15 * DAY)
    for m in (oslo, default):
        await _seen(conn, m)
    found = await _sweep_batch_under_lock(conn, db_url, _with_oslo(rules), [oslo, default])
    assert found == [(oslo, "inactive_21d", "sent")]


@pytest.mark.parametrize("unsettled", ["first_seen", "moved"])
async def test_a_batch_with_a_new_or_moved_mentor_still_records_them(
    conn: asyncpg.Connection[Any], db_url: str, rules: Rules, unsettled: str
) -> None:
    """The counterpart, which shows the lock above would catch the moves statement: a mentor
    seen for the first time, or one who moved since, is recorded by the batch (the write runs
    into the lock); unlocked, the move is recorded."""
    oslo = await _mentor(conn, OSLO, AS_OF - 15 * DAY)
    other = await _mentor(conn, ORG, AS_OF - 15 * DAY)
    await _seen(conn, oslo)
    if unsettled == "moved":
        await _seen(conn, other)
        await conn.execute("UPDATE peer_mentor SET organization_id = $2 WHERE id = $1", other, OSLO)
    with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
        await _sweep_batch_under_lock(conn, db_url, _with_oslo(rules), [oslo, other])
    experiments = await ensure_rules_seen(conn, _with_oslo(rules), AS_OF, SeenRules())
    batch = sorted([oslo, other])
    await evaluate_set_based(
        conn, _with_oslo(rules), experiments, AS_OF, lambda _t: batch, bounds=(None, batch[-1])
    )
    recorded = await conn.fetchval(
        "SELECT organization_id FROM scenario_engine.scenario_mentor_programme WHERE mentor_id = $1", other
    )
    assert recorded == (OSLO if unsettled == "moved" else ORG)


async def test_a_settled_steady_sweep_decides_as_the_single_mentor_path(pool: Any) -> None:
    """Three organisations interleaved in small batches — the default, Oslo (its own inactivity
    threshold and cooldown, certification tiers, no sessions_year, cap 1) and Bergen (policy
    keys only) — swept once, then again three days later, when every mentor is settled: each
    mentor's outcomes in the second sweep are those the single-mentor path gives at that
    instant. The mentors' last activities and certifications put candidates of both the
    default's and Oslo's variants into the second sweep."""
    rules = two_orgs(f'\n[organizations."{BERGEN}"]\nname = "Bergen"\ndaily_cap = 1\n')
    later = AS_OF + 3 * DAY
    kinds: dict[uuid.UUID, str] = {}
    orgs = (ORG, OSLO, BERGEN)
    for i in range(24):
        org = orgs[i % 3]
        mentor = await _mentor(pool, org, AS_OF - (10 + i % 8) * DAY)
        if i % 2:
            await add_certification(pool, mentor, expires_at=later + (i % 5) * DAY + dt.timedelta(hours=1))
        kinds[mentor] = {ORG: "default", OSLO: "oslo", BERGEN: "bergen"}[org]
    await Engine(pool, rules, sweep_batch=8).run_scheduled_evaluation(AS_OF)
    recorded = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_mentor_programme")
    assert recorded == len(kinds)  # the first sweep saw everyone: the second is settled
    alone = {
        m: sorted(
            (o.candidate.rule_name, o.decision.outcome)
            for o in await Engine(pool, rules).evaluate_mentor(m, as_of=later, dry_run=True)
        )
        for m in kinds
    }
    result = await Engine(pool, rules, sweep_batch=8).run_scheduled_evaluation(later, collect=True)
    swept: dict[uuid.UUID, list[tuple[str, str]]] = {m: [] for m in kinds}
    for o in result.outcomes:
        swept[o.candidate.mentor_id].append((o.candidate.rule_name, o.decision.outcome))
    for m, kind in kinds.items():
        assert sorted(swept[m]) == alone[m], (kind, swept[m], alone[m])
    for kind in ("default", "oslo"):
        assert any(swept[m] for m, k in kinds.items() if k == kind), kind
