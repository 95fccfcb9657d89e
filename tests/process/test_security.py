"""Security on a shared, hosted Postgres (issue 10), tried the way an attacker or a DBA would:
Supabase-like client roles that exist before `migrate`, a platform whose tables belong to
another role, the daemon running as the documented runtime role, 1 MB values everywhere."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import migrate
from scenario_engine.db.units import dba_chunks
from tests.db.test_schema_upgrade import install_legacy
from tests.support import pg
from tests.support.catalog import ENGINE_TABLES, PLATFORM_TABLES
from tests.support.daemon import DaemonProcess
from tests.support.gateway import Gateway
from tests.support.roles import SUPABASE_DEFAULTS, Roles, create_role, drop_roles, unique_roles, url_as

ENGINE_TABLES_SQL = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'scenario_engine' AND c.relkind = 'r' ORDER BY 1"
)
MEGABYTE_SQL = (
    "SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 32768)"  # 1 MiB, barely compressible
)


@pytest.fixture
async def roles(pg_server: pg.TestServer) -> AsyncIterator[Roles]:
    """Cluster-wide roles named for this test. Tests list this fixture before their database
    fixture, so the database (with every grant and policy naming the roles) is dropped first."""
    r = unique_roles()
    yield r
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await drop_roles(
            admin, [r.name(x) for x in ("anon", "authenticated", "platform", "engine", "runtime_login")]
        )
    finally:
        await admin.close()


async def supabase_client_roles(admin_db: asyncpg.Connection[Any], roles: Roles) -> None:
    """anon and authenticated as Supabase creates them: USAGE on public and ALL on every table,
    sequence and function created there later — set up before the engine is installed."""
    for role in ("anon", "authenticated"):
        await create_role(admin_db, roles.name(role), "NOLOGIN")
    await admin_db.execute(
        SUPABASE_DEFAULTS.format(
            anon=f'"{roles.name("anon")}"', authenticated=f'"{roles.name("authenticated")}"'
        )
    )


async def denied(
    conn: asyncpg.Connection[Any], role: str, statement: str, match: str = "permission denied"
) -> None:
    async with conn.transaction():
        await conn.execute(f'SET LOCAL ROLE "{role}"')
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=match):
            await conn.execute(statement)


async def assert_client_sees_nothing(conn: asyncpg.Connection[Any], role: str) -> None:
    """Every engine table: no read, no write, no delete; no push enqueued, no switch flipped."""
    tables = [r["relname"] for r in await conn.fetch(ENGINE_TABLES_SQL)]
    assert "push_notification" in tables and "scenario_event" in tables
    for table in tables:
        column = await first_column(conn, table)
        await denied(conn, role, f"SELECT count(*) FROM scenario_engine.{table}")
        await denied(conn, role, f"DELETE FROM scenario_engine.{table}")
        await denied(conn, role, f"UPDATE scenario_engine.{table} SET {column} = {column}")
    await denied(
        conn,
        role,
        "INSERT INTO scenario_engine.push_notification "
        "(mentor_id, scenario_type, title, body, idempotency_key) "
        "VALUES (gen_random_uuid(), 'inactivity', 'Pwned by anon', 'x', 'evil')",
    )
    await denied(conn, role, "UPDATE scenario_engine.scenario_engine_setting SET value = 'poll'")
    await denied(conn, role, "SELECT scenario_engine.scenario_capture_event_v1()")


async def first_column(conn: asyncpg.Connection[Any], table: str) -> str:
    name: str = await conn.fetchval(
        "SELECT attname FROM pg_attribute "
        "WHERE attrelid = ('scenario_engine.' || $1)::regclass AND attnum = 1",
        table,
    )
    return name


async def seed_engine_rows(conn: asyncpg.Connection[Any]) -> uuid.UUID:
    mentor: uuid.UUID = await conn.fetchval(
        "INSERT INTO public.peer_mentor (organization_id, display_name, joined_at) "
        "VALUES (gen_random_uuid(), 'Secret Sam', now() - interval '90 days') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO public.device_token (mentor_id, token) VALUES ($1, 'device-token-secret')", mentor
    )
    await conn.execute(
        "INSERT INTO scenario_engine.scenario_decision "
        "(mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, inputs, as_of) "
        "VALUES ($1, 'inactivity', 'r', 'k', 'sent', 'x', '{\"name\": \"Secret Sam\"}', now())",
        mentor,
    )
    return mentor


@pytest.mark.parametrize("install", ["fresh", "upgrade"])
async def test_client_roles_created_before_migrate_get_nothing(
    install: str, roles: Roles, empty_db_url: str
) -> None:
    conn = await connect(empty_db_url)
    try:
        await supabase_client_roles(conn, roles)
        if install == "upgrade":
            await install_legacy(conn)  # everything in public, with the client roles' ALL grants
            legacy_grants = await conn.fetchval(
                "SELECT has_table_privilege($1, 'public.scenario_decision', 'SELECT')", roles.name("anon")
            )
            assert legacy_grants  # the finding: before the fix a client could read decisions
        report = await migrate(conn)
        assert not report.needs_dba
        await seed_engine_rows(conn)
        for role in ("anon", "authenticated"):
            await assert_client_sees_nothing(conn, roles.name(role))

        # Even a mistaken grant exposes nothing: row-level security, no policy for client roles.
        anon = roles.name("anon")
        await conn.execute(f'GRANT USAGE ON SCHEMA scenario_engine TO "{anon}"')
        await conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA scenario_engine TO "{anon}"')
        async with conn.transaction():
            await conn.execute(f'SET LOCAL ROLE "{anon}"')
            assert await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_decision") == 0
            assert await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_engine_setting") == 0
        await denied(
            conn,
            anon,
            "INSERT INTO scenario_engine.push_notification "
            "(mentor_id, scenario_type, title, body, idempotency_key) "
            "VALUES (gen_random_uuid(), 'inactivity', 'Pwned by anon', 'x', 'evil')",
            match="row-level security",
        )
        # ... and the next migrate takes the mistaken grant back.
        await migrate(conn)
        assert not await conn.fetchval("SELECT has_schema_privilege($1, 'scenario_engine', 'USAGE')", anon)
        assert not await conn.fetchval(
            "SELECT has_table_privilege($1, 'scenario_engine.scenario_decision', 'SELECT')", anon
        )

        if install == "fresh":
            # Reference platform tables the engine created: readable by grant, but row-level security
            # shows a client nothing (device tokens, names).
            async with conn.transaction():
                await conn.execute(f'SET LOCAL ROLE "{anon}"')
                assert await conn.fetchval("SELECT count(*) FROM public.device_token") == 0
                assert await conn.fetchval("SELECT count(*) FROM public.peer_mentor") == 0
    finally:
        await conn.close()


async def test_a_push_written_by_a_client_is_never_delivered(db_url: str, daemons: Any) -> None:
    """A platform-side push_notification table (or any row a client can write) is not the outbox."""
    conn = await connect(db_url)
    gateway = await Gateway().start()
    try:
        await conn.execute(
            "CREATE TABLE public.push_notification (id bigint GENERATED ALWAYS AS IDENTITY, mentor_id uuid, "
            "scenario_type text, title text, body text, data jsonb DEFAULT '{}', idempotency_key text, "
            "status text DEFAULT 'pending', attempts int DEFAULT 0, "
            "next_attempt_at timestamptz DEFAULT now(), "
            "created_at timestamptz DEFAULT now())"
        )
        mentor = await seed_engine_rows(conn)
        await conn.execute(
            "INSERT INTO public.push_notification (mentor_id, scenario_type, title, body, idempotency_key) "
            "VALUES ($1, 'inactivity', 'Pwned by anon', 'x', 'evil')",
            mentor,
        )
        d = daemons(
            "push", push_provider="webhook", push_webhook_url=gateway.url, dispatch_poll_interval_seconds=0.2
        )
        await d.wait_ready()
        # the engine's own notification for this 90-days-inactive mentor is delivered ...
        for _ in range(200):
            if gateway.delivered():
                break
            await asyncio.sleep(0.05)
        titles = [r.json["title"] for r in gateway.delivered()]
        assert titles and "Pwned by anon" not in titles
        await asyncio.sleep(1.0)
        assert "Pwned by anon" not in [r.json["title"] for r in gateway.delivered()]
    finally:
        await gateway.stop()
        await conn.close()


async def platform_owned_by_another_role(conn: asyncpg.Connection[Any], roles: Roles) -> None:
    """A real platform: its tables exist before the engine and belong to the platform's role."""
    platform = roles.name("platform")
    await create_role(conn, platform)
    await conn.execute("SET search_path = public")
    units_text = (await reference_sql()).split("-- unit: peer_mentor", 1)[1]
    await conn.execute(reference_function_sql())
    await conn.execute("-- unit: peer_mentor" + units_text)
    for table in PLATFORM_TABLES:
        await conn.execute(f"ALTER TABLE public.{table} DISABLE ROW LEVEL SECURITY")  # the platform's choice
        await conn.execute(f'ALTER TABLE public.{table} OWNER TO "{platform}"')
    await conn.execute("RESET search_path")


