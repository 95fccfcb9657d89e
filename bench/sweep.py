"""Sweep benchmark (docs/ARCHITECTURE.md, "Bars"): the scheduled sweep over a large population.

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
import os
import pstats
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench import baseline
from bench.harness import statements, written
from bench.harness.cluster import (
    BENCH_PG_SETTINGS,
    Conn,
    LocalCluster,
    admin,
    clone_database,
    connect,
    create_pool,
    drop_database,
    leftover_postgres,
    prewarm,
    private_cluster,
    server_version,
)
from bench.harness.engine import (
    Engine,
    Rules,
    SweepResult,
    benchmark_rules,
    bound_args,
    candidate_query,
    due_queries,
    query,
)
from bench.harness.population import DEFAULT_AS_OF, POP_DB, Shape, populate
from bench.harness.procfs import peak_rss_mb, reset_peak_rss, rss_mb
from bench.harness.report import (
    RESULTS_DIR,
    Timings,
    disk_free_gib,
    log,
    machine_facts,
    verdict,
    wait_for_quiet,
    write_json,
)

SWEEP_DB = "bench_sweep"
BASELINE_DB = "bench_baseline"
BASELINE_AFTER_DB = "bench_baseline_after"  # the yardstick's second run, right after the first sweep
SINGLE_DB = "bench_single"
STEADY_BAR_S = 3.0
BASELINE_RATIO_BAR = 1.0  # issue 18: the engine no slower than the hand-written SQL
PER_MENTOR_RATIO_BAR = 50.0
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


def _diagnostic_args(p: argparse.ArgumentParser) -> None:
    """Options that change how the run is measured, not what it measures."""
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
        help="diagnostics: cProfile the first and the steady (second) sweep (inflates their "
        "time) into the results directory",
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
    p.add_argument(
        "--sweep-lanes", type=int, default=None, help="Engine full-sweep lanes (default: engine's, 2)"
    )
    p.add_argument("--per-mentor-sample", type=int, default=10_000)
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-per-mentor", action="store_true")
    p.add_argument("--no-explain", action="store_true", help="skip the EXPLAIN (ANALYZE) captures")
    _diagnostic_args(p)
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
    p.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where the JSON, the plans and a profile go (make bench-quick: a scratch directory)",
    )
    p.add_argument("--output", type=Path, default=None, help="default: <results-dir>/sweep-<mentors>.json")
    args = p.parse_args(argv)
    if args.certifications is None:
        args.certifications = args.mentors
    if args.reuse and args.data_dir is None:
        p.error("--reuse needs --data-dir")
    return args


# --- phases -----------------------------------------------------------------------------------


def _plans_folder(results: Path, mentors: int) -> Path:
    folder = results / f"plans-{mentors}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_profile(profiler: cProfile.Profile, out_file: Path) -> None:
    out_file.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out_file.with_suffix(".prof"))  # for pstats: callers, callees
    with open(out_file, "w", encoding="utf-8") as fh:
        pstats.Stats(profiler, stream=fh).sort_stats("tottime").print_stats(40)
        pstats.Stats(profiler, stream=fh).sort_stats("cumulative").print_stats(60)


def _sweep_record(label: str, res: SweepResult, peak: float | None, before: float | None) -> dict[str, Any]:
    return {
        "label": label,
        "as_of": res.as_of.isoformat(),
        "seconds": round(res.seconds, 3),  # the outcome resolution included
        "resolve_seconds": round(res.resolve_seconds, 3),
        "mentors": res.mentors,
        "sent": res.sent,
        "per_rule": {rule: dict(sorted(c.items())) for rule, c in sorted(res.per_rule.items())},
        "rss_before_mb": None if before is None else round(before, 1),
        "peak_rss_mb": None if peak is None else round(peak, 1),
    }


async def _auto_explain(admin: asyncpg.Connection[Any], min_ms: int) -> None:
    """Plans of the sweep's statements slower than ``min_ms`` into the server log."""
    for stmt in (
        "session_preload_libraries = 'auto_explain'",
        f"auto_explain.log_min_duration = '{min_ms}ms'",
        "auto_explain.log_analyze = on",
        "auto_explain.log_buffers = on",
        "auto_explain.log_timing = on",
    ):
        await admin.execute(f'ALTER DATABASE "{SWEEP_DB}" SET {stmt}')


