"""A realistic platform population, generated entirely in SQL (generate_series).

Shape (relative to the benchmark's ``as_of``):

* mentors: 4 % paused or inactive (status), time zones mixed (Oslo, UTC, London,
  New York, Tokyo), joined 1 month to 3 years ago;
* activity recency segments: 3 % never logged anything, 67 % active within the last
  20 days, 15 % lapsed 21–90 days ago, 15 % dormant 3–24 months;
* activities per mentor heavy-tailed (a few very active mentors, many occasional ones),
  scaled so that the total is ``mentors × activities_per_mentor``; spread uniformly over
  the mentor's last two years up to their last activity; 55 % sessions, 30 % contacts,
  10 % training, 5 % other;
* certifications: expiries spread uniformly over ±1 year around ``as_of``, 3 % revoked,
  5 % of the total are renewals of certifications expiring around ``as_of`` (they
  supersede the old one, which must then not fire);
* notification preferences: 2 % opted out of everything, 2 % of one scenario type,
  0.5 % an explicit opt-in row.

The event triggers are bypassed for the load (``session_replication_role = replica``, which
also skips the foreign-key triggers: the generator only writes consistent rows), secondary
indexes are dropped and rebuilt afterwards from their own definitions, and everything is
VACUUM ANALYZEd, as autovacuum would have done on a live database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.harness.cluster import Conn, LocalCluster, connect, database_exists, drop_database, migrate
from bench.harness.engine import benchmark_rules, ensure_rules_seen
from bench.harness.report import Timings, log

LOADED_TABLES = ("peer_mentor", "activity", "certification", "notification_preference")
# The populated database of the sweep benchmarks (kept with --data-dir for sweep_rewrites).
POP_DB = "bench_pop"
DEFAULT_AS_OF = dt.datetime(2025, 6, 16, 7, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Shape:
    mentors: int
    activities_per_mentor: float
    certifications: int
    as_of: dt.datetime
    seed: float = 0.42

    @property
    def activities(self) -> int:
        return round(self.mentors * self.activities_per_mentor)

    def literal(self) -> str:
        return f"'{self.as_of.isoformat()}'::timestamptz"


def _profile_sql(s: Shape) -> str:
    t = s.literal()
    return f"""
CREATE UNLOGGED TABLE bench_profile AS
WITH base AS (
    SELECT i AS idx, random() AS u_seg, random() AS u_status, random() AS u_tz, random() AS u_w,
           random() AS u_tenure, random() AS u_rec, random() AS u_rec2
    FROM generate_series(1, {s.mentors}) AS i
    OFFSET 0
), shaped AS (
    SELECT idx,
           CASE WHEN u_seg < 0.03 THEN 'never' WHEN u_seg < 0.70 THEN 'recent'
                WHEN u_seg < 0.85 THEN 'lapsed' ELSE 'dormant' END AS segment,
           CASE WHEN u_status < 0.03 THEN 'paused' WHEN u_status < 0.04 THEN 'inactive'
                ELSE 'active' END AS status,
           CASE WHEN u_tz < 0.55 THEN 'Europe/Oslo' WHEN u_tz < 0.75 THEN 'UTC'
                WHEN u_tz < 0.85 THEN 'Europe/London' WHEN u_tz < 0.95 THEN 'America/New_York'
                ELSE 'Asia/Tokyo' END AS timezone,
           30 + u_tenure * 1065 AS tenure_days,
           -- heavy-tailed weight (Pareto-like, capped): many occasional mentors, a few very active
           least(power(greatest(u_w, 1e-9), -0.7), 60) AS w,
           u_seg, u_rec, u_rec2
    FROM base
), timed AS (
    SELECT *,
           CASE segment WHEN 'recent' THEN u_rec * 20
                        WHEN 'lapsed' THEN 21 + u_rec * 69
                        WHEN 'dormant' THEN 90 + u_rec * 640
                        ELSE NULL END AS recency_raw
    FROM shaped
)
SELECT idx,
       md5('bench-mentor-' || idx)::uuid AS id,
       md5('bench-org-' || (idx % 1000))::uuid AS organization_id,
       status, timezone, segment,
       {t} - tenure_days * interval '1 day' AS joined_at,
       CASE WHEN segment = 'never' THEN NULL
            ELSE {t} - (CASE WHEN recency_raw < tenure_days THEN recency_raw
                             ELSE tenure_days * u_rec2 END) * interval '1 day' END AS last_active_at,
       greatest({t} - tenure_days * interval '1 day', {t} - interval '730 days') AS first_at,
       CASE WHEN segment = 'never' THEN 0
            ELSE 1 + floor(w * ({s.activities} - count(*) FILTER (WHERE segment <> 'never') OVER ())
                         / sum(w) FILTER (WHERE segment <> 'never') OVER () + random())::int END AS n_act
FROM timed
"""


def _mentors_sql() -> str:
    return """
INSERT INTO peer_mentor (id, organization_id, display_name, status, timezone, joined_at)
SELECT id, organization_id, 'Mentor ' || idx, status, timezone, joined_at FROM bench_profile ORDER BY idx
"""


def _activities_sql() -> str:
    return """
INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
SELECT mentor_id,
       kind,
       occurred_at,
       CASE kind WHEN 'session' THEN 30 + floor(ud * 7)::int * 15
                 WHEN 'contact' THEN 5 + floor(ud * 26)::int
                 WHEN 'training' THEN 60 + floor(ud * 181)::int
                 ELSE floor(ud * 61)::int END,
       CASE kind WHEN 'session' THEN 1 WHEN 'contact' THEN 1 + floor(ud * 5)::int ELSE 0 END
FROM (
    SELECT p.id AS mentor_id,
           CASE WHEN uk < 0.55 THEN 'session' WHEN uk < 0.85 THEN 'contact'
                WHEN uk < 0.95 THEN 'training' ELSE 'other' END AS kind,
           CASE WHEN j = 1 THEN p.last_active_at
                ELSE p.first_at + ut * (p.last_active_at - p.first_at) END AS occurred_at,
           ud
    FROM (
        SELECT p.*, j, random() AS uk, random() AS ut, random() AS ud
        FROM bench_profile p CROSS JOIN LATERAL generate_series(1, p.n_act) AS j
        WHERE p.n_act > 0
        OFFSET 0
    ) p
) a
"""


def _certifications_sql(s: Shape) -> tuple[str, str]:
    t = s.literal()
    renewals = round(s.certifications * 0.05)
    base = s.certifications - renewals
    base_sql = f"""
INSERT INTO certification (mentor_id, type, issued_at, expires_at, revoked_at)
SELECT mentor_id, type, expires_at - interval '2 years', expires_at,
       CASE WHEN ur < 0.03
            THEN (expires_at - interval '2 years')
                 + (ur / 0.03) * (least(expires_at, {t}) - (expires_at - interval '2 years')) END
FROM (
    SELECT md5('bench-mentor-' || (1 + floor(random() * {s.mentors}))::int)::uuid AS mentor_id,
           (ARRAY['first_aid', 'safeguarding', 'mentor_training', 'privacy'])
               [1 + floor(random() * 4)::int] AS type,
           {t} + (random() * 730 - 365) * interval '1 day' AS expires_at,
           random() AS ur
    FROM generate_series(1, {base})
    OFFSET 0
) c
"""
    renewal_sql = f"""
INSERT INTO certification (mentor_id, type, issued_at, expires_at)
SELECT mentor_id, type, issued_at, issued_at + interval '2 years'
FROM (
    SELECT mentor_id, type, {t} - random() * interval '20 days' AS issued_at
    FROM (
        SELECT mentor_id, type FROM certification
        WHERE revoked_at IS NULL
          AND expires_at > {t} - interval '60 days' AND expires_at <= {t} + interval '45 days'
        ORDER BY random()
        LIMIT {renewals}
    ) due
    OFFSET 0
) r
"""
    return base_sql, renewal_sql


def _preferences_sql(s: Shape) -> str:
    t = s.literal()
    return f"""
INSERT INTO notification_preference (mentor_id, scenario_type, opted_out, updated_at)
SELECT id,
       CASE WHEN u < 0.020 THEN 'all' WHEN u < 0.030 THEN 'inactivity'
            WHEN u < 0.035 THEN 'milestone' WHEN u < 0.040 THEN 'certification_expiry'
            ELSE 'all' END,
       u < 0.040,
       {t} - u * 5000 * interval '1 day'
FROM (SELECT id, random() AS u FROM bench_profile OFFSET 0) p
WHERE u < 0.045
"""


async def _secondary_indexes(conn: asyncpg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, definition) of the loaded tables' indexes that back no constraint."""
    rows = await conn.fetch(
        """
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1::text[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """,
        list(LOADED_TABLES),
    )
    return [(r["name"], r["def"]) for r in rows]


async def generate(conn: asyncpg.Connection[Any], shape: Shape, timings: Timings) -> dict[str, Any]:
    """Fill a freshly migrated database. Returns the row counts that resulted."""
    await conn.execute("SET session_replication_role = replica")  # no event or FK triggers
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SELECT setseed($1)", shape.seed)
    indexes = await _secondary_indexes(conn)
    with timings.step("gen: drop secondary indexes"):
        for name, _ in indexes:
            await conn.execute(f"DROP INDEX {name}")
    with timings.step("gen: mentor profiles"):
        await conn.execute("DROP TABLE IF EXISTS bench_profile")
        await conn.execute(_profile_sql(shape))
    with timings.step("gen: peer_mentor"):
        await conn.execute(_mentors_sql())
    with timings.step("gen: activity"):
        await conn.execute(_activities_sql())
    base_sql, renewal_sql = _certifications_sql(shape)
    with timings.step("gen: certification"):
        await conn.execute(base_sql)
        await conn.execute(renewal_sql)
    with timings.step("gen: notification_preference"):
        await conn.execute(_preferences_sql(shape))
    segments = {
        r["segment"]: r["n"]
        for r in await conn.fetch("SELECT segment, count(*) AS n FROM bench_profile GROUP BY 1")
    }
    await conn.execute("DROP TABLE bench_profile")
    with timings.step("gen: rebuild secondary indexes"):
        for _, definition in indexes:
            await conn.execute(definition)
    await conn.execute("RESET session_replication_role")
    with timings.step("gen: vacuum analyze"):
        await conn.execute("VACUUM (ANALYZE)")
        await ensure_all_visible(conn)
    return {"segments": segments, **(await counts(conn))}