async def reference_sql() -> str:
    from scenario_engine.db.migrations import sql_root

    return (sql_root() / "platform" / "reference.sql").read_text()


def reference_function_sql() -> str:
    from scenario_engine.db.migrations import sql_root
    from scenario_engine.db.units import parse_units

    units = parse_units((sql_root() / "platform" / "reference.sql").read_text(), "reference.sql")
    return next(u.sql for u in units if u.name == "scenario_is_valid_timezone")


async def test_foreign_owned_platform_migrate_hands_the_rest_to_a_dba_and_runs_as_runtime_role(
    roles: Roles, empty_db_url: str, tmp_path: Any
) -> None:
    superuser = await connect(empty_db_url)
    try:
        await platform_owned_by_another_role(superuser, roles)
        engine_owner, login = roles.name("engine"), roles.name("runtime_login")
        await create_role(superuser, engine_owner, "LOGIN CREATEROLE")
        await create_role(superuser, login)
        db = empty_db_url.rsplit("/", 1)[1]
        await superuser.execute(f'GRANT CREATE ON DATABASE "{db}" TO "{engine_owner}"')

        # 1. migrate as the engine's owner: never stops half-way, prints what needs a DBA
        owner_conn = await connect(url_as(empty_db_url, engine_owner))
        try:
            report = await migrate(owner_conn, grant_runtime=[login])
        finally:
            await owner_conn.close()
        assert report.needs_dba
        deferred = {unit.name for unit, _ in report.units.for_dba}
        assert {
            "activity_scenario_event_v1",
            "peer_mentor_scenario_event_v1",
            "runtime_platform_read",
        } <= deferred
        assert await superuser.fetchval("SELECT to_regclass('scenario_engine.scenario_event')") is not None

        # 2. the DBA runs the printed script; the next migrate has nothing left for a DBA
        for chunk in dba_chunks(report.units):
            await superuser.execute(chunk)
        owner_conn = await connect(url_as(empty_db_url, engine_owner))
        try:
            again = await migrate(owner_conn, grant_runtime=[login])
        finally:
            await owner_conn.close()
        assert not again.needs_dba, [u.name for u, _ in again.units.for_dba]

        # 3. the platform's role, with no grant on the engine's schema, writes every platform table,
        #    including 1 MB text; the engine still sees the events.
        platform = await connect(url_as(empty_db_url, roles.name("platform")))
        try:
            assert not await platform.fetchval("SELECT has_schema_privilege('scenario_engine', 'USAGE')")
            mb = await platform.fetchval(MEGABYTE_SQL)
            mentor = await platform.fetchval(
                "INSERT INTO public.peer_mentor (organization_id, display_name, joined_at) "
                "VALUES (gen_random_uuid(), $1, now() - interval '60 days') RETURNING id",
                mb,
            )
            await platform.execute(
                "INSERT INTO public.activity (mentor_id, kind, occurred_at, note) "
                "VALUES ($1, 'session', now() - interval '40 days', $2)",
                mentor,
                mb,
            )
            await platform.execute(
                "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
                "VALUES ($1, $2, now() - interval '300 days', now() + interval '20 days')",
                mentor,
                mb,
            )
            await platform.execute(
                "INSERT INTO public.achievement (mentor_id, milestone, threshold, period, awarded_by) "
                "VALUES ($1, $2, 1e1000, $2, $2)",
                mentor,
                mb,
            )
            await platform.execute(
                "INSERT INTO public.notification_preference (mentor_id, scenario_type, opted_out) "
                "VALUES ($1, 'milestone', false)",
                mentor,
            )
            await platform.execute(
                "INSERT INTO public.device_token (mentor_id, token, last_error) VALUES ($1, $2, $2)",
                mentor,
                mb,
            )
            await platform.execute("UPDATE public.peer_mentor SET status = 'paused' WHERE id = $1", mentor)
            await platform.execute("UPDATE public.peer_mentor SET status = 'active' WHERE id = $1", mentor)
        finally:
            await platform.close()
        events = await superuser.fetch(
            "SELECT table_name, operation FROM scenario_engine.scenario_event "
            "WHERE mentor_id = $1 ORDER BY id",
            mentor,
        )
        assert [e["table_name"] for e in events] == [
            "activity",
            "certification",
            "achievement",
            "notification_preference",
            "peer_mentor",
            "peer_mentor",
        ]

        # 4. the daemon runs as the runtime login: events drained, a notification enqueued
        #    (the mentor is 40 days inactive), no permission error anywhere.
        d = DaemonProcess(url_as(empty_db_url, login), tmp_path, "runtime", poll_interval_seconds=0.2).start()
        try:
            await d.wait_ready()
            for _ in range(300):
                pending = await superuser.fetchval(
                    "SELECT count(*) FROM scenario_engine.scenario_event WHERE processed_at IS NULL"
                )
                sent = await superuser.fetchval(
                    "SELECT count(*) FROM scenario_engine.scenario_notification WHERE mentor_id = $1", mentor
                )
                if pending == 0 and sent >= 2:
                    break
                await asyncio.sleep(0.1)
            kinds = {
                r["scenario_type"]
                for r in await superuser.fetch(
                    "SELECT scenario_type FROM scenario_engine.scenario_notification WHERE mentor_id = $1",
                    mentor,
                )
            }
            assert {"inactivity", "certification_expiry"} <= kinds
            assert pending == 0
            logs = d.logs()
            assert "permission denied" not in logs and "InsufficientPrivilege" not in logs
            status = await d.status()
            assert status["database"] == "up"
        finally:
            d.kill()
    finally:
        await superuser.close()


