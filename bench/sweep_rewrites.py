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
* the engine's incremental sweep (``since=``) against a full one at +15 min on twin copies
  (same rows?);
* the first sweep when the engine tables keep the statistics of their empty state (autovacuum
  off on them), with and without an index on ``scenario_notification (mentor_id, as_of)``.

Nothing here changes the engine: the rewritten SQL is the proposal, with its numbers, in
``bench/results/sweep-rewrites-<label>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import statements, written
from bench.harness.cluster import (
    BENCH_PG_SETTINGS,
    Conn,
    LocalCluster,
    admin,
    clone_database,
    connect,
    create_pool,
    database_exists,
    drop_database,
    prewarm,
    private_cluster,
    server_version,
)
from bench.harness.engine import (
    Engine,
    Rules,
    benchmark_rules,
    bound_args,
    candidate_query,
    one_rule_each,
    query,
)
from bench.harness.population import DEFAULT_AS_OF, LOADED_TABLES, POP_DB, ensure_all_visible
from bench.harness.report import RESULTS_DIR, log, machine_facts, wait_for_quiet, write_json

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


async def batches(conn: Conn, size: int) -> list[list[uuid.UUID]]:
    out: list[list[uuid.UUID]] = []
    after: uuid.UUID | None = None
    while True:
        rows = await conn.fetch(
            query("active_mentor_batch"), *bound_args("active_mentor_batch", after=after, batch_size=size)
        )
        if not rows:
            return out
        out.append([r["id"] for r in rows])
        after = out[-1][-1]


