"""Sweep benchmark (DESIGN.md §6): the scheduled sweep over a large population.

    .venv/bin/python -m bench.sweep                      # 1M mentors, 10M activities, 1M certifications
    .venv/bin/python -m bench.sweep --mentors 100000     # quick run (about two minutes)

What it does, in one process that owns a private PostgreSQL cluster:

1. starts a cluster with benchmark settings (``bench.common.BENCH_PG_SETTINGS``), migrates a
   database and generates the population in SQL (``bench.population``), timing each step;
   the rules are registered as first seen ``--ledger-age-days`` before ``as_of`` (with the
   engine's own milestone baseline at that instant), as on a live system;
2. clones the populated database three times (``CREATE DATABASE … TEMPLATE``): one for the
   engine's sweeps, one for the hand-written SQL baseline, one for the per-mentor loop;
3. runs ``Engine.run_scheduled_evaluation``: a full first sweep at ``as_of`` (lots to send), a
   full second one at the same instant (steady state: nothing new), then 15 minutes later an
   incremental one (``since=as_of``, what the daemon runs between full sweeps; engines without
   ``since`` get a full one) and a full one at that same instant, which must find nothing the
   incremental one missed; per sweep: wall time, per-rule outcomes, this process's peak RSS
   (VmHWM, reset before each sweep), its CPU time, and where the database time went
   (pg_stat_statements, per named query, planning included);
4. runs the baseline (``bench.baseline``) on its clone and checks that it wrote the same
   rows as the first sweep (per rule: count and a hash of the dedup keys of
   scenario_notification, decisions per outcome, pushes, achievements, cooldowns; and the
   contexts, titles and bodies of a sample);
5. EXPLAIN (ANALYZE, BUFFERS) of the sweep's queries on one batch, before the first sweep and
   in the steady state (``bench/results/plans-<mentors>/``);
6. times ``Engine.evaluate_mentor`` for a random sample of active mentors and extrapolates, in
   the first-sweep state and again (same mentors, same instant) in their steady state;
7. writes ``bench/results/sweep-<mentors>.json`` and prints a summary.

The machine may be shared: before each measured phase the benchmark waits (``--quiet-below``,
``--quiet-timeout``) until other processes leave the CPUs mostly idle, and records what it saw.
``bench.sweep_rewrites`` measures proposed query and index changes on the same data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import inspect
import os
import pstats
import re
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from bench import baseline
from bench.common import (
    BENCH_PG_SETTINGS,
    RESULTS_DIR,
    Timings,
    disk_free_gib,
    log,
    machine_facts,
    peak_rss_mb,
    postgres_processes,
    reset_peak_rss,
    rss_mb,
    wait_for_quiet,
    write_json,
)
from bench.population import LOADED_TABLES, Shape, counts, ensure_all_visible, generate
from scenario_engine.config import (
    InactivityRule,
    MilestoneRule,
    Rules,
    default_rules,
)
from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.migrations import migrate
from scenario_engine.db.queries import all_queries, query
from scenario_engine.embedded import LocalCluster, server_version, start_private_cluster
from scenario_engine.engine import Engine, SweepResult, due_mentors_args
from scenario_engine.evaluate import ensure_rules_seen
from scenario_engine.scenarios import certification, inactivity, milestone

DEFAULT_AS_OF = dt.datetime(2025, 6, 16, 7, 0, tzinfo=dt.UTC)
POP_DB = "bench_pop"
SWEEP_DB = "bench_sweep"
BASELINE_DB = "bench_baseline"
SINGLE_DB = "bench_single"
STEADY_BAR_S = 3.0
BASELINE_RATIO_BAR = 1.5
PER_MENTOR_RATIO_BAR = 50.0
# Engines from edc8f80 on can sweep incrementally (only mentors newly due since a previous sweep).
INCREMENTAL = "since" in inspect.signature(Engine.run_scheduled_evaluation).parameters
RSS_BAR_MB = 150.0


# --- arguments ----------------------------------------------------------------------------


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--mentors", type=int, default=1_000_000)
    p.add_argument("--activities-per-mentor", type=float, default=10.0)
    p.add_argument("--certifications", type=int, default=None, help="default: one per mentor")
    p.add_argument("--as-of", type=_instant, default=DEFAULT_AS_OF, help="evaluation instant (ISO)")
    p.add_argument("--seed", type=float, default=0.42, help="setseed() for the generator, in [-1, 1]")
    p.add_argument(
        "--ledger-age-days",
        type=float,
        default=7.0,
        help="rules first seen (milestone baseline taken) this long before as_of",
    )
    p.add_argument("--sweep-batch", type=int, default=None, help="Engine sweep batch (default: engine's)")
    p.add_argument("--per-mentor-sample", type=int, default=10_000)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-per-mentor", action="store_true")
    p.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN (ANALYZE) captures")
    p.add_argument(
        "--auto-explain-ms",
        type=int,
        default=None,
        help="diagnostics: log plans (with ANALYZE, BUFFERS) of sweep statements slower than this "
        "to the server log; slows the sweep down, so not for the reported numbers",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="diagnostics: cProfile the first sweep (inflates its time) into bench/results/",
    )
    p.add_argument(
        "--quiet-below",
        type=float,
        default=0.25,
        help="before each measured phase wait until other processes use less than this share of "
        "all CPUs (the machine may be shared); 1.0 disables",
    )
    p.add_argument("--quiet-timeout", type=float, default=300.0, help="longest wait for quiet, seconds")
    p.add_argument("--pg-setting", type=_setting, action="append", default=[], help="KEY=VALUE override")
    p.add_argument("--pg-bin", default=None, help="PostgreSQL bin directory (default: the embedded wheel)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the cluster here (default: a throwaway directory under /var/tmp)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="with --data-dir: reuse a populated database of the same shape instead of regenerating",
    )
    p.add_argument("--output", type=Path, default=None, help="default: bench/results/sweep-<mentors>.json")
    args = p.parse_args(argv)
    if args.certifications is None:
        args.certifications = args.mentors
    if args.reuse and args.data_dir is None:
        p.error("--reuse needs --data-dir")
    return args


# --- database helpers -----------------------------------------------------------------------


async def _admin(cluster: LocalCluster) -> asyncpg.Connection[Any]:
    return await asyncpg.connect(cluster.dsn)


async def _drop(admin: asyncpg.Connection[Any], name: str) -> None:
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _clone(admin: asyncpg.Connection[Any], name: str, template: str) -> None:
    await _drop(admin, name)
    # FILE_COPY: a file-level copy (plus a checkpoint) is much faster than WAL_LOG for GBs.
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')


async def _prewarm(conn: Any) -> int:
    """Load the database's relations into shared buffers, largest first (smaller hot ones win)."""
    blocks: int = await conn.fetchval(
        """
        SELECT coalesce(sum(pg_prewarm(oid)), 0) FROM (
            SELECT c.oid FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')
            ORDER BY pg_relation_size(c.oid) DESC) s
        """
    )
    return blocks