async def test_a_megabyte_in_any_platform_text_column_inserts(db_url: str) -> None:
    """No engine index or constraint on a platform column makes a platform write fail — even on
    a platform that has none of the reference schema's CHECK constraints."""
    conn = await connect(db_url)
    try:
        # the reference schema's own CHECKs (the platform's contract) come off: what is left is the engine's
        checks = await conn.fetch(
            "SELECT conrelid::regclass AS t, conname FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid = ANY(ARRAY['public.peer_mentor', 'public.activity', 'public.certification', "
            "'public.notification_preference', 'public.device_token']::regclass[])"
        )
        for c in checks:
            await conn.execute(f"ALTER TABLE {c['t']} DROP CONSTRAINT {c['conname']}")
        # ... and so does the preference table's primary key: its scope column is part of the
        # platform's own key, bounded by the CHECK above in the reference schema.
        await conn.execute(
            "ALTER TABLE public.notification_preference DROP CONSTRAINT notification_preference_pkey"
        )
        # What the engine itself puts on platform tables never holds raw text: text is hashed.
        raw_text = await conn.fetch(
            "SELECT i.indexrelid::regclass AS idx FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE c.relnamespace = 'public'::regnamespace AND NOT i.indisprimary "
            "AND a.atttypid = 'text'::regtype"
        )
        assert raw_text == []
        mb = await conn.fetchval(MEGABYTE_SQL)
        text_columns = await conn.fetch(
            "SELECT c.relname AS t, a.attname AS col "
            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 "
            "AND NOT a.attisdropped AND a.atttypid = 'text'::regtype ORDER BY 1, 2"
        )
        assert len(text_columns) >= 13
        mentor = await conn.fetchval(
            "INSERT INTO public.peer_mentor (organization_id, display_name, status, timezone) "
            "VALUES (gen_random_uuid(), $1, $1, $1) RETURNING id",
            mb,
        )
        at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        await conn.execute(
            "INSERT INTO public.activity (mentor_id, kind, occurred_at, note) VALUES ($1, $2, $3, $2)",
            mentor,
            mb,
            at,
        )
        await conn.execute(
            "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
            "VALUES ($1, $2, $3::timestamptz, $3::timestamptz + interval '1 year')",
            mentor,
            mb,
            at,
        )
        await conn.execute(
            "INSERT INTO public.achievement (mentor_id, milestone, threshold, period, awarded_by) "
            "VALUES ($1, $2, 1, $2, $2)",
            mentor,
            mb,
        )
        await conn.execute(
            "INSERT INTO public.notification_preference (mentor_id, scenario_type) VALUES ($1, $2)",
            mentor,
            mb,
        )
        await conn.execute(
            "INSERT INTO public.device_token (mentor_id, token, platform, last_error) "
            "VALUES ($1, $2, $2, $2)",
            mentor,
            mb,
        )
        await conn.execute("INSERT INTO public.organization (id, name) VALUES (gen_random_uuid(), $1)", mb)
        written = {(r["t"], r["col"]) for r in text_columns}
        covered = {
            ("peer_mentor", "display_name"), ("peer_mentor", "status"), ("peer_mentor", "timezone"),
            ("activity", "kind"), ("activity", "note"), ("certification", "type"),
            ("achievement", "milestone"), ("achievement", "period"), ("achievement", "awarded_by"),
            ("notification_preference", "scenario_type"), ("device_token", "token"),
            ("device_token", "platform"), ("device_token", "last_error"), ("organization", "name"),
        }  # fmt: skip
        assert written - covered == set(), "a platform text column this test does not write"
        # the same milestone again is refused by the engine's hashed unique index, as it should be
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO public.achievement (mentor_id, milestone, threshold, period) "
                "VALUES ($1, $2, 1.000, $2)",
                mentor,
                mb,
            )
    finally:
        await conn.close()


