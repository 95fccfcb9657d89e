"""Measure candidate rewrites of the sweep's queries against the engine's own, same data.

    .venv/bin/python -m bench.sweep --data-dir /var/tmp/bench-sweep-1m/data     # once: populates
    .venv/bin/python -m bench.sweep_rewrites --data-dir /var/tmp/bench-sweep-1m/data

Clones the populated database left by ``bench.sweep --data-dir``, brings it to the steady
state with one real sweep (``Engine.run_scheduled_evaluation``), then times, over every batch
of a full sweep (keyset batches of active mentors, as the engine makes them), in interleaved
rounds (best of ``--repeat``) and checking that every variant returns the engine's rows:

* the keyset listing ``active_mentor_batch`` under a custom and a generic plan, and a
  rewrite whose generic plan keeps the index condition;
* the engine's candidate queries as they are (one ``= ANY($1::uuid[])`` array per batch) and
  rewrites: key-range batches instead of id arrays, a covering index on ``peer_mentor``
  for the batch scans, the same on two connections (2 cores), certification evaluated once
  per sweep instead of once per batch;
* the "due window" for inactivity (who became due since the previous sweep);
* the incremental sweep against a full one at +15 min on twin copies (same rows?): the
  engine's own (``since=``) where it has one, else the prototype ``INCREMENTAL_DUE_SET``;
* the first sweep when the engine tables keep the statistics of their empty state (autovacuum
  off on them), with and without an index on ``scenario_notification (mentor_id, as_of)``.

Nothing here changes the engine: the rewritten SQL is the proposal, with its numbers, in
``bench/results/sweep-rewrites-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import inspect
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import BENCH_PG_SETTINGS, RESULTS_DIR, log, machine_facts, wait_for_quiet, write_json
from bench.population import LOADED_TABLES, ensure_all_visible
from bench.sweep import DEFAULT_AS_OF, POP_DB, _prewarm
from scenario_engine.config import CertificationExpiryRule, InactivityRule, MilestoneRule, default_rules
from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.queries import query
from scenario_engine.embedded import server_version, start_private_cluster
from scenario_engine.engine import Engine
from scenario_engine.scenarios import certification, inactivity, milestone

INCREMENTAL = "since" in inspect.signature(Engine.run_scheduled_evaluation).parameters

DB = "bench_rewrites"
ZERO = uuid.UUID(int=0)


def _replace(sql: str, old: str, new: str) -> str:
    if old not in sql:
        raise SystemExit(f"the engine's query changed: {old!r} not found; update bench/sweep_rewrites.py")
    return sql.replace(old, new)


def range_variant(name: str, column: str, last_param: int) -> str:
    """The engine's query with the id array replaced by a key range ($1 < id <= $last)."""
    return _replace(
        query(name), f"{column} = ANY($1::uuid[])", f"{column} > $1::uuid AND {column} <= ${last_param}::uuid"
    )


def certification_once() -> str:
    """The engine's certification query over the whole population, run once per sweep."""
    return _replace(
        query("certification_candidates"), "c.mentor_id = ANY($1::uuid[])", "cardinality($1::uuid[]) = 0"
    )


PREFILTER = (
    "    FROM agg\n    CROSS JOIN LATERAL",
    "    FROM (SELECT * FROM agg WHERE agg.value >= ($6::float8[])[1] OFFSET 0) agg\n    CROSS JOIN LATERAL",
)


def milestone_prefiltered() -> str:
    """Only mentors at or above the lowest threshold reach the ledger anti-join."""
    return _replace(
        query("milestone_candidates"),
        *PREFILTER,
    )


INACTIVITY_DUE_WINDOW = """
-- Mentors whose inactivity condition became true in ($3, $2]: the last activity fell into
-- ($3 - threshold, $2 - threshold] and nothing newer exists. (The never-active and the
-- follow-up reminders would be two more small windows, on joined_at and on the
-- notification's as_of.)
SELECT p.id
FROM (SELECT DISTINCT a.mentor_id FROM activity a
      WHERE a.occurred_at > $3::timestamptz - make_interval(secs => $1::float8)
        AND a.occurred_at <= $2::timestamptz - make_interval(secs => $1::float8)) moved
JOIN peer_mentor p ON p.id = moved.mentor_id AND p.status = 'active'
WHERE NOT EXISTS (
    SELECT 1 FROM activity b
    WHERE b.mentor_id = p.id AND b.occurred_at > $2::timestamptz - make_interval(secs => $1::float8)
      AND b.occurred_at <= $2::timestamptz)
"""