def _normal(sql: str) -> str:
    """Whitespace-collapsed text without leading comment lines (pg_stat_statements drops them)."""
    lines = sql.strip().splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        lines.pop(0)
    return re.sub(r"\s+", " ", "\n".join(lines)).strip().rstrip(";").rstrip()


_NAMES: dict[str, str] | None = None


def _query_name(text: str) -> str:
    global _NAMES
    if _NAMES is None:
        _NAMES = {_normal(sql): name for name, sql in all_queries().items()}
    norm = _normal(text)
    if norm in _NAMES:
        return _NAMES[norm]
    for sql, name in _NAMES.items():
        if norm[:120] == sql[:120]:
            return name
    return "other: " + norm[:60]


async def _stats_reset(admin: asyncpg.Connection[Any]) -> None:
    await admin.execute("SELECT pg_stat_statements_reset()")


async def _stats(admin: asyncpg.Connection[Any], database: str) -> dict[str, Any]:
    rows = await admin.fetch(
        """
        SELECT s.query, s.calls, s.total_exec_time, s.total_plan_time, s.rows,
               s.shared_blks_hit, s.shared_blks_read, s.temp_blks_written
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname = $1
        """,
        database,
    )
    per: dict[str, Counter[str]] = {}
    for r in rows:
        name = _query_name(r["query"])
        if name.startswith("other: ") and r["total_exec_time"] < 50:
            name = "other (small)"
        agg = per.setdefault(name, Counter())
        agg["calls"] += r["calls"]
        agg["exec_ms"] += r["total_exec_time"]
        agg["plan_ms"] += r["total_plan_time"]
        agg["rows"] += r["rows"]
        agg["shared_hit"] += r["shared_blks_hit"]
        agg["shared_read"] += r["shared_blks_read"]
        agg["temp_written"] += r["temp_blks_written"]
    total = sum(v["exec_ms"] for v in per.values())
    planning = sum(v["plan_ms"] for v in per.values())
    ordered = dict(sorted(per.items(), key=lambda kv: -kv[1]["exec_ms"]))
    return {
        "db_exec_s": round(total / 1000, 3),
        "db_plan_s": round(planning / 1000, 3),
        "by_query": {
            k: {kk: round(vv, 1) if isinstance(vv, float) else vv for kk, vv in v.items()}
            for k, v in ordered.items()
        },
    }


