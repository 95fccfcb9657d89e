"""The sweep benchmark's yardstick is honest: the hand-written SQL (bench/baseline.py) writes
every row the engine's sweep writes, and the same-rows check (bench/harness/written.py) covers
every table the sweep changes — outcome rows included (issue 18, item 2).

A small generated population (bench/harness/population.py) is swept by the engine on one
database and by the yardstick on a copy; then (1) every table whose contents the sweep changed
is one the fingerprint covers, (2) both fingerprints are equal, and (3) a sample of notifications
has the same context, push data and decision inputs (locale and effective parameters included).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from bench import baseline
from bench.harness import written
from bench.harness.engine import Engine, benchmark_rules, ensure_rules_seen
from bench.harness.population import DEFAULT_AS_OF, Shape, generate
from bench.harness.report import Timings

from scenario_engine.db.connect import connect, create_pool
from tests.support import pg

MENTORS = 3000
# The engine's own bookkeeping a sweep also updates, not rows of its result: the outcome
# resolution's mark (sql/0027, one row: where the next resolution starts).
BOOKKEEPING = {"scenario_outcome_resolution"}


async def _contents(conn: asyncpg.Connection[Any]) -> dict[str, tuple[int, str]]:
    """Every table of the engine's and the platform's schemas: (rows, digest of its rows)."""
    tables = await conn.fetch(
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('public', 'scenario_engine')"
    )
    out: dict[str, tuple[int, str]] = {}
    for t in tables:
        name = f'"{t["schemaname"]}"."{t["tablename"]}"'
        row = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') AS h "
            f"FROM {name} x"
        )
        assert row is not None
        out[str(t["tablename"])] = (int(row["n"]), str(row["h"]))
    return out


async def test_yardstick_writes_what_the_sweep_writes(pg_server: pg.TestServer, db_url: str) -> None:
    as_of = DEFAULT_AS_OF
    rules = benchmark_rules()
    conn = await connect(db_url)
    try:
        await generate(conn, Shape(MENTORS, 10.0, MENTORS, as_of), Timings())
        await ensure_rules_seen(conn, rules, as_of - dt.timedelta(days=7))
    finally:
        await conn.close()
    source = db_url.rsplit("/", 1)[1].split("?", 1)[0]
    copy = f"{source}_yardstick"
    admin = await asyncpg.connect(pg_server.admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{source}"')
        engine_conn = await connect(db_url)
        try:
            before = await _contents(engine_conn)
            pool = await create_pool(db_url, min_size=1, max_size=2)
            try:
                result = await Engine(pool, rules).run_scheduled_evaluation(as_of)
            finally:
                await pool.close()
            assert result.sent > 0
            # The sweep's figure includes the outcome resolution it ran.
            assert 0 < result.resolve_seconds <= result.seconds
            after = await _contents(engine_conn)
            engine_fp = await written.fingerprint(engine_conn)
            keys = await written.sample_keys(engine_conn, 200)
            engine_sample = await written.sample_contents(engine_conn, keys)
        finally:
            await engine_conn.close()
        yardstick = await connect(pg_server.url(copy))
        try:
            async with yardstick.transaction():
                for _label, sql in baseline.statements(rules, as_of):
                    await yardstick.execute(sql)
            yardstick_fp = await written.fingerprint(yardstick)
            yardstick_sample = await written.sample_contents(yardstick, keys)
        finally:
            await yardstick.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')
        await admin.close()

    changed = {t for t in after if after[t] != before.get(t)} - BOOKKEEPING
    assert "scenario_outcome" in changed
    assert changed <= set(engine_fp), f"the same-rows check misses {sorted(changed - set(engine_fp))}"
    for table in engine_fp:
        assert yardstick_fp[table] == engine_fp[table], table
    # and the contents: contexts with their locale, push data, decision inputs with the locale and
    # the effective parameters (the texts are Babel's, see written.sample_contents)
    assert keys and set(engine_sample) == set(keys)
    assert yardstick_sample == engine_sample