INCREMENTAL_DUE_SET = """
-- Prototype of an incremental sweep at $2 after a completed sweep at $1: the mentors for
-- whom a time-driven condition can have become true in ($1, $2]. Milestones are absent on
-- purpose: a threshold can only be crossed by a data change, and every data change is an
-- event row that the event path evaluates.
-- $3 inactivity threshold secs, $4 reminder spacing secs, $5 inactivity rule, $6 cert tiers.
SELECT DISTINCT mentor_id FROM (
    SELECT a.mentor_id FROM activity a          -- first reminder: last activity left the window
    WHERE a.occurred_at > $1::timestamptz - make_interval(secs => $3::float8)
      AND a.occurred_at <= $2::timestamptz - make_interval(secs => $3::float8)
    UNION ALL
    SELECT p.id FROM peer_mentor p              -- first reminder of a never-active mentor
    WHERE p.status = 'active'
      AND p.joined_at > $1::timestamptz - make_interval(secs => $3::float8)
      AND p.joined_at <= $2::timestamptz - make_interval(secs => $3::float8)
    UNION ALL
    SELECT sn.mentor_id FROM scenario_notification sn   -- next reminder: spacing elapsed
    WHERE sn.rule_name = $5::text
      AND sn.as_of > $1::timestamptz - make_interval(secs => $4::float8)
      AND sn.as_of <= $2::timestamptz - make_interval(secs => $4::float8)
    UNION ALL
    SELECT c.mentor_id FROM certification c CROSS JOIN unnest($6::int[]) AS t(days)
    WHERE c.revoked_at IS NULL                  -- a certification entered a reminder tier
      AND c.expires_at > $1::timestamptz + make_interval(secs => t.days * 86400.0)
      AND c.expires_at <= $2::timestamptz + make_interval(secs => t.days * 86400.0)
) due
"""


async def batches(conn: Any, size: int) -> list[list[uuid.UUID]]:
    out: list[list[uuid.UUID]] = []
    after: uuid.UUID | None = None
    while True:
        rows = await conn.fetch(query("active_mentor_batch"), after, size)
        if not rows:
            return out
        out.append([r["id"] for r in rows])
        after = out[-1][-1]