async def fingerprint(conn: Any) -> dict[str, Any]:
    """What a sweep wrote, compactly: counts and order-free hashes of the keys."""

    async def rows(sql: str) -> dict[str, list[str]]:
        return {
            ":".join(str(v) for v in list(r.values())[:-2]): [str(r["n"]), str(r["h"])]
            for r in await conn.fetch(sql)
        }

    return {
        "scenario_notification": await rows(
            "SELECT rule_name, count(*) AS n, coalesce(sum(hashtextextended(dedup_key, 0)), 0) AS h "
            "FROM scenario_notification GROUP BY 1 ORDER BY 1"
        ),
        "scenario_decision": await rows(
            "SELECT rule_name, outcome, count(*) AS n, coalesce(sum(hashtextextended(dedup_key, 0)), 0) AS h "
            "FROM scenario_decision GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        "push_notification": await rows(
            "SELECT scenario_type, status, count(*) AS n, "
            "coalesce(sum(hashtextextended(idempotency_key || title || body, 0)), 0) AS h "
            "FROM push_notification GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        "achievement": await rows(
            "SELECT milestone, awarded_by, count(*) AS n, "
            "coalesce(sum(hashtextextended(mentor_id::text || threshold::text || period, 0)), 0) AS h "
            "FROM achievement GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        "scenario_cooldown": await rows(
            "SELECT scenario_type, count(*) AS n, "
            "coalesce(sum(hashtextextended(mentor_id::text || last_rule_name, 0)), 0) AS h "
            "FROM scenario_cooldown GROUP BY 1 ORDER BY 1"
        ),
    }


async def _sample_contents(conn: Any, keys: list[str]) -> dict[str, Any]:
    rows = await conn.fetch(
        """
        SELECT n.dedup_key, n.context, p.title, p.body, d.inputs
        FROM scenario_notification n
        LEFT JOIN push_notification p ON p.idempotency_key = n.dedup_key
        LEFT JOIN scenario_decision d ON d.dedup_key = n.dedup_key AND d.outcome = 'sent'
        WHERE n.dedup_key = ANY($1::text[])
        """,
        keys,
    )
    return {r["dedup_key"]: (r["context"], r["title"], r["body"], r["inputs"]) for r in rows}


# --- phases -----------------------------------------------------------------------------------