def _key(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    return sorted(tuple(str(v) for v in r.values()) for r in rows)


ArgsFor = Callable[[list[uuid.UUID], uuid.UUID], tuple[Any, ...]]
Run = Callable[[], Awaitable[tuple[float, list[tuple[Any, ...]]]]]


async def over_batches(
    conn: Conn, sql: str, args_for: ArgsFor, groups: list[list[uuid.UUID]], setup: str | None = None
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
        await _quiet()
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
COVER = (
    "CREATE INDEX bench_peer_mentor_active_cover_idx ON peer_mentor (id) "
    "INCLUDE (joined_at, timezone) WHERE status = 'active'"
)
# Migration 0007 (d8b95b4) ships the same index as peer_mentor_active_covering_idx: the runs
# "without" it drop both, inside a transaction that is rolled back.
WITHOUT_COVER = (
    "DROP INDEX bench_peer_mentor_active_cover_idx; DROP INDEX IF EXISTS peer_mentor_active_covering_idx"
)


# Before each measured run: wait until other processes leave the CPUs mostly idle (the
# machine may be shared); --quiet-below / --quiet-timeout as in bench.sweep.
QUIET = {"below": 0.25, "timeout": 300.0}


def _quiet() -> Awaitable[dict[str, float]]:
    return asyncio.to_thread(wait_for_quiet, QUIET["below"], QUIET["timeout"])


class Sweep:
    """The batches of one full sweep and the two connections the variants run on."""

    def __init__(self, conn: Conn, conn2: Conn, groups: list[list[uuid.UUID]], batch: int) -> None:
        self.conn, self.conn2, self.groups, self.batch = conn, conn2, groups, batch
        # the key range of a batch starts after the previous batch of the whole sweep (not of
        # the subset one connection runs)
        self.lower = {g[0]: (groups[i - 1][-1] if i else ZERO) for i, g in enumerate(groups)}

    def ranged(self, f: ArgsFor) -> ArgsFor:
        """``f``'s arguments with the id array replaced by the batch's key range."""

        def args_for(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
            return (self.lower[g[0]], *f(g, prev)[1:], g[-1])

        return args_for

    def batch_args(self, g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
        after = None if self.lower[g[0]] == ZERO else self.lower[g[0]]
        return bound_args("active_mentor_batch", after=after, batch_size=self.batch)

    def on(self, sql: str, f: ArgsFor, setup: str | None = None, first_only: bool = False) -> Run:
        groups = self.groups[:1] if first_only else self.groups
        return lambda: over_batches(self.conn, sql, f, groups, setup)

    def two(self, sql: str, f: ArgsFor, setup: str | None = None) -> Run:
        """Even batches on one connection, odd ones on the other, at the same time."""

        async def run_two() -> tuple[float, list[tuple[Any, ...]]]:
            a, b = await asyncio.gather(
                over_batches(self.conn, sql, f, self.groups[0::2], setup),
                over_batches(self.conn2, sql, f, self.groups[1::2], setup),
            )
            return max(a[0], b[0]), sorted(a[1] + b[1])

        return run_two


def candidate_args(rules: Rules, kind: int, at: dt.datetime) -> ArgsFor:
    """Per batch, the engine's arguments of the candidate query of rule ``kind`` (0 inactivity,
    1 milestone, 2 certification)."""
    rule = one_rule_each(rules)[kind]

    def args_for(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
        return candidate_query(rule, g, at)[1]

    return args_for


async def keyset_listing(sw: Sweep, n: int) -> dict[str, Any] | None:
    """The keyset listing under a generic plan (asyncpg re-uses prepared statements; after
    five runs Postgres may switch to the generic plan, where "$1 IS NULL OR id > $1" is a
    filter, not an index condition: every batch rescans the index from the start)."""
    if ACTIVE_BATCH is None:
        log("active_mentor_batch changed beyond both known forms: not compared")
        return None
    generic = "SET LOCAL plan_cache_mode = force_generic_plan"
    before, after = ACTIVE_BATCH
    return await compare(
        "active_mentor_batch",
        [
            ("IS NULL OR, custom plan", sw.on(before, sw.batch_args)),
            ("IS NULL OR, generic plan", sw.on(before, sw.batch_args, generic)),
            ("coalesce, generic plan", sw.on(after, sw.batch_args, generic)),
        ],
        n,
    )


def _variants(sw: Sweep, name: str, f: ArgsFor) -> list[tuple[str, Run]]:
    """The engine's per-batch query, key ranges, the covering index, two connections."""
    last_param = len(f(sw.groups[0], ZERO)) + 1  # the range's upper bound follows the engine's
    engine, ranged = query(name), range_variant(name, "p.id", last_param)
    return [
        ("engine", sw.on(engine, f, WITHOUT_COVER)),
        ("key range", sw.on(ranged, sw.ranged(f), WITHOUT_COVER)),
        ("engine + covering index", sw.on(engine, f)),
        ("key range + covering index", sw.on(ranged, sw.ranged(f))),
        ("engine, 2 connections", sw.two(engine, f, WITHOUT_COVER)),
        ("key range + covering index, 2 connections", sw.two(ranged, sw.ranged(f))),
    ]


async def candidate_queries(
    sw: Sweep, rules: Rules, at: dt.datetime, n: int, out: dict[str, Any]
) -> dict[str, Any]:
    """Per-batch candidate queries; the covering index exists and is dropped (inside a
    rolled-back transaction) for the runs "without" it."""
    t = time.perf_counter()
    await sw.conn.execute(COVER)
    await sw.conn.execute("VACUUM (ANALYZE) peer_mentor")
    out["covering_index_build_s"] = round(time.perf_counter() - t, 3)
    ia, ma, ca = (candidate_args(rules, kind, at) for kind in range(3))
    results = {
        "inactivity_candidates": await compare("inactivity", _variants(sw, "inactivity_candidates", ia), n)
    }
    milestone = _variants(sw, "milestone_candidates", ma)
    milestone.insert(2, ("prefiltered anti-join", sw.on(milestone_prefiltered(), ma, WITHOUT_COVER)))
    results["milestone_candidates"] = await compare("milestone", milestone, n)
    crule = one_rule_each(rules)[2]

    def cert_once_args(g: list[uuid.UUID], prev: uuid.UUID) -> tuple[Any, ...]:
        return ([], at, crule.name, list(crule.tiers_days), list(crule.certification_types))

    results["certification_candidates"] = await compare(
        "certification",
        [
            ("engine (per batch)", sw.on(query("certification_candidates"), ca, WITHOUT_COVER)),
            ("once per sweep", sw.on(certification_once(), cert_once_args, WITHOUT_COVER, first_only=True)),
        ],
        n,
    )
    await sw.conn.execute("DROP INDEX bench_peer_mentor_active_cover_idx")
    return results


async def _occurred_at_index(conn: Conn, out: dict[str, Any]) -> None:
    """An index on activity(occurred_at) (migration 0006 ships one; else build it)."""
    has_index = await conn.fetchval(
        "SELECT count(*) > 0 FROM pg_indexes WHERE tablename = 'activity' AND indexdef LIKE '%(occurred_at)%'"
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


async def inactivity_due_window(
    conn: Conn, rules: Rules, at: dt.datetime, n: int, label: str, out: dict[str, Any]
) -> dict[str, Any]:
    """Who became due for inactivity in the last 15 minutes / day (the due-window alternative)."""
    await _occurred_at_index(conn, out)
    secs = one_rule_each(rules)[0].threshold_days * 86400.0
    due = await conn.prepare(INACTIVITY_DUE_WINDOW)
    results: dict[str, Any] = {}
    for window in (dt.timedelta(minutes=15), dt.timedelta(days=1)):
        times = []
        count = 0
        for _ in range(n):
            t = time.perf_counter()
            count = len(await due.fetch(secs, at + window, at))
            times.append(round(time.perf_counter() - t, 4))
        results[f"inactivity due window {window}"] = {"best_s": min(times), "runs_s": times, "rows": count}
        log(f"inactivity due window {window}: best {min(times):.4f} s, {count} mentors")
    plan = await conn.fetch(
        "EXPLAIN (ANALYZE, BUFFERS) " + INACTIVITY_DUE_WINDOW, secs, at + dt.timedelta(minutes=15), at
    )
    _write_plan(label, "rewrite-inactivity_due_window", plan)
    return results


async def _sweep_and_fingerprint(
    url: str, rules: Rules, at: dt.datetime, since: dt.datetime | None
) -> tuple[float, int, int, dict[str, Any]]:
    """(seconds, mentors, sent, fingerprint) of one prewarmed sweep."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as c:
            await prewarm(c)
        await _quiet()
        t = time.perf_counter()
        engine = Engine(pool, rules)
        res = await (
            engine.run_scheduled_evaluation(at, since=since) if since else engine.run_scheduled_evaluation(at)
        )
        seconds = time.perf_counter() - t
        async with pool.acquire() as c:
            return seconds, res.mentors, res.sent, await written.fingerprint(c)
    finally:
        await pool.close()


async def incremental_vs_full(
    cluster: LocalCluster, args: argparse.Namespace, rules: Rules
) -> dict[str, Any]:
    """The +15 min sweep two ways on twin copies of the steady state: the engine's full
    sweep, and its incremental one (``since=``). Same rows written?"""
    prev, at = args.as_of, args.as_of + dt.timedelta(minutes=15)
    twin = DB + "_full"
    conn = await admin(cluster)
    try:
        await clone_database(conn, twin, DB)
    finally:
        await conn.close()
    result: dict[str, Any] = {"prev_as_of": prev.isoformat(), "as_of": at.isoformat()}
    seconds, _, sent, full_fp = await _sweep_and_fingerprint(cluster.url(twin), rules, at, None)
    result["full_sweep_s"] = round(seconds, 3)
    result["full_sweep_sent"] = sent
    result["incremental"] = "engine: run_scheduled_evaluation(as_of, since=previous as_of)"
    seconds, mentors, sent, inc_fp = await _sweep_and_fingerprint(cluster.url(DB), rules, at, prev)
    result["incremental_s"] = round(seconds, 4)
    result["incremental_due_mentors"] = mentors
    result["incremental_sent"] = sent
    result["same_rows_as_full_sweep"] = {k: inc_fp[k] == full_fp[k] for k in full_fp}
    result["differences"] = {
        k: {"full": full_fp[k], "incremental": inc_fp[k]} for k in full_fp if inc_fp[k] != full_fp[k]
    }
    log(f"incremental vs full at +15 min: {result}")
    conn = await admin(cluster)
    try:
        await drop_database(conn, twin)
    finally:
        await conn.close()
    return result


STALE_TABLES = (
    "scenario_engine.scenario_notification",
    "scenario_engine.scenario_cooldown",
    "scenario_engine.scenario_decision",
    "scenario_engine.push_notification",
    "public.achievement",
)
# Migration 0007 (a6da537) ships this index as scenario_notification_mentor_as_of_idx:
# drop it for "before", make sure it exists for "after".
STALE_VARIANTS = (
    ("stale statistics", "DROP INDEX IF EXISTS scenario_engine.scenario_notification_mentor_as_of_idx"),
    (
        "stale statistics + index (mentor_id, as_of)",
        "CREATE INDEX IF NOT EXISTS scenario_notification_mentor_as_of_idx "
        "ON scenario_engine.scenario_notification (mentor_id, as_of)",
    ),
)


async def _stale_copy(url: str, extra: str) -> None:
    """Autovacuum off on the engine's tables, their statistics those of the empty state."""
    conn = await connect(url)
    try:
        for table in STALE_TABLES:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        await conn.execute(extra)
        await conn.execute("ANALYZE " + ", ".join(STALE_TABLES))
        await prewarm(conn)
    finally:
        await conn.close()


async def _stale_first_sweep(
    cluster: LocalCluster, admin_conn: asyncpg.Connection[Any], name: str, rules: Rules, at: dt.datetime
) -> dict[str, Any]:
    pool = await create_pool(cluster.url(name), min_size=1, max_size=2)
    try:
        await _quiet()
        await statements.stats_reset(admin_conn)
        t = time.perf_counter()
        res = await Engine(pool, rules).run_scheduled_evaluation(at)
        seconds = time.perf_counter() - t
    finally:
        await pool.close()
    stats = await statements.stats(admin_conn, name)
    policy = stats["by_query"].get("policy_inputs", {})
    return {
        "first_sweep_s": round(seconds, 2),
        "sent": res.sent,
        "policy_inputs_s": round(policy.get("exec_ms", 0) / 1000, 2),
        "policy_inputs_buffers": policy.get("shared_hit", 0) + policy.get("shared_read", 0),
        "db_exec_s": stats["db_exec_s"],
    }


async def stale_statistics_first_sweep(
    cluster: LocalCluster, args: argparse.Namespace, rules: Rules
) -> dict[str, Any]:
    """The first sweep when the engine's tables keep the statistics they had when empty
    (autovacuum off on them: what happens when autoanalyze does not catch up during a big
    sweep, made deterministic). policy_inputs' sent_24h sub-query can then combine the
    mentor index with the as_of index (BitmapAnd), and the as_of range of the last 24 h
    holds every notification the sweep has written so far: quadratic. With an index on
    scenario_notification (mentor_id, as_of) the probe is one index range per mentor."""
    out: dict[str, Any] = {}
    name = DB + "_stale"
    for label, extra in STALE_VARIANTS:
        conn = await admin(cluster)
        try:
            await clone_database(conn, name, POP_DB)
            await _stale_copy(cluster.url(name), extra)
            out[label] = await _stale_first_sweep(cluster, conn, name, rules, args.as_of)
            log(f"first sweep, {label}: {out[label]}")
            await drop_database(conn, name)
        finally:
            await conn.close()
    return out


async def steady_state(cluster: LocalCluster, rules: Rules, at: dt.datetime) -> float:
    """``DB``: a copy of the populated database after one real sweep (and what autovacuum
    does after it); the seconds that first sweep took."""
    conn = await admin(cluster)
    try:
        if not await database_exists(conn, POP_DB):
            raise SystemExit(f"no {POP_DB} in the data directory: run bench.sweep --data-dir first")
        await drop_database(conn, DB + "_full")
        await clone_database(conn, DB, POP_DB)
    finally:
        await conn.close()
    pool = await create_pool(cluster.url(DB), min_size=1, max_size=2)
    try:
        t0 = time.perf_counter()
        res = await Engine(pool, rules).run_scheduled_evaluation(at)
        seconds = time.perf_counter() - t0
        log(f"steady state reached: first sweep {seconds:.2f} s, {res.sent} sent")
        async with pool.acquire() as c:
            await c.execute("VACUUM (ANALYZE)")
            await ensure_all_visible(c, (*LOADED_TABLES, "achievement", "scenario_notification"))
    finally:
        await pool.close()
    return seconds


async def measure_queries(
    cluster: LocalCluster, args: argparse.Namespace, rules: Rules, out: dict[str, Any]
) -> dict[str, Any]:
    """Every per-query comparison, over the batches of one full sweep of ``DB``."""
    at, n = args.as_of, args.repeat
    conn = await connect(cluster.url(DB))
    conn2 = await connect(cluster.url(DB))
    results: dict[str, Any] = {}
    try:
        await prewarm(conn)
        groups = await batches(conn, args.batch)
        out["batches"] = len(groups)
        out["mentors"] = sum(len(g) for g in groups)
        sw = Sweep(conn, conn2, groups, args.batch)
        listing = await keyset_listing(sw, n)
        if listing is not None:
            results["active_mentor_batch"] = listing
        results.update(await candidate_queries(sw, rules, at, n, out))
        results.update(await inactivity_due_window(conn, rules, at, n, args.label, out))
        if not args.skip_incremental:
            await conn.execute("VACUUM (ANALYZE)")  # before the copy for incremental_vs_full
    finally:
        await conn.close()  # a template database (the incremental twin) has no other sessions
        await conn2.close()
    return results


async def run(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    rules = benchmark_rules()
    out: dict[str, Any] = {"as_of": args.as_of.isoformat(), "batch": args.batch, "repeat": args.repeat}
    try:
        out["first_sweep_s"] = round(await steady_state(cluster, rules, args.as_of), 2)
        out["results"] = await measure_queries(cluster, args, rules, out)
        if not args.skip_incremental:
            out["incremental"] = await incremental_vs_full(cluster, args, rules)
    finally:
        conn = await admin(cluster)
        try:
            await drop_database(conn, DB)
        finally:
            await conn.close()
    if not args.skip_stale_stats:
        out["stale_statistics"] = await stale_statistics_first_sweep(cluster, args, rules)
    return out


def _write_plan(label: str, name: str, plan: list[asyncpg.Record]) -> None:
    folder = RESULTS_DIR / f"plans-{label}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_text("\n".join(r[0] for r in plan) + "\n", encoding="utf-8")


def summarize(result: dict[str, Any]) -> str:
    lines = []
    for group, variants in result.get("results", {}).items():
        if "best_s" in variants:
            lines.append(f"{group:<55} {variants['best_s']:>8.3f} s  ({variants['rows']} rows)")
            continue
        for label, v in variants.items():
            lines.append(f"{group + ' | ' + label:<70} {v['best_s']:>8.3f} s  same rows: {v['same_rows']}")
    if "incremental" in result:
        lines.append(f"incremental vs full: {result['incremental']}")
    if "stale_statistics" in result:
        lines.append(f"first sweep on stale statistics: {result['stale_statistics']}")
    return "\n".join(lines)


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
    p.add_argument("--quiet-below", type=float, default=0.25, help="1.0 disables the wait for quiet")
    p.add_argument("--quiet-timeout", type=float, default=300.0, help="longest wait for quiet, seconds")
    args = p.parse_args(argv)
    QUIET.update(below=args.quiet_below, timeout=args.quiet_timeout)
    result: dict[str, Any] = {"benchmark": "sweep_rewrites"}
    with private_cluster(BENCH_PG_SETTINGS, data_dir=args.data_dir) as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        result.update(asyncio.run(run(cluster, args)))
    write_json(RESULTS_DIR / f"sweep-rewrites-{args.label}.json", result)
    print(summarize(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