def sweep_plan(as_of: dt.datetime) -> list[tuple[str, dt.datetime, dt.datetime | None]]:
    """(label, as_of, since) of the measured sweeps: two full ones at ``as_of`` (the second is
    the steady state), then 15 minutes later the incremental one the daemon runs between full
    sweeps and a full one at the same instant, which must find nothing the incremental missed."""
    later = as_of + dt.timedelta(minutes=15)
    return [
        ("first", as_of, None),
        ("second (same as_of)", as_of, None),
        ("third (+15 min, incremental)", later, as_of),
        ("fourth (+15 min, full)", later, None),
    ]


async def _one_sweep(
    engine: Engine,
    admin: asyncpg.Connection[Any],
    args: argparse.Namespace,
    label: str,
    at: dt.datetime,
    since: dt.datetime | None,
) -> dict[str, Any]:
    """One measured sweep: wall time, outcomes, peak RSS, CPU, database time per query."""
    quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_below, args.quiet_timeout)
    await statements.stats_reset(admin)
    gc.collect()
    reset_peak_rss()
    before = rss_mb()
    load = os.getloadavg()
    cpu0 = time.process_time()
    log(f"sweep {label} at {at.isoformat()} …")
    # The first sweep (everything to send) and the steady one (nothing to send).
    profiled = label.split(" ", 1)[0] if label.startswith(("first", "second")) else None
    profiler = cProfile.Profile() if args.profile and profiled is not None else None
    if profiler is not None:
        profiler.enable()
    if since is not None:
        res = await engine.run_scheduled_evaluation(at, since=since)
    else:
        res = await engine.run_scheduled_evaluation(at)
    peak = peak_rss_mb()
    if profiler is not None:
        profiler.disable()
        name = "first" if profiled == "first" else "steady"
        out_file = args.results_dir / f"profile-{name}-sweep-{args.mentors}.txt"
        _write_profile(profiler, out_file)
        log(f"profile written to {out_file}")
    record = _sweep_record(label, res, peak, before)
    record["mode"] = "full" if since is None else "incremental"
    record["client_cpu_s"] = round(time.process_time() - cpu0, 3)
    record["loadavg_before"] = [round(x, 2) for x in load]
    record["quiet"] = quiet
    record["db"] = await statements.stats(admin, SWEEP_DB)
    record["client_s"] = round(res.seconds - record["db"]["db_exec_s"] - record["db"]["db_plan_s"], 3)
    log(
        f"sweep {label}: {res.seconds:.2f} s, {res.mentors} mentors, {res.sent} sent, "
        f"peak RSS {peak or 0:.0f} MB, db {record['db']['db_exec_s']:.2f} s"
    )
    return record


AfterFirst = Callable[[], Awaitable[None]]