async def populate(
    admin: asyncpg.Connection[Any], cluster: LocalCluster, args: argparse.Namespace, timings: Timings
) -> dict[str, Any]:
    shape = Shape(args.mentors, args.activities_per_mentor, args.certifications, args.as_of, args.seed)
    meta = {
        "mentors": shape.mentors,
        "activities_per_mentor": shape.activities_per_mentor,
        "certifications": shape.certifications,
        "as_of": shape.as_of.isoformat(),
        "seed": shape.seed,
        "ledger_age_days": args.ledger_age_days,
    }
    if args.reuse and await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", POP_DB):
        conn = await connect(cluster.url(POP_DB))
        try:
            stored = await conn.fetchval("SELECT to_regclass('bench_meta') IS NOT NULL")
            if stored and await conn.fetchval("SELECT meta FROM bench_meta") == meta:
                log(f"reusing populated database {POP_DB}")
                return {"reused": True, **(await counts(conn))}
        finally:
            await conn.close()
    await _drop(admin, POP_DB)
    await admin.execute(f'CREATE DATABASE "{POP_DB}"')
    conn = await connect(cluster.url(POP_DB), application_name="bench generator")
    try:
        with timings.step("gen: migrate"):
            await migrate(conn)
        data = await generate(conn, shape, timings)
        with timings.step("gen: rules first seen + milestone ledger (engine baseline)"):
            seen_at = shape.as_of - dt.timedelta(days=args.ledger_age_days)
            await ensure_rules_seen(conn, default_rules(), seen_at, set())
            await conn.execute("VACUUM (ANALYZE) achievement")
            await conn.execute("VACUUM (ANALYZE) scenario_rule_state")
            await ensure_all_visible(conn, (*LOADED_TABLES, "achievement"))
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


def _plans_folder(mentors: int) -> Path:
    folder = RESULTS_DIR / f"plans-{mentors}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_profile(profiler: cProfile.Profile, out_file: Path) -> None:
    with open(out_file, "w", encoding="utf-8") as fh:
        pstats.Stats(profiler, stream=fh).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=fh).sort_stats("cumulative").print_stats(60)


def _sweep_record(label: str, res: SweepResult, peak: float | None, before: float | None) -> dict[str, Any]:
    return {
        "label": label,
        "as_of": res.as_of.isoformat(),
        "seconds": round(res.seconds, 3),
        "mentors": res.mentors,
        "sent": res.sent,
        "per_rule": {rule: dict(sorted(c.items())) for rule, c in sorted(res.per_rule.items())},
        "rss_before_mb": None if before is None else round(before, 1),
        "peak_rss_mb": None if peak is None else round(peak, 1),
    }


async def run_sweeps(
    admin: asyncpg.Connection[Any], cluster: LocalCluster, args: argparse.Namespace, rules: Rules
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    url = cluster.url(SWEEP_DB)
    if args.auto_explain_ms is not None:
        for stmt in (
            "session_preload_libraries = 'auto_explain'",
            f"auto_explain.log_min_duration = '{args.auto_explain_ms}ms'",
            "auto_explain.log_analyze = on",
            "auto_explain.log_buffers = on",
            "auto_explain.log_timing = on",
        ):
            await admin.execute(f'ALTER DATABASE "{SWEEP_DB}" SET {stmt}')
    kwargs = {} if args.sweep_batch is None else {"sweep_batch": args.sweep_batch}
    pool = await create_pool(url, min_size=1, max_size=2, application_name="bench sweep")
    first_fp: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    try:
        engine = Engine(pool, rules, **kwargs)
        async with pool.acquire() as conn:
            blocks = await _prewarm(conn)
        log(f"prewarmed {blocks * 8 // 1024} MiB of {SWEEP_DB}")
        later = args.as_of + dt.timedelta(minutes=15)
        plan: list[tuple[str, dt.datetime, dt.datetime | None]] = [
            ("first", args.as_of, None),
            ("second (same as_of)", args.as_of, None),
        ]
        if INCREMENTAL:
            # What the daemon runs between full sweeps; then a full sweep at the same instant,
            # which must find nothing new if the incremental one missed nothing.
            plan += [
                ("third (+15 min, incremental)", later, args.as_of),
                ("fourth (+15 min, full)", later, None),
            ]
        else:
            plan += [("third (+15 min)", later, None)]
        for label, at, since in plan:
            quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_below, args.quiet_timeout)
            await _stats_reset(admin)
            gc.collect()
            reset_peak_rss()
            before = rss_mb()
            load = os.getloadavg()
            cpu0 = time.process_time()
            log(f"sweep {label} at {at.isoformat()} …")
            profiler = cProfile.Profile() if args.profile and label == "first" else None
            if profiler is not None:
                profiler.enable()
            if since is not None:
                res = await engine.run_scheduled_evaluation(at, since=since)
            else:
                res = await engine.run_scheduled_evaluation(at)
            peak = peak_rss_mb()
            if profiler is not None:
                profiler.disable()
                out_file = RESULTS_DIR / f"profile-first-sweep-{args.mentors}.txt"
                _write_profile(profiler, out_file)
                log(f"profile written to {out_file}")
            record = _sweep_record(label, res, peak, before)
            record["mode"] = "full" if since is None else "incremental"
            record["client_cpu_s"] = round(time.process_time() - cpu0, 3)
            record["loadavg_before"] = [round(x, 2) for x in load]
            record["quiet"] = quiet
            record["db"] = await _stats(admin, SWEEP_DB)
            record["client_s"] = round(res.seconds - record["db"]["db_exec_s"] - record["db"]["db_plan_s"], 3)
            out.append(record)
            log(
                f"sweep {label}: {res.seconds:.2f} s, {res.mentors} mentors, {res.sent} sent, "
                f"peak RSS {peak:.0f} MB, db {record['db']['db_exec_s']:.2f} s"
            )
            if label == "first":
                async with pool.acquire() as conn:
                    first_fp = await fingerprint(conn)
    finally:
        await pool.close()
    return out, first_fp