async def test_every_engine_table_has_runtime_grants_and_only_the_runtime_policy(db_url: str) -> None:
    """A table added by a later migration is covered by sql/roles.sql (or `run` fails as the
    runtime role), has row-level security on, and no policy but the runtime group's."""
    from scenario_engine.db.migrations import sql_root

    roles_sql = (sql_root() / "roles.sql").read_text()
    conn = await connect(db_url)
    try:
        for table in [r["relname"] for r in await conn.fetch(ENGINE_TABLES_SQL)]:
            assert table in ENGINE_TABLES, f"{table}: add it to tests/catalog.py"
            assert f"scenario_engine.{table}" in roles_sql, f"{table}: no GRANT in sql/roles.sql"
            assert f"('{table}', " in roles_sql, f"{table}: not in the present-check of sql/roles.sql"
            row = await conn.fetchrow(
                "SELECT c.relrowsecurity, "
                "array(SELECT polname FROM pg_policy p WHERE p.polrelid = c.oid) AS policies "
                "FROM pg_class c WHERE c.oid = ('scenario_engine.' || $1)::regclass",
                table,
            )
            assert row is not None, table
            assert row["relrowsecurity"], table
            assert row["policies"] == ["scenario_engine_runtime"], table
    finally:
        await conn.close()


CAPTURE_FUNCTIONS = ("scenario_capture_event_v1", "scenario_capture_mentor_event_v1")
# The attacker's shadows: run with the rights of whoever calls them, they raise once they run
# as anyone else — i.e. inside a SECURITY DEFINER function that resolved the attacker's name.
HOSTILE_SQL = """
CREATE FUNCTION evil.boom() RETURNS pg_catalog.bool LANGUAGE plpgsql AS $$
BEGIN
    IF current_user OPERATOR(pg_catalog.<>) session_user THEN
        RAISE EXCEPTION 'hijacked: attacker code ran as %', current_user;
    END IF;
    RETURN true;
END $$;
CREATE FUNCTION evil.eq_text(a pg_catalog.text, b pg_catalog.text) RETURNS pg_catalog.bool
LANGUAGE sql AS $$ SELECT evil.boom() AND a OPERATOR(pg_catalog.=) b $$;
CREATE FUNCTION evil.eq_name(a pg_catalog.name, b pg_catalog.name) RETURNS pg_catalog.bool
LANGUAGE sql AS $$ SELECT evil.boom() AND a OPERATOR(pg_catalog.=) b $$;
CREATE FUNCTION evil.eq_uuid(a pg_catalog.uuid, b pg_catalog.uuid) RETURNS pg_catalog.bool
LANGUAGE sql AS $$ SELECT evil.boom() AND a OPERATOR(pg_catalog.=) b $$;
CREATE FUNCTION evil.lt_float(a pg_catalog.float8, b pg_catalog.numeric) RETURNS pg_catalog.bool
LANGUAGE sql AS $$ SELECT evil.boom() AND a OPERATOR(pg_catalog.<) b $$;
CREATE OPERATOR evil.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = evil.eq_text);
CREATE OPERATOR evil.= (LEFTARG = pg_catalog.name, RIGHTARG = pg_catalog.name, FUNCTION = evil.eq_name);
CREATE OPERATOR evil.= (LEFTARG = pg_catalog.uuid, RIGHTARG = pg_catalog.uuid, FUNCTION = evil.eq_uuid);
CREATE OPERATOR evil.< (LEFTARG = pg_catalog.float8, RIGHTARG = pg_catalog.numeric, FUNCTION = evil.lt_float);
CREATE FUNCTION evil.left(s pg_catalog.text, n pg_catalog.int4) RETURNS pg_catalog.text
LANGUAGE sql AS $$ SELECT CASE WHEN evil.boom() THEN pg_catalog.left(s, n) END $$;
CREATE FUNCTION evil.current_setting(s pg_catalog.text, m pg_catalog.bool) RETURNS pg_catalog.text
LANGUAGE sql AS $$ SELECT CASE WHEN evil.boom() THEN pg_catalog.current_setting(s, m) END $$;
CREATE FUNCTION evil.pg_notification_queue_usage() RETURNS pg_catalog.float8
LANGUAGE sql AS $$ SELECT CASE WHEN evil.boom() THEN 0::pg_catalog.float8 END $$;
CREATE FUNCTION pg_temp.left(s pg_catalog.text, n pg_catalog.int4) RETURNS pg_catalog.text
LANGUAGE sql AS $$ SELECT CASE WHEN evil.boom() THEN pg_catalog.left(s, n) END $$;
CREATE DOMAIN evil.text AS pg_catalog.text CHECK (evil.boom());
CREATE DOMAIN evil.uuid AS pg_catalog.uuid CHECK (evil.boom());
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (evil.boom());
"""


