"""Personal data (issue 10, item 6): `forget`, the cascade of a platform DELETE, retention.

Every check of "nothing names the mentor" is this file's own scan — each column of each table
of the engine's schema, whatever its type, cast to text and searched for the id — so that it
does not share the implementation's idea of which columns can hold an id."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.engine import Engine
from scenario_engine.privacy import prune_personal_data
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from tests.support import pg
from tests.support.catalog import PLATFORM_TABLES
from tests.support.cli import run_cli
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out
from tests.support.roles import create_role, drop_roles, unique_roles, url_as

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SECRET_NAME = "Secret Sam Forgettable"
OTHER_NAME = "Olga Other"

# The young mentor's rows are 300 days old at pruning time, everyone else's 400.
AGED = "CASE WHEN mentor_id = $1 THEN $2::timestamptz ELSE $3::timestamptz END"

# A table a later migration might add: the erasure must cover it without being told.
LATER_TABLE = """
CREATE TABLE scenario_engine.scenario_later_feature (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner     uuid,
    members   uuid[],
    label     varchar(200),
    payload   jsonb
);
"""


async def rows_naming(conn: asyncpg.Connection[Any], mentor: uuid.UUID) -> dict[str, int]:
    """Per engine table, how many rows mention the id in any column (any type, as text)."""
    columns = await conn.fetch(
        "SELECT c.relname AS t, a.attname AS col FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.relnamespace = 'scenario_engine'::regnamespace AND c.relkind IN ('r', 'p') "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2"
    )
    by_table: dict[str, list[str]] = {}
    for r in columns:
        by_table.setdefault(r["t"], []).append(r["col"])
    out: dict[str, int] = {}
    for table, cols in by_table.items():
        where = " OR ".join(f'lower("{c}"::text) LIKE $1' for c in cols)
        n = await conn.fetchval(
            f'SELECT count(*) FROM scenario_engine."{table}" WHERE {where}', f"%{mentor}%"
        )
        if n:
            out[table] = n
    return out


async def engine_table_names(conn: asyncpg.Connection[Any]) -> set[str]:
    return {
        r["relname"]
        for r in await conn.fetch(
            "SELECT relname FROM pg_class "
            "WHERE relnamespace = 'scenario_engine'::regnamespace AND relkind = 'r'"
        )
    }


def inactivity_rules() -> Rules:
    return Rules(
        daily_cap=5,
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
        certification_expiry=[],
        milestone=[],
    )


async def populate(
    conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any], *, now: dt.datetime
) -> tuple[uuid.UUID, uuid.UUID]:
    """Two mentors with rows in every engine table the engine writes, plus hand-made rows
    that name them only in text (an error message, sweep statistics, a later table)."""
    rules = Rules(
        daily_cap=5,
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
        milestone=[MilestoneRule(name="sessions_year", metric="sessions", thresholds=[1])],
        certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7])],
    )
    mentors = []
    for name in (SECRET_NAME, OTHER_NAME):
        m = await add_mentor(conn, joined_at=now - 300 * DAY, name=name)
        await add_activity(conn, m, now - 40 * DAY)  # inactive for 40 days; one session this year
        await add_certification(conn, m, expires_at=now + 10 * DAY)
        await opt_out(conn, m, "milestone")  # a suppressed decision with inputs
        mentors.append(m)
    victim, other = mentors
    engine = Engine(pool, rules)
    result = await engine.run_scheduled_evaluation(now)
    assert result.sent >= 4
    await conn.execute(LATER_TABLE)
    for m in mentors:
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_event (table_name, operation, row_id, last_error) "
            "VALUES ('activity', 'INSERT', '1', $1)",
            f"evaluation failed for mentor {m}: boom",
        )
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_sweep (sweep_key, as_of, instance_id, stats) "
            "VALUES ($1, $2, 'x', $3)",
            f"manual:{m}",
            now,
            {"slowest_mentor": str(m)},
        )
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_sweep_batch (sweep_key, claim_token, batch_no, "
            "instance_id, first_mentor, last_mentor, mentors) "
            "VALUES ($1, gen_random_uuid(), 1, 'x', $2, $2, 1)",
            f"manual:{m}",
            m,
        )
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_later_feature (owner, members, label, payload) "
            "VALUES ($1, ARRAY[$1]::uuid[], $2, $3), (NULL, ARRAY[$1]::uuid[], NULL, NULL), "
            "(NULL, NULL, $2, NULL), (NULL, NULL, NULL, $3)",
            m,
            f"label of {str(m).upper()}",
            {"nested": {"who": [str(m)]}},
        )
        if await conn.fetchval("SELECT to_regclass('scenario_engine.scenario_quarantine') IS NOT NULL"):
            await conn.execute(
                "INSERT INTO scenario_engine.scenario_quarantine (mentor_id, reason) "
                "VALUES ($1, 'odd time zone')",
                m,
            )
    return victim, other


@pytest.fixture
async def admin(db_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    c = await connect(db_url)
    yield c
    await c.close()


async def test_forget_erases_every_row_naming_the_mentor_and_nothing_else(
    db_url: str, admin: asyncpg.Connection[Any], pool: asyncpg.Pool[Any]
) -> None:
    victim, other = await populate(admin, pool, now=dt.datetime.now(dt.UTC))
    before = await rows_naming(admin, victim)
    # every kind of row the engine keeps about a mentor is there to be erased
    assert {
        "scenario_notification", "scenario_decision", "scenario_cooldown", "push_notification",
        "scenario_event", "scenario_sweep", "scenario_sweep_batch", "scenario_later_feature",
    } <= set(before), before  # fmt: skip
    assert before["scenario_later_feature"] == 4
    other_before = await rows_naming(admin, other)
    env = {"SCENARIO_DATABASE_URL": db_url}

    # The mentor still exists on the platform: refused (exit 2), nothing changed.
    refused = await run_cli("forget", str(victim), env=env)
    assert refused.returncode == 2, refused.stderr
    assert "still exists" in refused.stderr and "--force" in refused.stderr
    assert await rows_naming(admin, victim) == before

    # A dry run counts per table and changes nothing.
    dry = await run_cli("forget", str(victim), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert await rows_naming(admin, victim) == before
    assert f"would erase {sum(before.values())} rows" in dry.stdout

    real = await run_cli("forget", str(victim), "--force", env=env)
    assert real.returncode == 0, real.stderr
    assert await rows_naming(admin, victim) == {}
    assert await rows_naming(admin, other) == other_before  # other mentors untouched
    assert "evaluate them afresh" in real.stderr

    # Counts per table, for every engine table (a table added later included), and no
    # personal data: neither the id nor a name nor anything erased.
    lines = {line.split()[0]: line.split()[1] for line in real.stdout.splitlines()[1:-1]}
    assert set(lines) == await engine_table_names(admin)
    assert {t: int(n) for t, n in lines.items() if int(n)} == before
    for out in (refused, dry, real):
        text = out.stdout + out.stderr
        assert str(victim) not in text and str(victim).upper() not in text
        assert SECRET_NAME not in text and OTHER_NAME not in text

    # The mentor is still on the platform: the platform's rows are the platform's, untouched.
    assert await admin.fetchval("SELECT count(*) FROM public.activity WHERE mentor_id = $1", victim) == 1
    # Forgetting twice is harmless and finds nothing.
    again = await run_cli("forget", str(victim), "--force", env=env)
    assert again.returncode == 0 and "erased 0 rows" in again.stdout


async def test_forget_rejects_what_is_not_a_mentor_id(db_url: str) -> None:
    bad = await run_cli("forget", "not-a-uuid", env={"SCENARIO_DATABASE_URL": db_url})
    assert bad.returncode == 2
    assert "invalid UUID value" in bad.stderr


@pytest.fixture
async def platform_role(pg_server: pg.TestServer) -> AsyncIterator[str]:
    roles = unique_roles()
    yield roles.name("platform")
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await drop_roles(admin, [roles.name("platform")])
    finally:
        await admin.close()


async def test_platform_delete_of_a_mentor_cascades_without_engine_grants_and_without_waiting(
    platform_role: str, db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    admin = await connect(db_url)
    try:
        victim, other = await populate(admin, pool, now=dt.datetime.now(dt.UTC))
        third = await add_mentor(admin, joined_at=AS_OF, name="Third")
        # The platform owns its tables and has no grant at all on the engine's schema.
        await create_role(admin, platform_role)
        for table in PLATFORM_TABLES:
            await admin.execute(f'ALTER TABLE public.{table} OWNER TO "{platform_role}"')
        other_before = await rows_naming(admin, other)

        # A running engine transaction holds the third mentor's cooldown row: the platform's
        # DELETE must not wait for it (lock_timeout would fail it), and leaves that row for
        # `forget`.
        await admin.execute(
            "INSERT INTO scenario_engine.scenario_cooldown (mentor_id, scenario_type, last_triggered_at, "
            "last_rule_name) VALUES ($1, 'inactivity', now(), 'r')",
            third,
        )
        holder = await connect(db_url)
        platform = await connect(url_as(db_url, platform_role))
        try:
            assert not await platform.fetchval("SELECT has_schema_privilege('scenario_engine', 'USAGE')")
            await holder.execute("BEGIN")
            await holder.execute(
                "SELECT 1 FROM scenario_engine.scenario_cooldown WHERE mentor_id = $1 FOR UPDATE", third
            )
            await platform.execute("SET lock_timeout = '3s'")
            # one statement, two mentors; the cascade deletes their activities (whose triggers
            # write scenario_event rows naming them) before the engine's trigger runs
            deleted = await platform.execute(
                "DELETE FROM public.peer_mentor WHERE id = ANY($1::uuid[])", [victim, third]
            )
            assert deleted == "DELETE 2"
            await holder.execute("ROLLBACK")
        finally:
            await platform.close()
            await holder.close()

        # Every row naming the mentor by id is gone — the scenario_event rows that the platform's
        # cascaded activity/certification/preference deletes wrote included. Left: only the
        # hand-made rows that name them in free text alone (an error message, sweep statistics,
        # a label and a JSON payload of the later table), which `forget` scans for.
        assert await rows_naming(admin, victim) == {
            "scenario_event": 1, "scenario_sweep": 1, "scenario_later_feature": 2,
        }  # fmt: skip
        assert (
            await admin.fetchval(
                "SELECT count(*) FROM scenario_engine.scenario_event WHERE mentor_id = $1", victim
            )
            == 0
        )
        assert await rows_naming(admin, other) == other_before
        assert await rows_naming(admin, third) == {"scenario_cooldown": 1}  # was locked: skipped
        for gone in (victim, third):
            forgot = await run_cli("forget", str(gone), env={"SCENARIO_DATABASE_URL": db_url})
            assert forgot.returncode == 0, forgot.stderr  # gone from the platform: no --force needed
            assert "still exists" not in forgot.stderr
            assert await rows_naming(admin, gone) == {}
        assert await rows_naming(admin, other) == other_before
    finally:
        await admin.close()


async def test_retention_strips_and_deletes_exactly_the_old_rows_and_dedup_survives(
    db_url: str, pool: asyncpg.Pool[Any]
) -> None:
    """As of AS_OF + 400 days with a 365-day retention: the rows written at AS_OF are old,
    those aged by hand to 300 days young. A re-sweep afterwards sends nothing twice."""
    conn = await connect(db_url)
    try:
        engine = Engine(pool, inactivity_rules())
        old_m = await add_mentor(conn, joined_at=AS_OF - 100 * DAY, name="Old Owen")
        young_m = await add_mentor(conn, joined_at=AS_OF - 100 * DAY, name="Young Yara")
        opted = await add_mentor(conn, joined_at=AS_OF - 100 * DAY, name="Opted Otto")
        await opt_out(conn, opted)
        first = await engine.run_scheduled_evaluation(AS_OF)
        assert first.sent == 2
        prune_at = AS_OF + 400 * DAY
        young_age = prune_at - 300 * DAY
        await conn.execute(
            f"UPDATE scenario_engine.scenario_notification SET created_at = {AGED}",
            young_m, young_age, AS_OF,
        )  # fmt: skip
        await conn.execute(
            f"UPDATE scenario_engine.scenario_decision SET created_at = {AGED}",
            young_m, young_age, AS_OF,
        )  # fmt: skip
        await conn.execute(
            "UPDATE scenario_engine.push_notification SET status = 'sent', sent_at = created_at, "
            f"created_at = {AGED}",
            young_m, young_age, AS_OF,
        )  # fmt: skip
        # old pushes in every other status, by hand
        for status in ("pending", "sending", "failed", "dead", "cancelled", "abandoned"):
            await conn.execute(
                "INSERT INTO scenario_engine.push_notification (mentor_id, scenario_type, title, body, data, "
                "idempotency_key, status, created_at) VALUES ($1, 'inactivity', 'Hi Old Owen', 'b', "
                "'{\"context\": {\"display_name\": \"Old Owen\"}}', $2, $3, $4)",
                old_m, f"hand:{status}", status, AS_OF,
            )  # fmt: skip
        notifications_before = await conn.fetch(
            "SELECT id, dedup_key, mentor_id, context FROM scenario_engine.scenario_notification ORDER BY id"
        )
        decisions_before = await conn.fetch(
            "SELECT id, dedup_key, outcome, mentor_id, inputs FROM scenario_engine.scenario_decision "
            "ORDER BY id"
        )
        cooldown_before = await conn.fetch(
            "SELECT * FROM scenario_engine.scenario_cooldown ORDER BY mentor_id"
        )
        assert all(r["context"] for r in notifications_before) and all(r["inputs"] for r in decisions_before)
        assert {r["outcome"] for r in decisions_before} == {"sent", "opted_out"}

        stats = await prune_personal_data(conn, as_of=prune_at, retention=365 * DAY, batch_size=1)
        # old_m's notification, old_m's + opted's decisions; old_m's sent push + 4 finished by hand
        assert (stats.notifications_redacted, stats.decisions_redacted, stats.pushes_deleted) == (1, 2, 5)

        notifications = await conn.fetch(
            "SELECT id, dedup_key, mentor_id, context FROM scenario_engine.scenario_notification ORDER BY id"
        )
        assert [(r["id"], r["dedup_key"]) for r in notifications] == [
            (r["id"], r["dedup_key"]) for r in notifications_before
        ]  # every dedup key stays
        for r in notifications:
            assert (r["context"] == {}) == (r["mentor_id"] == old_m), r
        decisions = await conn.fetch(
            "SELECT id, dedup_key, outcome, mentor_id, inputs FROM scenario_engine.scenario_decision "
            "ORDER BY id"
        )
        assert [(r["id"], r["dedup_key"], r["outcome"]) for r in decisions] == [
            (r["id"], r["dedup_key"], r["outcome"]) for r in decisions_before
        ]
        for r in decisions:
            assert (r["inputs"] == {}) == (r["mentor_id"] != young_m), r
        pushes = await conn.fetch(
            "SELECT mentor_id, status FROM scenario_engine.push_notification ORDER BY status"
        )
        assert [(r["mentor_id"], r["status"]) for r in pushes] == [
            (old_m, "pending"), (old_m, "sending"), (young_m, "sent"),
        ]  # fmt: skip
        assert (
            await conn.fetch("SELECT * FROM scenario_engine.scenario_cooldown ORDER BY mentor_id")
            == cooldown_before
        )
        # nothing left of the old mentor's name in the engine, outside the pending pushes
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM scenario_engine.push_notification "
                "WHERE status NOT IN ('pending', 'sending') "
                "AND (title || body || data::text) LIKE '%Old Owen%'"
            )
            == 0
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM scenario_engine.scenario_notification "
                "WHERE context::text LIKE '%Old Owen%'"
            )
            == 0
        )

        # Idempotent: a second pass finds nothing.
        again = await prune_personal_data(conn, as_of=prune_at, retention=365 * DAY, batch_size=1)
        assert again.total == 0

        # Dedup intact: the same sweep again, and one within the cooldown, send nothing new.
        for at in (AS_OF, AS_OF + 2 * DAY):
            result = await engine.run_scheduled_evaluation(at)
            assert result.sent == 0, result.per_rule
        assert await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_notification") == len(
            notifications_before
        )
        assert await conn.fetchval("SELECT count(*) FROM scenario_engine.push_notification") == 3
    finally:
        await conn.close()


async def test_the_daemon_prunes_personal_data_past_retention(db_url: str, daemons: Any) -> None:
    conn = await connect(db_url)
    try:
        mentor = await add_mentor(conn, joined_at=AS_OF - 100 * DAY, name="Aged Ada", status="paused")
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, "
            "outcome, reason, inputs, as_of, created_at) VALUES ($1, 'inactivity', 'r', 'k-old', 'cooldown', "
            "'x', '{\"display_name\": \"Aged Ada\"}', $2, now() - interval '3 days')",
            mentor,
            AS_OF,
        )
        d = daemons("prune", personal_data_retention_days=2, personal_data_prune_interval_seconds=1)
        await d.wait_ready()
        for _ in range(200):
            inputs = await conn.fetchval(
                "SELECT inputs FROM scenario_engine.scenario_decision WHERE dedup_key = 'k-old'"
            )
            if inputs == {}:
                break
            await asyncio.sleep(0.1)
        assert inputs == {}
        assert "Aged Ada" not in d.logs()
    finally:
        await conn.close()