def _key(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    return sorted(tuple(str(v) for v in r.values()) for r in rows)


ArgsFor = Callable[[list[uuid.UUID], uuid.UUID], tuple[Any, ...]]
Run = Callable[[], Awaitable[tuple[float, list[tuple[Any, ...]]]]]


async def over_batches(
    conn: Any, sql: str, args_for: ArgsFor, groups: list[list[uuid.UUID]], setup: str | None = None
) -> tuple[float, list[tuple[Any, ...]]]:
    """Run one statement per batch, as the sweep does; ``setup`` runs first inside a
    transaction that is rolled back afterwards (e.g. ``DROP INDEX`` to time without it)."""
    tx = conn.transaction()
    await tx.start()
    try:
        if setup:
            await conn.execute(setup)
        stmt = await conn.prepare(sql)
        fetched: list[asyncpg.Record] = []
        started = time.perf_counter()
        prev = ZERO
        for group in groups:
            fetched += await stmt.fetch(*args_for(group, prev))
            prev = group[-1]
        seconds = time.perf_counter() - started
        return seconds, _key(fetched)
    finally:
        await tx.rollback()


async def compare(title: str, variants: list[tuple[str, Run]], repeat: int) -> dict[str, Any]:
    """Interleaved rounds (A B C, A B C, …) so that drift in a shared machine's load hits all
    variants alike; the best run of each is reported, and every variant's rows are checked
    against the first one's."""
    runs: dict[str, list[float]] = {label: [] for label, _ in variants}
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for _ in range(repeat):
        await asyncio.to_thread(wait_for_quiet, 0.25, 300.0)  # the machine may be shared
        for label, run in variants:
            seconds, result = await run()
            runs[label].append(round(seconds, 3))
            rows.setdefault(label, result)
    reference = rows[variants[0][0]]
    out = {
        label: {
            "best_s": min(times),
            "runs_s": times,
            "rows": len(rows[label]),
            "same_rows": rows[label] == reference,
        }
        for label, times in runs.items()
    }
    for label, v in out.items():
        log(
            f"{title} | {label}: best {v['best_s']:.3f} s {v['runs_s']}, "
            f"{v['rows']} rows, same={v['same_rows']}"
        )
    return out


async def incremental_vs_full(
    cluster: Any, conn: Any, conn2: Any, args: argparse.Namespace, rules: Any
) -> dict[str, Any]:
    """The +15 min sweep two ways on twin copies of the steady state: the engine's full
    sweep, and an incremental one — the engine's own (``since=``) where it has one, else the
    due-set prototype above feeding ``Engine.evaluate_mentors``. Same rows written?"""
    from bench.sweep import fingerprint

    prev, at = args.as_of, args.as_of + dt.timedelta(minutes=15)
    if not INCREMENTAL:
        await conn.execute("CREATE INDEX bench_sn_rule_as_of_idx ON scenario_notification (rule_name, as_of)")
    await conn.execute("VACUUM (ANALYZE)")
    twin = DB + "_full"
    admin = await asyncpg.connect(cluster.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{twin}" WITH (FORCE)')
        await conn.close()  # a template database must have no other sessions
        await conn2.close()
        await admin.execute(f'CREATE DATABASE "{twin}" TEMPLATE "{DB}" STRATEGY FILE_COPY')
    finally:
        await admin.close()
    result: dict[str, Any] = {"prev_as_of": prev.isoformat(), "as_of": at.isoformat()}
    pool = await create_pool(cluster.url(twin), min_size=1, max_size=2)
    try:
        async with pool.acquire() as c:
            await _prewarm(c)
        await asyncio.to_thread(wait_for_quiet, 0.25, 300.0)
        t = time.perf_counter()
        res = await Engine(pool, rules).run_scheduled_evaluation(at)
        result["full_sweep_s"] = round(time.perf_counter() - t, 3)
        result["full_sweep_sent"] = res.sent
        async with pool.acquire() as c:
            full_fp = await fingerprint(c)
    finally:
        await pool.close()
    pool = await create_pool(cluster.url(DB), min_size=1, max_size=2)
    try:
        engine = Engine(pool, rules)
        async with pool.acquire() as c:
            await _prewarm(c)
            await asyncio.to_thread(wait_for_quiet, 0.25, 300.0)
            if INCREMENTAL:
                result["incremental"] = "engine: run_scheduled_evaluation(as_of, since=previous as_of)"
                t = time.perf_counter()
                res = await engine.run_scheduled_evaluation(at, since=prev)
                result["incremental_s"] = round(time.perf_counter() - t, 4)
                result["incremental_due_mentors"] = res.mentors
                result["incremental_sent"] = res.sent
            else:
                result["incremental"] = "bench prototype: INCREMENTAL_DUE_SET + Engine.evaluate_mentors"
                await _prototype_incremental(c, engine, prev, at, rules, args, result)
            inc_fp = await fingerprint(c)
    finally:
        await pool.close()
    result["same_rows_as_full_sweep"] = {k: inc_fp[k] == full_fp[k] for k in full_fp}
    result["differences"] = {
        k: {"full": full_fp[k], "incremental": inc_fp[k]} for k in full_fp if inc_fp[k] != full_fp[k]
    }
    log(f"incremental vs full at +15 min: {result}")
    admin = await asyncpg.connect(cluster.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{twin}" WITH (FORCE)')
    finally:
        await admin.close()
    return result


async def _prototype_incremental(
    c: Any,
    engine: Engine,
    prev: dt.datetime,
    at: dt.datetime,
    rules: Any,
    args: argparse.Namespace,
    result: dict[str, Any],
) -> None:
    [irule] = [r for r in rules.enabled() if isinstance(r, InactivityRule)]
    [crule] = [r for r in rules.enabled() if isinstance(r, CertificationExpiryRule)]
    params = (
        prev,
        at,
        irule.threshold_days * 86400.0,
        irule.cooldown.total_seconds(),
        irule.name,
        list(crule.tiers_days),
    )
    t = time.perf_counter()
    mentors = sorted(r["mentor_id"] for r in await c.fetch(INCREMENTAL_DUE_SET, *params))
    t_due = time.perf_counter() - t
    outcomes = await engine.evaluate_mentors(c, mentors, at)
    result["incremental_s"] = round(time.perf_counter() - t, 4)
    result["incremental_due_set_s"] = round(t_due, 4)
    result["incremental_due_mentors"] = len(mentors)
    result["incremental_sent"] = sum(1 for o in outcomes if o.decision.allowed and not o.duplicate)
    plan = await c.fetch("EXPLAIN (ANALYZE, BUFFERS) " + INCREMENTAL_DUE_SET, *params)
    _write_plan(args.label, "rewrite-incremental_due_set", plan)


STALE_TABLES = (
    "scenario_notification",
    "scenario_cooldown",
    "scenario_decision",
    "push_notification",
    "achievement",
)


async def stale_statistics_first_sweep(cluster: Any, args: argparse.Namespace, rules: Any) -> dict[str, Any]:
    """The first sweep when the engine's tables keep the statistics they had when empty
    (autovacuum off on them: what happens when autoanalyze does not catch up during a big
    sweep, made deterministic). policy_inputs' sent_24h sub-query can then combine the
    mentor index with the as_of index (BitmapAnd), and the as_of range of the last 24 h
    holds every notification the sweep has written so far: quadratic. With an index on
    scenario_notification (mentor_id, as_of) the probe is one index range per mentor."""
    from bench.sweep import _stats

    out: dict[str, Any] = {}
    name = DB + "_stale"
    # Migration 0007 (a6da537) ships this index as scenario_notification_mentor_as_of_idx:
    # drop it for "before", make sure it exists for "after".
    variants = [
        ("stale statistics", "DROP INDEX IF EXISTS scenario_notification_mentor_as_of_idx"),
        (
            "stale statistics + index (mentor_id, as_of)",
            "CREATE INDEX IF NOT EXISTS scenario_notification_mentor_as_of_idx "
            "ON scenario_notification (mentor_id, as_of)",
        ),
    ]
    for label, extra in variants:
        admin = await asyncpg.connect(cluster.dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{POP_DB}" STRATEGY FILE_COPY')
            conn = await connect(cluster.url(name))
            try:
                for table in STALE_TABLES:
                    await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
                if extra:
                    await conn.execute(extra)
                await conn.execute("ANALYZE " + ", ".join(STALE_TABLES))
                await _prewarm(conn)
            finally:
                await conn.close()
            pool = await create_pool(cluster.url(name), min_size=1, max_size=2)
            try:
                await asyncio.to_thread(wait_for_quiet, 0.25, 300.0)
                await admin.execute("SELECT pg_stat_statements_reset()")
                t = time.perf_counter()
                res = await Engine(pool, rules).run_scheduled_evaluation(args.as_of)
                seconds = time.perf_counter() - t
            finally:
                await pool.close()
            stats = await _stats(admin, name)
            policy = stats["by_query"].get("policy_inputs", {})
            out[label] = {
                "first_sweep_s": round(seconds, 2),
                "sent": res.sent,
                "policy_inputs_s": round(policy.get("exec_ms", 0) / 1000, 2),
                "policy_inputs_buffers": policy.get("shared_hit", 0) + policy.get("shared_read", 0),
                "db_exec_s": stats["db_exec_s"],
            }
            log(f"first sweep, {label}: {out[label]}")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    return out


def _before_after(sql: str, old: str, new: str) -> tuple[str, str] | None:
    """(before, after) texts of a proposed change, whether or not the engine has adopted it."""
    if old in sql:
        return sql, sql.replace(old, new)
    if new in sql:
        return sql.replace(new, old), sql
    return None


# Findings 3 and 4 of docs/BENCHMARKS.md; the engine adopted both in a6da537.
KEYSET_OLD = "($1::uuid IS NULL OR id > $1::uuid)"
KEYSET_NEW = "id > coalesce($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)"
ACTIVE_BATCH = _before_after(query("active_mentor_batch"), KEYSET_OLD, KEYSET_NEW)
DUE_JOIN_OLD = "JOIN peer_mentor p ON p.id = due.mentor_id AND p.status = 'active'"
DUE_JOIN_NEW = (
    "JOIN LATERAL (\n"
    "    SELECT 1 FROM peer_mentor p WHERE p.id = due.mentor_id AND p.status = 'active' LIMIT 1\n"
    ") active ON true"
)
DUE_MENTORS = _before_after(query("due_mentors"), DUE_JOIN_OLD, DUE_JOIN_NEW) if INCREMENTAL else None
COVER = (
    "CREATE INDEX bench_peer_mentor_active_cover_idx ON peer_mentor (id) "
    "INCLUDE (joined_at, timezone) WHERE status = 'active'"
)
# Migration 0007 (d8b95b4) ships the same index as peer_mentor_active_covering_idx: the runs
# "without" it drop both, inside a transaction that is rolled back.
WITHOUT_COVER = (
    "DROP INDEX bench_peer_mentor_active_cover_idx; DROP INDEX IF EXISTS peer_mentor_active_covering_idx"
)


async def run(cluster: Any, args: argparse.Namespace) -> dict[str, Any]:
    rules = default_rules()
    [irule] = [r for r in rules.enabled() if isinstance(r, InactivityRule)]
    [mrule] = [r for r in rules.enabled() if isinstance(r, MilestoneRule)]
    [crule] = [r for r in rules.enabled() if isinstance(r, CertificationExpiryRule)]
    at = args.as_of
    admin = await asyncpg.connect(cluster.dsn)
    out: dict[str, Any] = {"as_of": at.isoformat(), "batch": args.batch, "repeat": args.repeat}
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", POP_DB):
            raise SystemExit(f"no {POP_DB} in {args.data_dir}: run bench.sweep --data-dir first")
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}_full" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB}" TEMPLATE "{POP_DB}" STRATEGY FILE_COPY')
    finally:
        await admin.close()
    pool = await create_pool(cluster.url(DB), min_size=1, max_size=2)
    try:
        t0 = time.perf_counter()
        res = await Engine(pool, rules).run_scheduled_evaluation(at)
        out["first_sweep_s"] = round(time.perf_counter() - t0, 2)
        log(f"steady state reached: first sweep {out['first_sweep_s']} s, {res.sent} sent")
    finally:
        await pool.close()
    conn = await connect(cluster.url(DB))
    conn2 = await connect(cluster.url(DB))
    results: dict[str, Any] = {}
    try:
        await conn.execute("VACUUM (ANALYZE)")  # what autovacuum does after the first sweep
        await ensure_all_visible(conn, (*LOADED_TABLES, "achievement", "scenario_notification"))
        await _prewarm(conn)
        groups = await batches(conn, args.batch)
        out["batches"] = len(groups)
        out["mentors"] = sum(len(g) for g in groups)
        n = args.repeat

        def ia(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
            return inactivity.query_args(irule, g, at)

        def ma(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
            return milestone.query_args(mrule, g, at)

        def ca(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
            return certification.query_args(crule, g, at)

        # the key range of a batch starts after the previous batch of the whole sweep (not of
        # the subset one connection runs)
        lower = {g[0]: (groups[i - 1][-1] if i else ZERO) for i, g in enumerate(groups)}

        def ranged(f: ArgsFor) -> ArgsFor:
            def args_for(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
                return (lower[g[0]], *f(g, prev)[1:], g[-1])

            return args_for

        def batch_args(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
            return (None if lower[g[0]] == ZERO else lower[g[0]], args.batch)

        def on(c: Any, sql: str, f: ArgsFor, setup: str | None = None) -> Run:
            return lambda: over_batches(c, sql, f, groups, setup)

        def two(sql: str, f: ArgsFor, setup: str | None = None) -> Run:
            async def run_two() -> tuple[float, list[tuple[Any, ...]]]:
                a, b = await asyncio.gather(
                    over_batches(conn, sql, f, groups[0::2], setup),
                    over_batches(conn2, sql, f, groups[1::2], setup),
                )
                return max(a[0], b[0]), sorted(a[1] + b[1])

            return run_two

        # 1. The keyset listing under a generic plan (asyncpg re-uses prepared statements; after
        #    five runs Postgres may switch to the generic plan, where "$1 IS NULL OR id > $1"
        #    is a filter, not an index condition: every batch rescans the index from the start).
        generic = "SET LOCAL plan_cache_mode = force_generic_plan"
        if ACTIVE_BATCH is not None:
            before, after = ACTIVE_BATCH
            results["active_mentor_batch"] = await compare(
                "active_mentor_batch",
                [
                    ("IS NULL OR, custom plan", on(conn, before, batch_args)),
                    ("IS NULL OR, generic plan", on(conn, before, batch_args, generic)),
                    ("coalesce, generic plan", on(conn, after, batch_args, generic)),
                ],
                n,
            )
        else:
            log("active_mentor_batch changed beyond both known forms: not compared")
        # 2. Per-batch candidate queries; the covering index exists and is dropped (inside a
        #    rolled-back transaction) for the runs "without" it.
        t = time.perf_counter()
        await conn.execute(COVER)
        await conn.execute("VACUUM (ANALYZE) peer_mentor")
        out["covering_index_build_s"] = round(time.perf_counter() - t, 3)
        inactivity_range = range_variant("inactivity_candidates", "p.id", 7)
        results["inactivity_candidates"] = await compare(
            "inactivity",
            [
                ("engine", on(conn, query("inactivity_candidates"), ia, WITHOUT_COVER)),
                ("key range", on(conn, inactivity_range, ranged(ia), WITHOUT_COVER)),
                ("engine + covering index", on(conn, query("inactivity_candidates"), ia)),
                ("key range + covering index", on(conn, inactivity_range, ranged(ia))),
                ("engine, 2 connections", two(query("inactivity_candidates"), ia, WITHOUT_COVER)),
                ("key range + covering index, 2 connections", two(inactivity_range, ranged(ia))),
            ],
            n,
        )
        milestone_range = range_variant("milestone_candidates", "p.id", 8)
        results["milestone_candidates"] = await compare(
            "milestone",
            [
                ("engine", on(conn, query("milestone_candidates"), ma, WITHOUT_COVER)),
                ("key range", on(conn, milestone_range, ranged(ma), WITHOUT_COVER)),
                ("prefiltered anti-join", on(conn, milestone_prefiltered(), ma, WITHOUT_COVER)),
                ("engine + covering index", on(conn, query("milestone_candidates"), ma)),
                ("key range + covering index", on(conn, milestone_range, ranged(ma))),
                ("engine, 2 connections", two(query("milestone_candidates"), ma, WITHOUT_COVER)),
                ("key range + covering index, 2 connections", two(milestone_range, ranged(ma))),
            ],
            n,
        )
        once = certification_once()

        def cert_once_args(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
            return ([], at, crule.name, list(crule.tiers_days), list(crule.certification_types))

        results["certification_candidates"] = await compare(
            "certification",
            [
                ("engine (per batch)", on(conn, query("certification_candidates"), ca, WITHOUT_COVER)),
                (
                    "once per sweep",
                    lambda: over_batches(conn, once, cert_once_args, groups[:1], WITHOUT_COVER),
                ),
            ],
            n,
        )
        await conn.execute("DROP INDEX bench_peer_mentor_active_cover_idx")

        # 3. The due-window alternative for inactivity needs an index on activity(occurred_at)
        #    (migration 0006 ships one with the engine's incremental sweep; else build it).
        has_index = await conn.fetchval(
            "SELECT count(*) > 0 FROM pg_indexes WHERE tablename = 'activity' "
            "AND indexdef LIKE '%(occurred_at)%'"
        )
        if not has_index:
            t = time.perf_counter()
            await conn.execute(
                "CREATE INDEX bench_activity_occurred_idx ON activity (occurred_at) INCLUDE (mentor_id)"
            )
            await conn.execute("ANALYZE activity")
            out["activity_occurred_index_build_s"] = round(time.perf_counter() - t, 3)
        out["activity_occurred_index_size"] = await conn.fetchval(
            "SELECT pg_size_pretty(pg_relation_size(indexrelid)) FROM pg_index "
            "WHERE indrelid = 'activity'::regclass AND pg_get_indexdef(indexrelid) LIKE '%(occurred_at)%' "
            "LIMIT 1"
        )
        secs = irule.threshold_days * 86400.0
        due = await conn.prepare(INACTIVITY_DUE_WINDOW)
        for window in (dt.timedelta(minutes=15), dt.timedelta(days=1)):
            times = []
            for _ in range(n):
                t = time.perf_counter()
                count = len(await due.fetch(secs, at + window, at))
                times.append(round(time.perf_counter() - t, 4))
            results[f"inactivity due window {window}"] = {
                "best_s": min(times),
                "runs_s": times,
                "rows": count,
            }
            log(f"inactivity due window {window}: best {min(times):.4f} s, {count} mentors")
        plan = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + INACTIVITY_DUE_WINDOW, secs, at + dt.timedelta(minutes=15), at
        )
        _write_plan(args.label, "rewrite-inactivity_due_window", plan)
        if DUE_MENTORS is not None:
            # The due set joins ~300 ids to peer_mentor; with windows built from unnest()
            # parameters the planner expects ~600k and (plain join) hashes every active mentor.
            from scenario_engine.engine import due_mentors_args

            due_args = due_mentors_args(rules, at, at + dt.timedelta(minutes=15))
            due_before, due_after = DUE_MENTORS

            def fixed(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
                return due_args

            results["due_mentors"] = await compare(
                "due_mentors (+15 min)",
                [
                    ("plain join", lambda: over_batches(conn, due_before, fixed, groups[:1])),
                    ("lateral probe", lambda: over_batches(conn, due_after, fixed, groups[:1])),
                ],
                max(n, 5),
            )
        if not args.skip_incremental:
            out["incremental"] = await incremental_vs_full(cluster, conn, conn2, args, rules)
        else:
            await conn.close()
            await conn2.close()
    finally:
        if not conn.is_closed():
            await conn.close()
        if not conn2.is_closed():
            await conn2.close()
        admin = await asyncpg.connect(cluster.dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        finally:
            await admin.close()
    out["results"] = results
    if not args.skip_stale_stats:
        out["stale_statistics"] = await stale_statistics_first_sweep(cluster, args, rules)
    return out


def _write_plan(label: str, name: str, plan: list[asyncpg.Record]) -> None:
    folder = RESULTS_DIR / f"plans-{label}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("\n".join(r[0] for r in plan) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sweep_rewrites", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="the --data-dir of a bench.sweep run")
    p.add_argument("--as-of", type=dt.datetime.fromisoformat, default=DEFAULT_AS_OF)
    p.add_argument("--batch", type=int, default=20_000, help="the engine's sweep batch")
    p.add_argument("--repeat", type=int, default=3, help="runs per variant (best is reported)")
    p.add_argument("--label", default="1000000", help="results file suffix")
    p.add_argument("--skip-incremental", action="store_true", help="skip incremental vs full at +15 min")
    p.add_argument(
        "--skip-stale-stats", action="store_true", help="skip the first sweeps on stale statistics"
    )
    args = p.parse_args(argv)
    cluster = start_private_cluster(data_dir=args.data_dir, settings=BENCH_PG_SETTINGS, owner_pid=os.getpid())
    result: dict[str, Any] = {
        "benchmark": "sweep_rewrites",
        "machine": machine_facts(server_version(cluster.bin_dir)),
    }
    try:
        result.update(asyncio.run(run(cluster, args)))
    finally:
        cluster.close()
    write_json(RESULTS_DIR / f"sweep-rewrites-{args.label}.json", result)
    for group, variants in result.get("results", {}).items():
        if "best_s" in variants:
            print(f"{group:<55} {variants['best_s']:>8.3f} s  ({variants['rows']} rows)")
            continue
        for label, v in variants.items():
            print(f"{group + ' | ' + label:<70} {v['best_s']:>8.3f} s  same rows: {v['same_rows']}")
    if "incremental" in result:
        print("incremental vs full:", result["incremental"])
    if "stale_statistics" in result:
        print("first sweep on stale statistics:", result["stale_statistics"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