async def test_capture_functions_have_no_set_clause_and_are_security_definer(db_url: str) -> None:
    """The row capture runs on every platform write: no SET clause (a GUC save and restore per
    row, sql/0031), still SECURITY DEFINER so that the platform needs no right on the event table."""
    conn = await connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p "
            "WHERE p.pronamespace = 'scenario_engine'::regnamespace AND p.proname = ANY($1::text[])",
            list(CAPTURE_FUNCTIONS),
        )
        assert {r["proname"]: (r["prosecdef"], r["proconfig"]) for r in rows} == dict.fromkeys(
            CAPTURE_FUNCTIONS, (True, None)
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("notify_mode", ["poll", "notify"])
@pytest.mark.parametrize("search_path", ["evil, pg_catalog", "pg_temp, evil, pg_catalog"])
async def test_a_hostile_search_path_cannot_hijack_the_event_capture(
    roles: Roles, pg_server: pg.TestServer, db_url: str, notify_mode: str, search_path: str
) -> None:
    """Without a SET clause the capture functions see the caller's search_path; a platform role
    that puts its own schema before pg_catalog (or shadows names in pg_temp) with an `=` for
    text, name and uuid, a `<`, left(), current_setting(), pg_notification_queue_usage() and
    `text`/`uuid` domains runs none of them with the engine's rights: every name in the
    functions is qualified (sql/0031). Their events are written as from anyone else."""
    attacker = roles.name("platform")
    admin = await connect(db_url)
    try:
        await create_role(admin, attacker, "LOGIN")
        await admin.execute(f'CREATE SCHEMA evil AUTHORIZATION "{attacker}"')
        await admin.execute(f'GRANT USAGE ON SCHEMA public TO "{attacker}"')
        await admin.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON public.activity, public.peer_mentor TO "{attacker}"'
        )
        for table in ("activity", "peer_mentor"):  # the platform's own row policies, as wide as can be
            await admin.execute(
                f'CREATE POLICY platform_all ON public.{table} TO "{attacker}" USING (true) WITH CHECK (true)'
            )
        await admin.execute(
            "UPDATE scenario_engine.scenario_engine_setting SET value = $1 WHERE key = 'notify_mode'",
            notify_mode,
        )
        hostile = await asyncpg.connect(url_as(db_url, attacker))
        try:
            await hostile.execute("SET search_path = evil, pg_catalog")
            await hostile.execute(HOSTILE_SQL)
            await hostile.execute(f"SET search_path = {search_path}")
            # the first trigger calls of this session: the functions are compiled under this path
            mentor, other = [  # (a new mentor is no event: the mentor trigger is on UPDATE)
                await hostile.fetchval(
                    "INSERT INTO public.peer_mentor (organization_id, display_name) "
                    "VALUES (pg_catalog.gen_random_uuid(), 'm') RETURNING id"
                )
                for _ in range(2)
            ]
            activity = await hostile.fetchval(
                "INSERT INTO public.activity (mentor_id, kind, occurred_at) "
                "VALUES ($1, 'session', pg_catalog.now()) RETURNING id",
                mentor,
            )
            await hostile.execute("UPDATE public.activity SET mentor_id = $1 WHERE id = $2", other, activity)
            await hostile.execute("DELETE FROM public.activity WHERE id = $1", activity)
            await hostile.execute("UPDATE public.peer_mentor SET status = 'paused' WHERE id = $1", mentor)
        finally:
            await hostile.close()
        events = await admin.fetch(
            "SELECT table_name, operation, mentor_id, old_mentor_id, row_id "
            "FROM scenario_engine.scenario_event ORDER BY id"
        )
        assert [tuple(e) for e in events] == [
            ("activity", "INSERT", mentor, None, str(activity)),
            ("activity", "UPDATE", other, mentor, str(activity)),
            ("activity", "DELETE", other, None, str(activity)),
            ("peer_mentor", "UPDATE", mentor, None, str(mentor)),
        ]
    finally:
        await admin.close()