async def run_sweeps(
    admin: asyncpg.Connection[Any],
    cluster: LocalCluster,
    args: argparse.Namespace,
    rules: Rules,
    after_first: AfterFirst | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The sweeps of ``sweep_plan`` on their clone; also what the first one wrote.
    ``after_first`` runs right after the first sweep (the yardstick's second run)."""
    if args.auto_explain_ms is not None:
        await _auto_explain(admin, args.auto_explain_ms)
    kwargs = {} if args.sweep_batch is None else {"sweep_batch": args.sweep_batch}
    if args.sweep_lanes is not None:
        kwargs["sweep_lanes"] = args.sweep_lanes
    # The sweep's connection, its lanes (or its reader) and the one a lane leaves free.
    lanes = args.sweep_lanes or 2
    pool = await create_pool(
        cluster.url(SWEEP_DB), min_size=1, max_size=max(3, lanes + 1), application_name="bench sweep"
    )
    first_fp: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    try:
        engine = Engine(pool, rules, **kwargs)
        async with pool.acquire() as conn:
            blocks = await prewarm(conn)
        log(f"prewarmed {blocks * 8 // 1024} MiB of {SWEEP_DB}")
        for label, at, since in sweep_plan(args.as_of):
            out.append(await _one_sweep(engine, admin, args, label, at, since))
            if label == "first":
                async with pool.acquire() as conn:
                    first_fp = await written.fingerprint(conn)
                if after_first is not None:
                    await after_first()
    finally:
        await pool.close()
    return out, first_fp


async def _baseline_sql(conn: Conn, rules: Rules, as_of: dt.datetime) -> tuple[float, dict[str, float]]:
    """The hand-written statements in one transaction: total and per-step seconds."""
    steps: dict[str, float] = {}
    started = time.perf_counter()
    async with conn.transaction():
        for label, sql in baseline.statements(rules, as_of):
            t0 = time.perf_counter()
            await conn.execute(sql)
            steps[label] = round(time.perf_counter() - t0, 3)
    return time.perf_counter() - started, steps


def _content_check(keys: list[str], mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    mismatches = [k for k in keys if mine.get(k) != theirs.get(k)]
    example = None
    if mismatches:
        key = mismatches[0]
        example = {"key": key, "baseline": mine.get(key), "engine": theirs.get(key)}
    return {"checked": len(keys), "mismatches": len(mismatches), "example": example}


async def time_baseline(
    admin: asyncpg.Connection[Any],
    cluster: LocalCluster,
    rules: Rules,
    args: argparse.Namespace,
    database: str,
) -> dict[str, Any]:
    """One timed run of ``bench.baseline`` on the clone ``database``."""
    conn = await connect(cluster.url(database), application_name="bench baseline")
    try:
        blocks = await prewarm(conn)
        log(f"prewarmed {blocks * 8 // 1024} MiB of {database}")
        await statements.stats_reset(admin)
        quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_below, args.quiet_timeout)
        log(f"baseline (hand-written set-based SQL) on {database} …")
        load = os.getloadavg()
        seconds, steps = await _baseline_sql(conn, rules, args.as_of)
        log(f"baseline: {seconds:.2f} s")
        db = await statements.stats(admin, database)
    finally:
        await conn.close()
    return {
        "seconds": round(seconds, 3),
        "loadavg_before": [round(x, 2) for x in load],
        "quiet": quiet,
        "steps": steps,
        "db": db,
    }


async def run_baseline(
    admin: asyncpg.Connection[Any],
    cluster: LocalCluster,
    rules: Rules,
    args: argparse.Namespace,
    engine_fp: dict[str, Any],
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The yardstick's runs (``runs``: one just before the first sweep, one just after it, on
    clones of their own, so that the ratio is not one side's luck on a shared machine), and
    whether it wrote what the first sweep wrote."""
    conn = await connect(cluster.url(BASELINE_DB), application_name="bench baseline")
    try:
        fp = await written.fingerprint(conn)
        per_rule = await written.decisions_per_rule(conn)
        keys = await written.sample_keys(conn, 3000)
        mine = await written.sample_contents(conn, keys)
    finally:
        await conn.close()
    engine_conn = await connect(cluster.url(SWEEP_DB))
    try:
        theirs = await written.sample_contents(engine_conn, keys)
    finally:
        await engine_conn.close()
    first = runs[0]
    return {
        **first,
        "seconds": round(sum(r["seconds"] for r in runs) / len(runs), 3),
        "runs_s": [r["seconds"] for r in runs],
        "runs": runs,
        "fingerprint": written.for_the_record(fp),
        "same_rows_as_first_sweep": {table: fp.get(table) == engine_fp.get(table) for table in engine_fp},
        "notifications_per_rule": {k: int(v[0]) for k, v in fp["scenario_notification"].items()},
        "decisions_per_rule": per_rule,
        "content_sample": _content_check(keys, mine, theirs),
    }


async def _middle_batch(conn: Conn, size: int) -> list[uuid.UUID]:
    total = await conn.fetchval("SELECT count(*) FROM public.peer_mentor WHERE status = 'active'")
    rows = await conn.fetch(
        "SELECT id FROM public.peer_mentor WHERE status = 'active' ORDER BY id OFFSET $1 LIMIT $2",
        max(total // 2 - size // 2, 0),
        size,
    )
    return [r["id"] for r in rows]


async def explain_queries(
    conn: Conn, rules: Rules, as_of: dt.datetime, batch: int, folder: Path, state: str
) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of each sweep query for one batch of mentors (custom plans)."""
    mentors = await _middle_batch(conn, batch)
    todo: list[tuple[str, tuple[Any, ...]]] = [
        ("active_mentor_batch", bound_args("active_mentor_batch", after=mentors[0], batch_size=batch))
    ]
    todo += [candidate_query(rule, mentors, as_of) for rule in rules.enabled()]
    todo.append(
        (
            "policy_inputs",
            bound_args("policy_inputs", mentors=mentors, scenario_type="inactivity", as_of=as_of),
        )
    )
    if state == "steady-state":
        todo += due_queries(rules, as_of, as_of + dt.timedelta(minutes=15))
    out: dict[str, Any] = {}
    for name, qargs in todo:
        try:
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS, SETTINGS) " + query(name), *qargs)
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


async def explain_both(cluster: LocalCluster, rules: Rules, args: argparse.Namespace) -> dict[str, Any]:
    """The plans before the first sweep (the per-mentor clone) and in the steady state."""
    folder = _plans_folder(args.results_dir, args.mentors)
    batch = args.sweep_batch or 20_000
    log("EXPLAIN (ANALYZE, BUFFERS) of the sweep queries …")
    out: dict[str, Any] = {}
    for db, state in ((SINGLE_DB, "before-first-sweep"), (SWEEP_DB, "steady-state")):
        conn = await connect(cluster.url(db))
        try:
            out[state] = await explain_queries(conn, rules, args.as_of, batch, folder, state)
        finally:
            await conn.close()
    log(f"plans written to {folder}")
    return out


async def _sample_mentors(conn: Conn, n: int) -> tuple[int, list[uuid.UUID]]:
    """(active mentors, a deterministic sample of ``n`` of them)."""
    active: int = await conn.fetchval("SELECT count(*) FROM public.peer_mentor WHERE status = 'active'")
    rows = await conn.fetch(
        "SELECT id FROM public.peer_mentor WHERE status = 'active' "
        "ORDER BY hashtext(id::text || 'bench-sample') LIMIT $1",
        n,
    )
    return active, [r["id"] for r in rows]


async def _per_mentor_pass(
    engine: Engine, ids: list[uuid.UUID], active: int, label: str, args: argparse.Namespace
) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    quiet = await asyncio.to_thread(wait_for_quiet, args.quiet_below, args.quiet_timeout)
    log(f"per-mentor ({label}): evaluate_mentor × {len(ids)} …")
    started = time.perf_counter()
    for mentor in ids:
        for o in await engine.evaluate_mentor(mentor, as_of=args.as_of):
            key = "duplicate" if o.duplicate else o.decision.outcome
            outcomes[f"{o.candidate.rule_name}:{key}"] += 1
    seconds = time.perf_counter() - started
    per = seconds / max(len(ids), 1)
    log(f"per-mentor ({label}): {seconds:.2f} s for {len(ids)} ({per * 1000:.2f} ms each)")
    return {
        "seconds": round(seconds, 3),
        "ms_per_mentor": round(per * 1000, 3),
        "extrapolated_active_s": round(per * active, 1),
        "outcomes": dict(sorted(outcomes.items())),
        "quiet": quiet,
    }


async def run_per_mentor(cluster: LocalCluster, rules: Rules, args: argparse.Namespace) -> dict[str, Any]:
    """``Engine.evaluate_mentor`` over a sample, extrapolated to every active mentor."""
    pool = await create_pool(cluster.url(SINGLE_DB), min_size=1, max_size=2, application_name="bench single")
    try:
        engine = Engine(pool, rules)
        async with pool.acquire() as conn:
            blocks = await prewarm(conn)
            log(f"prewarmed {blocks * 8 // 1024} MiB of {SINGLE_DB}")
            active, ids = await _sample_mentors(conn, args.per_mentor_sample + 20)
        warm, ids = ids[:20], ids[20:]
        for mentor in warm:  # prepared statements, caches; not timed
            await engine.evaluate_mentor(mentor, as_of=args.as_of)
        # Pass 1 in the first-sweep state (lots to send); pass 2 over the same mentors at the
        # same instant is their steady state (nothing new), to compare with the second sweep.
        passes = {
            label: await _per_mentor_pass(engine, ids, active, label, args) for label in ("first", "steady")
        }
    finally:
        await pool.close()
    return {"sample": len(ids), "active_mentors": active, **passes}


# --- report -------------------------------------------------------------------------------------

Row = tuple[str, str, str, str]


def _sweep_rows(sweeps: list[dict[str, Any]], at_scale: bool) -> list[Row]:
    first = sweeps[0]
    rows: list[Row] = [(f"first sweep (full): {first['sent']} sent", f"{first['seconds']:.2f} s", "", "")]
    for s in sweeps[1:]:
        steady = s["sent"] == 0 or s["label"].startswith("third")
        bar = f"≤ {STEADY_BAR_S} s" if steady else ""
        ok = (verdict(s["seconds"] <= STEADY_BAR_S) if at_scale else "(1M bar)") if steady else ""
        rows.append((f"{s['label']} sweep: {s['sent']} sent", f"{s['seconds']:.2f} s", bar, ok))
    peak = max((s["peak_rss_mb"] or 0) for s in sweeps)
    rows.append(
        (
            "peak RSS of the process during a sweep",
            f"{peak:.0f} MB",
            f"≤ {RSS_BAR_MB:.0f} MB",
            verdict(peak <= RSS_BAR_MB),
        )
    )
    return rows


def _baseline_rows(first: dict[str, Any], bl: dict[str, Any]) -> list[Row]:
    ratio = first["seconds"] / bl["seconds"]
    same = all(bl["same_rows_as_first_sweep"].values()) and bl["content_sample"]["mismatches"] == 0
    return [
        (
            "hand-written set-based SQL baseline (mean of the runs before and after the first sweep)",
            f"{bl['seconds']:.2f} s",
            "",
            "",
        ),
        (
            "first sweep / baseline",
            f"{ratio:.2f}×",
            f"≤ {BASELINE_RATIO_BAR}×",
            verdict(ratio <= BASELINE_RATIO_BAR),
        ),
        ("baseline wrote the same rows", "yes" if same else "NO", "yes", verdict(same)),
    ]


def _per_mentor_rows(sweeps: list[dict[str, Any]], pm: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for label, sweep in (("first", sweeps[0]), ("steady", sweeps[1])):
        p1 = pm[label]
        ratio = p1["extrapolated_active_s"] / sweep["seconds"]
        rows += [
            (f"evaluate_mentor ({label}), {pm['sample']} sample", f"{p1['ms_per_mentor']:.2f} ms", "", ""),
            ("  extrapolated to all active mentors", f"{p1['extrapolated_active_s']:.0f} s", "", ""),
            (
                f"  per-mentor / {sweep['label']} sweep",
                f"{ratio:.0f}×",
                f"≥ {PER_MENTOR_RATIO_BAR:.0f}×",
                verdict(ratio >= PER_MENTOR_RATIO_BAR),
            ),
        ]
    return rows


def _per_rule_lines(sweeps: list[dict[str, Any]]) -> list[str]:
    rules = sorted({r for s in sweeps for r in s["per_rule"]})
    outcomes = sorted({o for s in sweeps for c in s["per_rule"].values() for o in c})
    lines = ["per-rule outcomes: " + ", ".join(outcomes)]
    for s in sweeps:
        for r in rules:
            c = s["per_rule"].get(r, {})
            lines.append(f"  {s['label']:<30} {r:<22} " + "  ".join(f"{o}={c.get(o, 0)}" for o in outcomes))
    return lines


def summarize(result: dict[str, Any]) -> str:
    """The table of measures against the §6 bars, then the per-rule outcomes of each sweep."""
    sweeps = result["sweeps"]
    rows = _sweep_rows(sweeps, at_scale=result["params"]["mentors"] >= 1_000_000)
    if result.get("baseline"):
        rows += _baseline_rows(sweeps[0], result["baseline"])
    if result.get("per_mentor"):
        rows += _per_mentor_rows(sweeps, result["per_mentor"])
    w = max(len(r[0]) for r in rows)
    lines = [f"{'measure':<{w}}  {'value':>12}  {'bar':>10}  verdict"]
    lines += [f"{a:<{w}}  {b:>12}  {c:>10}  {d}" for a, b, c, d in rows]
    return "\n".join([*lines, "", *_per_rule_lines(sweeps)])


# --- main ------------------------------------------------------------------------------------


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any]) -> None:
    timings = Timings()
    result["timings"] = timings.steps
    rules = benchmark_rules()
    conn = await admin(cluster)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        shape = Shape(args.mentors, args.activities_per_mentor, args.certifications, args.as_of, args.seed)
        result["data"] = await populate(conn, cluster, shape, args.ledger_age_days, timings, reuse=args.reuse)
        log(f"data: {result['data']}")
        clones = (
            (SWEEP_DB, SINGLE_DB)
            if args.skip_baseline
            else (SWEEP_DB, BASELINE_DB, BASELINE_AFTER_DB, SINGLE_DB)
        )
        with timings.step("clone databases"):
            for name in clones:
                await clone_database(conn, name, POP_DB)
        log(f"disk free /var/tmp: {disk_free_gib()} GiB")
        # The yardstick runs just before and just after the first sweep (interleaved: the
        # machine is shared, and a ratio of two runs minutes apart measures the neighbours).
        runs: list[dict[str, Any]] = []
        if not args.skip_baseline:
            runs.append(await time_baseline(conn, cluster, rules, args, BASELINE_DB))

        async def after_first() -> None:
            if not args.skip_baseline:
                runs.append(await time_baseline(conn, cluster, rules, args, BASELINE_AFTER_DB))
                await drop_database(conn, BASELINE_AFTER_DB)

        result["sweeps"], result["first_sweep_fingerprint"] = await run_sweeps(
            conn, cluster, args, rules, after_first
        )
        if not args.skip_baseline:
            result["baseline"] = await run_baseline(
                conn, cluster, rules, args, result["first_sweep_fingerprint"], runs
            )
            await drop_database(conn, BASELINE_DB)
        result["first_sweep_fingerprint"] = written.for_the_record(result["first_sweep_fingerprint"])
        if not args.no_explain:
            result["explain_ms"] = await explain_both(cluster, rules, args)
        if not args.skip_per_mentor:
            result["per_mentor"] = await run_per_mentor(cluster, rules, args)
    finally:
        if args.data_dir is not None:  # keep only the populated database for --reuse
            for name in (SWEEP_DB, BASELINE_DB, BASELINE_AFTER_DB, SINGLE_DB):
                with contextlib.suppress(Exception):
                    await drop_database(conn, name)
        await conn.close()


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mentors": args.mentors,
        "activities_per_mentor": args.activities_per_mentor,
        "certifications": args.certifications,
        "as_of": args.as_of.isoformat(),
        "seed": args.seed,
        "ledger_age_days": args.ledger_age_days,
        "sweep_batch": args.sweep_batch,
        "sweep_lanes": args.sweep_lanes,
        "per_mentor_sample": args.per_mentor_sample,
        "auto_explain_ms": args.auto_explain_ms,
        "profile": args.profile,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {**BENCH_PG_SETTINGS, **dict(args.pg_setting)}
    log(f"starting a private cluster ({'kept in ' + str(args.data_dir) if args.data_dir else 'throwaway'})")
    started = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "sweep", "started_at": dt.datetime.now(dt.UTC).isoformat()}
    output = args.output or args.results_dir / f"sweep-{args.mentors}.json"
    cluster: LocalCluster | None = None
    try:
        with private_cluster(settings, data_dir=args.data_dir, bin_dir=args.pg_bin) as cluster:
            result["params"] = _params(args)
            result["machine"] = machine_facts(server_version(cluster.bin_dir))
            result["pg_settings"] = settings
            result["rules"] = benchmark_rules().model_dump(mode="json")
            asyncio.run(run(cluster, args, result))
    finally:
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        if cluster is not None:
            result["orphan_postgres_processes"] = leftover_postgres(cluster)
        if "sweeps" in result:  # also when a later phase failed
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