async def run_baseline(
    admin: asyncpg.Connection[Any],
    cluster: LocalCluster,
    rules: Rules,
    args: argparse.Namespace,
    engine_fp: dict[str, Any],
) -> dict[str, Any]:
    as_of = args.as_of
    conn = await connect(cluster.url(BASELINE_DB), application_name="bench baseline")
    try:
        blocks = await _prewarm(conn)
        log(f"prewarmed {blocks * 8 // 1024} MiB of {BASELINE_DB}")
        await _stats_reset(admin)
        steps: dict[str, float] = {}
        quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_below, args.quiet_timeout)
        log("baseline (hand-written set-based SQL) …")
        load = os.getloadavg()
        started = time.perf_counter()
        async with conn.transaction():
            for label, sql in baseline.statements(rules, as_of):
                t0 = time.perf_counter()
                await conn.execute(sql)
                steps[label] = round(time.perf_counter() - t0, 3)
        seconds = time.perf_counter() - started
        log(f"baseline: {seconds:.2f} s")
        fp = await fingerprint(conn)
        per_rule = {
            r["rule_name"]: {"sent": r["sent"], **dict(r["others"])}
            for r in await conn.fetch(
                """
                SELECT rule_name, count(*) FILTER (WHERE outcome = 'sent') AS sent,
                       coalesce(jsonb_object_agg(outcome, n) FILTER (WHERE outcome <> 'sent'), '{}') AS others
                FROM (SELECT rule_name, outcome, count(*) AS n FROM scenario_decision GROUP BY 1, 2) d
                GROUP BY rule_name
                """
            )
        }
        db = await _stats(admin, BASELINE_DB)
        keys = [
            r["dedup_key"]
            for r in await conn.fetch(
                "SELECT dedup_key FROM scenario_notification ORDER BY hashtext(dedup_key) LIMIT 3000"
            )
        ]
        mine = await _sample_contents(conn, keys)
    finally:
        await conn.close()
    engine_conn = await connect(cluster.url(SWEEP_DB))
    try:
        theirs = await _sample_contents(engine_conn, keys)
    finally:
        await engine_conn.close()
    mismatches = [k for k in keys if mine.get(k) != theirs.get(k)]
    same = {table: fp.get(table) == engine_fp.get(table) for table in engine_fp}
    return {
        "seconds": round(seconds, 3),
        "loadavg_before": [round(x, 2) for x in load],
        "quiet": quiet,
        "steps": steps,
        "db": db,
        "fingerprint": fp,
        "same_rows_as_first_sweep": same,
        "notifications_per_rule": {k: int(v[0]) for k, v in fp["scenario_notification"].items()},
        "decisions_per_rule": per_rule,
        "content_sample": {
            "checked": len(keys),
            "mismatches": len(mismatches),
            "example": None
            if not mismatches
            else {
                "key": mismatches[0],
                "baseline": mine.get(mismatches[0]),
                "engine": theirs.get(mismatches[0]),
            },
        },
    }