async def ensure_all_visible(conn: Conn, tables: tuple[str, ...] = LOADED_TABLES) -> None:
    """A live database's tables are mostly all-visible (autovacuum); index-only scans depend
    on it. A VACUUM right after the load can leave pages unmarked while some other snapshot
    (an autovacuum ANALYZE) is still open, so check and vacuum again until they are."""
    for _ in range(5):
        lagging = [
            r["relname"]
            for r in await conn.fetch(
                "SELECT relname FROM pg_class WHERE relname = ANY($1::text[]) "
                "AND relpages > 0 AND relallvisible < 0.99 * relpages",
                list(tables),
            )
        ]
        if not lagging:
            return
        await asyncio.sleep(1.0)
        for table in lagging:
            await conn.execute(f"VACUUM {table}")


async def counts(conn: Conn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table in (*LOADED_TABLES, "achievement"):
        out[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")
    out["mentor_status"] = {
        r["status"]: r["n"]
        for r in await conn.fetch("SELECT status, count(*) AS n FROM peer_mentor GROUP BY 1 ORDER BY 1")
    }
    out["database_size"] = await conn.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    out["all_visible_pages"] = {
        r["relname"]: f"{r['relallvisible']}/{r['relpages']}"
        for r in await conn.fetch(
            "SELECT relname, relallvisible, relpages FROM pg_class "
            "WHERE relname = ANY($1::text[]) ORDER BY 1",
            [*LOADED_TABLES, "achievement"],
        )
    }
    return out


# --- the sweep benchmarks' populated database --------------------------------------------------


def _meta(shape: Shape, ledger_age_days: float) -> dict[str, Any]:
    """What made the populated database: a --reuse run needs the same."""
    return {
        "mentors": shape.mentors,
        "activities_per_mentor": shape.activities_per_mentor,
        "certifications": shape.certifications,
        "as_of": shape.as_of.isoformat(),
        "seed": shape.seed,
        "ledger_age_days": ledger_age_days,
    }


async def _reusable(cluster: LocalCluster, meta: dict[str, Any]) -> dict[str, Any] | None:
    """Counts of a populated database of the same shape left by an earlier run, if any."""
    conn = await connect(cluster.url(POP_DB))
    try:
        stored = await conn.fetchval("SELECT to_regclass('bench_meta') IS NOT NULL")
        if stored and await conn.fetchval("SELECT meta FROM bench_meta") == meta:
            log(f"reusing populated database {POP_DB}")
            return {"reused": True, **(await counts(conn))}
    finally:
        await conn.close()
    return None


async def _rules_seen(conn: asyncpg.Connection[Any], seen_at: dt.datetime) -> None:
    """The default rules first seen at ``seen_at``, with the engine's own milestone baseline
    then, as on a live system (the first sweep sees new crossings, not a backfill)."""
    await ensure_rules_seen(conn, benchmark_rules(), seen_at)
    await conn.execute("VACUUM (ANALYZE) achievement")
    await conn.execute("VACUUM (ANALYZE) scenario_engine.scenario_rule_state")
    await ensure_all_visible(conn, (*LOADED_TABLES, "achievement"))


async def populate(
    admin: asyncpg.Connection[Any],
    cluster: LocalCluster,
    shape: Shape,
    ledger_age_days: float,
    timings: Timings,
    *,
    reuse: bool = False,
) -> dict[str, Any]:
    """``POP_DB``: migrated, populated, rules registered ``ledger_age_days`` before ``as_of``,
    extensions the benchmarks use; regenerated unless ``reuse`` finds one of the same shape."""
    meta = _meta(shape, ledger_age_days)
    if reuse and await database_exists(admin, POP_DB):
        reused = await _reusable(cluster, meta)
        if reused is not None:
            return reused
    await drop_database(admin, POP_DB)
    await admin.execute(f'CREATE DATABASE "{POP_DB}"')
    conn = await connect(cluster.url(POP_DB), application_name="bench generator")
    try:
        with timings.step("gen: migrate"):
            await migrate(conn)
        data = await generate(conn, shape, timings)
        with timings.step("gen: rules first seen + milestone ledger (engine baseline)"):
            await _rules_seen(conn, shape.as_of - dt.timedelta(days=ledger_age_days))
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("CREATE TABLE bench_meta (meta jsonb NOT NULL)")
        await conn.execute("INSERT INTO bench_meta VALUES ($1)", meta)
        data = {**data, "achievement": await conn.fetchval("SELECT count(*) FROM achievement")}
    finally:
        await conn.close()
    with timings.step("gen: checkpoint"):
        await admin.execute("CHECKPOINT")
    return {"reused": False, **data}
