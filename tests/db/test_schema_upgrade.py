"""The engine's own schema: a fresh install and an upgrade of a 0001–0007 installation end in
the same catalogue, and the upgrade keeps every row and keeps capturing events."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import LEGACY_LAST_VERSION, discover, migrate
from tests.support.catalog import ENGINE_TABLES
from tests.support.factories import add_activity, add_mentor

# The bookkeeping table as 0001–0007 era engines created it (in public).
OLD_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS public.scenario_schema_migration (
    version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())
"""


async def install_legacy(conn: asyncpg.Connection[Any]) -> None:
    """What an installation migrated by the 0001–0007 engine looks like (everything in public)."""
    await conn.execute("SET search_path = public")
    await conn.execute(OLD_BOOKKEEPING)
    for m in discover():
        if m.version > LEGACY_LAST_VERSION:
            continue
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO public.scenario_schema_migration (version, name, checksum) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                m.checksum,
            )
    await conn.execute("RESET search_path")


CATALOGUE = """
SELECT 'column' AS kind, c.relname || '.' || a.attname AS name,
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END AS def
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = $1::text AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = $1::text::regnamespace
UNION ALL
SELECT 'index', c.relname, pg_get_indexdef(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1::text AND c.relkind = 'i'
UNION ALL
SELECT 'function', p.proname, pg_get_functiondef(p.oid)
FROM pg_proc p WHERE p.pronamespace = $1::text::regnamespace
UNION ALL
SELECT 'trigger', t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = $1::text::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT 'table', c.relname, 'rls=' || c.relrowsecurity || ' options=' || \
coalesce(array_to_string(c.reloptions, ','), '')
FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'r' AND $1::text <> 'public'
UNION ALL
SELECT 'policy', polrelid::regclass::text || '.' || polname, pg_get_expr(polqual, polrelid)
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE c.relnamespace = $1::text::regnamespace AND $1::text <> 'public'
UNION ALL
SELECT 'sequence', c.relname, 'seq' FROM pg_class c \
WHERE c.relnamespace = $1::text::regnamespace AND c.relkind = 'S'
ORDER BY 1, 2, 3
"""


async def catalogue(conn: asyncpg.Connection[Any]) -> dict[str, list[tuple[str, str, str]]]:
    """The engine schema whole; of public, what the engine puts there (columns, constraints,
    indexes, triggers). Row-level security on public tables differs on purpose: the engine
    enables it only on reference tables it creates itself, and cannot tell which ones an older
    engine created."""
    await conn.execute("SET search_path = pg_catalog")  # regclass::text then always qualifies
    try:
        return {
            schema: [tuple(r) for r in await conn.fetch(CATALOGUE, schema)]
            for schema in ("scenario_engine", "public")
        }
    finally:
        await conn.execute("RESET search_path")


async def test_fresh_install_keeps_nothing_of_the_engine_in_public(empty_db_url: str) -> None:
    conn = await connect(empty_db_url)
    try:
        report = await migrate(conn)
        assert not report.needs_dba
        assert {m.version for m in report.skipped_legacy} == set(range(1, LEGACY_LAST_VERSION + 1))
        public = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        engine = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'scenario_engine'")
        }
        assert public == {
            "peer_mentor",
            "activity",
            "certification",
            "achievement",
            "notification_preference",
            "device_token",
            "organization",  # optional, created only with a fresh reference schema
        }
        assert engine >= set(ENGINE_TABLES)
        functions = await conn.fetch(
            "SELECT proname FROM pg_proc "
            "WHERE pronamespace = 'public'::regnamespace AND proname LIKE 'scenario%'"
        )
        assert [f["proname"] for f in functions] == ["scenario_is_valid_timezone"]
    finally:
        await conn.close()


async def test_upgrade_in_place_keeps_rows_and_ends_like_a_fresh_install(
    empty_db_url: str, pg_server: Any
) -> None:
    legacy = await connect(empty_db_url)
    fresh_name = "scenario_fresh_" + empty_db_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_server.admin_dsn)
    await admin.execute(f'CREATE DATABASE "{fresh_name}" TEMPLATE template0')
    fresh = await connect(pg_server.url(fresh_name))
    try:
        await install_legacy(legacy)
        await legacy.execute("SET search_path = public")
        mentor = await add_mentor(legacy, name="Legacy Lena")
        activity_id = await add_activity(legacy, mentor, dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
        await legacy.execute(
            "INSERT INTO scenario_notification "
            "(mentor_id, scenario_type, rule_name, subject, seq, dedup_key, as_of) "
            "VALUES ($1, 'inactivity', 'r', 's', 1, 'k1', now())",
            mentor,
        )
        await legacy.execute(
            "INSERT INTO push_notification (mentor_id, scenario_type, title, body, idempotency_key) "
            "VALUES ($1, 'inactivity', 't', 'b', 'k1')",
            mentor,
        )
        events_before = await legacy.fetchval("SELECT count(*) FROM scenario_event")
        await legacy.execute("RESET search_path")

        report = await migrate(legacy)
        assert not report.needs_dba, report.units.for_dba
        assert [m.version for m in report.applied] == [m.version for m in discover() if m.version > 7]

        # every row kept, in the engine's schema
        assert await legacy.fetchval("SELECT count(*) FROM scenario_engine.scenario_event") == events_before
        assert await legacy.fetchval("SELECT dedup_key FROM scenario_engine.scenario_notification") == "k1"
        assert await legacy.fetchval("SELECT idempotency_key FROM scenario_engine.push_notification") == "k1"
        assert await legacy.fetchval("SELECT to_regclass('public.scenario_event')") is None
        assert await legacy.fetchval("SELECT to_regclass('public.scenario_schema_migration')") is None
        # the existing triggers still capture platform writes
        await legacy.execute("UPDATE public.activity SET duration_minutes = 5 WHERE id = $1", activity_id)
        assert (
            await legacy.fetchval("SELECT count(*) FROM scenario_engine.scenario_event") == events_before + 1
        )

        await migrate(fresh)
        old, new = await catalogue(legacy), await catalogue(fresh)
        # The optional organisation-names table comes only with a fresh reference schema: an
        # installation whose platform tables exist keeps its organisations where it keeps them.
        assert await legacy.fetchval("SELECT to_regclass('public.organization')") is None
        new["public"] = [
            i for i in new["public"] if not i[1].removeprefix("public.").startswith("organization")
        ]
        for schema in old:
            assert (
                sorted(set(old[schema]) - set(new[schema]))
                == sorted(set(new[schema]) - set(old[schema]))
                == []
            )
    finally:
        await legacy.close()
        await fresh.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{fresh_name}" WITH (FORCE)')
        await admin.close()