async def _middle_batch(conn: Any, size: int) -> list[uuid.UUID]:
    total = await conn.fetchval("SELECT count(*) FROM peer_mentor WHERE status = 'active'")
    rows = await conn.fetch(
        "SELECT id FROM peer_mentor WHERE status = 'active' ORDER BY id OFFSET $1 LIMIT $2",
        max(total // 2 - size // 2, 0),
        size,
    )
    return [r["id"] for r in rows]


async def explain_queries(
    conn: Any, rules: Rules, as_of: dt.datetime, batch: int, folder: Path, state: str
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of each sweep query for one batch of mentors (custom plans)."""
    mentors = await _middle_batch(conn, batch)
    todo: list[tuple[str, tuple[Any, ...]]] = [("active_mentor_batch", (mentors[0], batch))]
    for rule in rules.enabled():
        if isinstance(rule, InactivityRule):
            todo.append(("inactivity_candidates", inactivity.query_args(rule, mentors, as_of)))
        elif isinstance(rule, MilestoneRule):
            todo.append(("milestone_candidates", milestone.query_args(rule, mentors, as_of)))
        else:
            todo.append(("certification_candidates", certification.query_args(rule, mentors, as_of)))
    todo.append(("policy_inputs", (mentors, "inactivity", as_of)))
    if INCREMENTAL and state == "steady-state":
        todo.append(("due_mentors", due_mentors_args(rules, as_of, as_of + dt.timedelta(minutes=15))))
    out: dict[str, Any] = {}
    for name, qargs in todo:
        sql = query(name)
        try:
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, SETTINGS) " + sql, *qargs)
        except asyncpg.PostgresError as exc:  # the engine's query changed under the benchmark
            out[name] = f"error: {exc}"
            continue
        text = "\n".join(r[0] for r in rows)
        text = re.sub(r"'\{[0-9a-f,-]{200,}\}'", f"'{{…{len(mentors)} uuids…}}'", text)
        (folder / f"{state}-{name}.txt").write_text(
            f"-- {name}, {state}, batch of {len(mentors)} mentors, as_of {as_of.isoformat()}\n{text}\n",
            encoding="utf-8",
        )
        m = re.search(r"Execution Time: ([\d.]+) ms", text)
        out[name] = float(m.group(1)) if m else None
    return out


async def run_per_mentor(cluster: LocalCluster, rules: Rules, args: argparse.Namespace) -> dict[str, Any]:
    as_of, sample = args.as_of, args.per_mentor_sample
    pool = await create_pool(cluster.url(SINGLE_DB), min_size=1, max_size=2, application_name="bench single")
    try:
        engine = Engine(pool, rules)
        async with pool.acquire() as conn:
            blocks = await _prewarm(conn)
            log(f"prewarmed {blocks * 8 // 1024} MiB of {SINGLE_DB}")
            active = await conn.fetchval("SELECT count(*) FROM peer_mentor WHERE status = 'active'")
            ids = [
                r["id"]
                for r in await conn.fetch(
                    "SELECT id FROM peer_mentor WHERE status = 'active' "
                    "ORDER BY hashtext(id::text || 'bench-sample') LIMIT $1",
                    sample + 20,
                )
            ]
        warm, ids = ids[:20], ids[20:]
        for mentor in warm:  # prepared statements, caches; not timed
            await engine.evaluate_mentor(mentor, as_of=as_of)
        passes: dict[str, Any] = {}
        # Pass 1 in the first-sweep state (lots to send); pass 2 over the same mentors at the
        # same instant is their steady state (nothing new), to compare with the second sweep.
        for label in ("first", "steady"):
            outcomes: Counter[str] = Counter()
            quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_below, args.quiet_timeout)
            log(f"per-mentor ({label}): evaluate_mentor × {len(ids)} …")
            started = time.perf_counter()
            for mentor in ids:
                for o in await engine.evaluate_mentor(mentor, as_of=as_of):
                    key = "duplicate" if o.duplicate else o.decision.outcome
                    outcomes[f"{o.candidate.rule_name}:{key}"] += 1
            seconds = time.perf_counter() - started
            per = seconds / max(len(ids), 1)
            log(f"per-mentor ({label}): {seconds:.2f} s for {len(ids)} ({per * 1000:.2f} ms each)")
            passes[label] = {
                "seconds": round(seconds, 3),
                "ms_per_mentor": round(per * 1000, 3),
                "extrapolated_active_s": round(per * active, 1),
                "outcomes": dict(sorted(outcomes.items())),
                "quiet": quiet,
            }
    finally:
        await pool.close()
    return {"sample": len(ids), "active_mentors": active, **passes}


# --- report -------------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def summarize(result: dict[str, Any]) -> str:
    sweeps = result["sweeps"]
    first = sweeps[0]
    peak = max((s["peak_rss_mb"] or 0) for s in sweeps)
    bl = result.get("baseline")
    pm = result.get("per_mentor")
    at_scale = result["params"]["mentors"] >= 1_000_000
    rows: list[tuple[str, str, str, str]] = [
        (f"first sweep (full): {first['sent']} sent", f"{first['seconds']:.2f} s", "", "")
    ]
    for s in sweeps[1:]:
        steady = s["sent"] == 0 or s["label"].startswith("third")
        rows.append(
            (
                f"{s['label']} sweep: {s['sent']} sent",
                f"{s['seconds']:.2f} s",
                f"≤ {STEADY_BAR_S} s" if steady else "",
                (_verdict(s["seconds"] <= STEADY_BAR_S) if at_scale else "(1M bar)") if steady else "",
            )
        )
    rows.append(
        (
            "peak RSS of the process during a sweep",
            f"{peak:.0f} MB",
            f"≤ {RSS_BAR_MB:.0f} MB",
            _verdict(peak <= RSS_BAR_MB),
        )
    )
    if bl:
        ratio = first["seconds"] / bl["seconds"]
        same = all(bl["same_rows_as_first_sweep"].values()) and bl["content_sample"]["mismatches"] == 0
        rows.append(("hand-written set-based SQL baseline", f"{bl['seconds']:.2f} s", "", ""))
        rows.append(
            (
                "first sweep / baseline",
                f"{ratio:.2f}×",
                f"≤ {BASELINE_RATIO_BAR}×",
                _verdict(ratio <= BASELINE_RATIO_BAR),
            )
        )
        rows.append(("baseline wrote the same rows", "yes" if same else "NO", "yes", _verdict(same)))
    if pm:
        for label, sweep in (("first", first), ("steady", sweeps[1])):
            p1 = pm[label]
            ratio = p1["extrapolated_active_s"] / sweep["seconds"]
            rows.append(
                (f"evaluate_mentor ({label}), {pm['sample']} sample", f"{p1['ms_per_mentor']:.2f} ms", "", "")
            )
            rows.append(
                ("  extrapolated to all active mentors", f"{p1['extrapolated_active_s']:.0f} s", "", "")
            )
            rows.append(
                (
                    f"  per-mentor / {sweep['label']} sweep",
                    f"{ratio:.0f}×",
                    f"≥ {PER_MENTOR_RATIO_BAR:.0f}×",
                    _verdict(ratio >= PER_MENTOR_RATIO_BAR),
                )
            )
    w = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{w}}  {'value':>12}  {'bar':>10}  verdict"]
    lines += [f"{a:<{w}}  {b:>12}  {c:>10}  {d}" for a, b, c, d in rows]
    lines.append("")
    rules = sorted({r for s in sweeps for r in s["per_rule"]})
    outcomes = sorted({o for s in sweeps for c in s["per_rule"].values() for o in c})
    lines.append("per-rule outcomes: " + ", ".join(outcomes))
    for s in sweeps:
        for r in rules:
            c = s["per_rule"].get(r, {})
            lines.append(f"  {s['label']:<30} {r:<22} " + "  ".join(f"{o}={c.get(o, 0)}" for o in outcomes))
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any]) -> None:
    timings = Timings()
    result["timings"] = timings.steps
    rules = default_rules()
    admin = await _admin(cluster)
    try:
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        result["data"] = await populate(admin, cluster, args, timings)
        log(f"data: {result['data']}")
        with timings.step("clone databases"):
            for name in (SWEEP_DB, BASELINE_DB, SINGLE_DB):
                await _clone(admin, name, POP_DB)
        log(f"disk free /var/tmp: {disk_free_gib()} GiB")

        sweeps, first_fp = await run_sweeps(admin, cluster, args, rules)
        result["sweeps"] = sweeps
        result["first_sweep_fingerprint"] = first_fp

        if not args.skip_baseline:
            result["baseline"] = await run_baseline(admin, cluster, rules, args, first_fp)
            await _drop(admin, BASELINE_DB)

        folder = _plans_folder(args.mentors)
        batch = args.sweep_batch or 20_000
        if not args.no_explain:
            log("EXPLAIN (ANALYZE, BUFFERS) of the sweep queries …")
            result["explain_ms"] = {}
            for db, state, at in (
                (SINGLE_DB, "before-first-sweep", args.as_of),
                (SWEEP_DB, "steady-state", args.as_of),
            ):
                conn = await connect(cluster.url(db))
                try:
                    result["explain_ms"][state] = await explain_queries(conn, rules, at, batch, folder, state)
                finally:
                    await conn.close()
            log(f"plans written to {folder}")

        if not args.skip_per_mentor:
            result["per_mentor"] = await run_per_mentor(cluster, rules, args)
    finally:
        if args.data_dir is not None:  # keep only the populated database for --reuse
            for name in (SWEEP_DB, BASELINE_DB, SINGLE_DB):
                with contextlib.suppress(Exception):
                    await _drop(admin, name)
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {**BENCH_PG_SETTINGS, **dict(args.pg_setting)}
    log(f"starting a private cluster ({'kept in ' + str(args.data_dir) if args.data_dir else 'throwaway'})")
    started = time.perf_counter()
    cluster = start_private_cluster(
        data_dir=args.data_dir, bin_dir=args.pg_bin, settings=settings, owner_pid=os.getpid()
    )
    result: dict[str, Any] = {
        "benchmark": "sweep",
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "params": {
            "mentors": args.mentors,
            "activities_per_mentor": args.activities_per_mentor,
            "certifications": args.certifications,
            "as_of": args.as_of.isoformat(),
            "seed": args.seed,
            "ledger_age_days": args.ledger_age_days,
            "sweep_batch": args.sweep_batch,
            "per_mentor_sample": args.per_mentor_sample,
            "auto_explain_ms": args.auto_explain_ms,
            "profile": args.profile,
        },
        "machine": machine_facts(server_version(cluster.bin_dir)),
        "pg_settings": settings,
        "rules": default_rules().model_dump(mode="json"),
    }
    try:
        asyncio.run(run(cluster, args, result))
    finally:
        cluster.close()
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        leftovers = [p for p in postgres_processes() if str(cluster.data_dir) in p]
        result["orphan_postgres_processes"] = leftovers
        output = args.output or RESULTS_DIR / f"sweep-{args.mentors}.json"
        if "sweeps" in result:
            write_json(output, result)
            log(f"results written to {output}")
    if "sweeps" not in result:
        return 1
    print()
    print(summarize(result))
    print(f"\ntotal {result['total_seconds']} s; steps: {result['timings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
