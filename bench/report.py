"""Outcomes report benchmark: ``build_report`` over 90 days of decisions at a million mentors.

    .venv/bin/python -m bench.report                     # 1M mentors (a few minutes to generate)
    .venv/bin/python -m bench.report --mentors 100000    # quick run

Target: ``build_report`` over the full 90-day period in ≤ 2 s (best and median of 5).

What it does, in one process that owns a private PostgreSQL cluster:

1. starts a cluster with benchmark settings, migrates a database and generates, in SQL
   (generate_series, triggers and foreign keys bypassed for the load), the population and
   90 days of the write path's rows:
   * mentors in 20 organisations, one certification each (expiries spread over ±1 year
     around ``as_of``, 5 % renewed in time, 2.5 % renewed late);
   * three rules (inactivity, milestone, certification expiry); per rule and week about 5 % of
     the mentors get a decision (``--weekly-share``), distinct mentors within a week; the
     inactivity rule changes its holdout salt after six weeks (a second experiment);
   * of the decisions 8 % are suppressed (opted out 2 %, cooldown 4 %, daily cap 1 %, mentor
     not active 1 %); of the rest a deterministic 10 % are held out (a hash of salt and
     mentor), the others sent;
   * as the write path records them (notifications.sql): about 15 % of the candidates were
     first suppressed (cooldown or daily cap) a day before they were sent or held out, and
     those earlier rows have ``final = false``; every other row is its candidate's final one;
   * 50,000 milestone 'baseline' rows (no-flood bookkeeping, not candidates);
   * one push per sent notification, with the decision's organisation and experiment and
     created at the decision's instant (93 % accepted, 3 % failed, 1 % dead, 1 % cancelled,
     2 % still pending), one outcome row per sent or held-out decision (pending within the
     last 14 days, else achieved for 35 % of the treated and 30 % of the holdout);
   then VACUUM ANALYZE, as autovacuum would have done;
2. times ``build_report`` as ``scenario-engine report`` runs it, on a pool of
   ``CONCURRENT_QUERIES`` connections (all organisations, then one organisation), five times
   each after a warm-up; then on one connection (the queries one after the other); then the
   programme page's loader (GET /programme, 12 weeks); and keeps EXPLAIN (ANALYZE, BUFFERS)
   of the report's queries;
3. with ``--index``, creates a proposed index (DDL given on the command line), ANALYZEs and
   measures again, so that the DDL a report needs is measured before it is asked for;
4. writes ``bench/results/report-<mentors>.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness.cluster import BENCH_PG_SETTINGS
from bench.harness.report import RESULTS_DIR, Timings, log, machine_facts, wait_for_quiet, write_json
from scenario_engine.db.connect import Conn, connect, create_pool
from scenario_engine.db.migrations import migrate
from scenario_engine.db.queries import bind
from scenario_engine.dev.embedded import LocalCluster, server_version, start_private_cluster
from scenario_engine.outcomes.report import CONCURRENT_QUERIES, Report, build_report
from scenario_engine.web.programme_view import load_programme_health

DEFAULT_AS_OF = dt.datetime(2025, 6, 16, 7, 0, tzinfo=dt.UTC)
DB = "bench_report"
TARGET_S = 1.0  # issue 18: `report` and the programme page at 1M over 90 days
RUNS = 5
ORGS = 20


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--mentors", type=int, default=1_000_000)
    p.add_argument(
        "--weekly-share", type=float, default=0.05, help="share of mentors decided per rule and week"
    )
    p.add_argument("--as-of", type=_instant, default=DEFAULT_AS_OF, help="end of the 90-day period (ISO)")
    p.add_argument("--seed", type=float, default=0.42, help="setseed() for the generator, in [-1, 1]")
    p.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="DDL",
        help="a CREATE INDEX statement to measure after the baseline runs (repeatable)",
    )
    p.add_argument("--quiet-below", type=float, default=0.25, help="wait until others use less CPU than this")
    p.add_argument("--quiet-timeout", type=float, default=300.0)
    p.add_argument("--pg-bin", default=None, help="PostgreSQL bin directory (default: the embedded wheel)")
    p.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="(make bench-quick: a scratch directory)"
    )
    p.add_argument("--output", type=Path, default=None, help="default: <results-dir>/report-<mentors>.json")
    return p.parse_args(argv)


def _org_sql(expr: str) -> str:
    return f"('00000000-0000-0000-0000-' || lpad(to_hex(({expr}) % {ORGS} + 1), 12, '0'))::uuid"


def generation_sql(mentors: int, weekly_share: float, as_of: dt.datetime) -> list[tuple[str, str]]:
    """(step name, SQL) in order. Mentor i has id md5('m' || i)::uuid."""
    t = f"'{as_of.isoformat()}'::timestamptz"
    since = f"({t} - interval '90 days')"
    per_week = max(1, round(mentors * weekly_share))
    mentor_id = "md5('m' || {})::uuid"
    return [
        (
            "mentors",
            f"""
            INSERT INTO public.peer_mentor (id, organization_id, status, timezone, joined_at)
            SELECT {mentor_id.format("i")}, {_org_sql("i")}, 'active', 'UTC',
                   {t} - (i % 1000 + 30) * interval '1 day'
            FROM generate_series(1, {mentors}) i
            """,
        ),
        (
            "certifications",
            f"""
            WITH c AS (
                SELECT i, {t} + ((i::bigint * 7919) % 730 - 365) * interval '1 day'
                          + (i % 86400) * interval '1 second' AS expires_at
                FROM generate_series(1, {mentors}) i
            )
            INSERT INTO public.certification (mentor_id, type, issued_at, expires_at)
            SELECT {mentor_id.format("i")}, 'first_aid', expires_at - interval '365 days', expires_at FROM c
            UNION ALL  -- renewed in time (5 %) or late (2.5 %)
            SELECT {mentor_id.format("i")}, 'first_aid',
                   expires_at + CASE WHEN i % 40 = 0 THEN interval '5 days' ELSE interval '-10 days' END,
                   expires_at + interval '720 days'
            FROM c WHERE i % 20 = 0 OR i % 40 = 20
            """,
        ),
        (
            "experiments",
            f"""
            INSERT INTO scenario_engine.scenario_experiment (rule_name, scenario_type, holdout_salt,
                holdout_percent, global_holdout_salt, global_holdout_percent, started_at)
            VALUES ('inactive_21d', 'inactivity', 'salt-a', 10, 'global', 0, {since} - interval '30 days'),
                   ('inactive_21d', 'inactivity', 'salt-b', 10, 'global', 0, {since} + interval '42 days'),
                   ('sessions_year', 'milestone', 'salt-m', 10, 'global', 0, {since} - interval '30 days'),
                   ('cert_expiry', 'certification_expiry', 'salt-c', 10, 'global', 0,
                    {since} - interval '30 days')
            """,
        ),
        (
            "candidates",
            f"""
            CREATE UNLOGGED TABLE bench_cand AS
            WITH raw AS (
                SELECT r.rule_idx, r.rule_name, r.scenario_type, w.week, k,
                       (k::bigint * 7919 + w.week * 104729 + r.rule_idx * 1299709) % {mentors} + 1 AS m,
                       {since} + ((w.week * 7 * 86400 + k % (7 * 86400)) * 90.0 / 91.0) * interval '1 second'
                           AS decided_at,
                       random() AS u, random() AS u_push, random() AS u_outcome, random() AS u_prior
                FROM (VALUES (0, 'inactive_21d', 'inactivity'), (1, 'sessions_year', 'milestone'),
                             (2, 'cert_expiry', 'certification_expiry')) r(rule_idx, rule_name, scenario_type)
                CROSS JOIN generate_series(0, 12) w(week)
                CROSS JOIN generate_series(1, {per_week}) k
            )
            SELECT raw.*, e.id AS experiment_id, e.holdout_salt,
                   {mentor_id.format("m")} AS mentor_id, {_org_sql("m")} AS organization_id,
                   raw.scenario_type || ':' || raw.rule_name || ':' || m || ':' || week AS dedup_key,
                   CASE WHEN u < 0.02 THEN 'opted_out' WHEN u < 0.06 THEN 'cooldown'
                        WHEN u < 0.07 THEN 'daily_cap' WHEN u < 0.08 THEN 'mentor_not_active'
                        WHEN abs(hashtext(e.holdout_salt || ':' || m)) % 100 < e.holdout_percent
                        THEN 'holdout'
                        ELSE 'sent' END AS outcome
            FROM raw
            JOIN scenario_engine.scenario_experiment e ON e.rule_name = raw.rule_name
             AND (raw.rule_name <> 'inactive_21d' OR (e.holdout_salt = 'salt-a') = (raw.week < 6))
            """,
        ),
        ("analyze candidates", "ANALYZE bench_cand"),
        (
            "notifications",
            """
            INSERT INTO scenario_engine.scenario_notification (mentor_id, scenario_type, rule_name,
                subject, seq, dedup_key, context, as_of, held_out)
            SELECT mentor_id, scenario_type, rule_name, week::text, 1, dedup_key,
                   jsonb_build_object('threshold_days', 21, 'week', week), decided_at, outcome = 'holdout'
            FROM bench_cand WHERE outcome IN ('sent', 'holdout')
            """,
        ),
        ("analyze notifications", "ANALYZE bench_cand; ANALYZE scenario_engine.scenario_notification"),
        (
            "decisions",
            f"""
            INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key,
                outcome, reason, inputs, as_of, notification_id, organization_id, experiment_id, final)
            SELECT c.mentor_id, c.scenario_type, c.rule_name, c.dedup_key, c.outcome,
                   CASE c.outcome WHEN 'sent' THEN 'due: threshold reached' WHEN 'holdout' THEN 'held out'
                        ELSE 'suppressed: ' || c.outcome END,
                   jsonb_build_object('last_activity_at', c.decided_at - interval '21 days',
                                      'threshold_days', 21, 'reminder', 1),
                   c.decided_at, n.id, c.organization_id, c.experiment_id, true
            FROM bench_cand c
            LEFT JOIN scenario_engine.scenario_notification n
              ON c.outcome IN ('sent', 'holdout') AND n.dedup_key = c.dedup_key
            UNION ALL  -- first suppressed, a day before the send (or hold-out) superseded it
            SELECT c.mentor_id, c.scenario_type, c.rule_name, c.dedup_key, s.outcome,
                   'suppressed: ' || s.outcome,
                   jsonb_build_object('last_activity_at', c.decided_at - interval '22 days',
                                      'threshold_days', 21, 'reminder', 1),
                   c.decided_at - interval '1 day', NULL, c.organization_id, c.experiment_id, false
            FROM bench_cand c
            CROSS JOIN LATERAL (SELECT CASE WHEN c.u_prior < 0.11 THEN 'cooldown' ELSE 'daily_cap' END
                                    AS outcome) s
            WHERE c.outcome IN ('sent', 'holdout') AND c.u_prior < 0.163  -- 15 % of the candidates
            UNION ALL  -- no-flood bookkeeping of the milestone rule: not candidates
            SELECT {mentor_id.format("i")}, 'milestone', 'sessions_year', 'milestone:baseline:' || i,
                   'baseline',
                   'baseline', '{{}}'::jsonb, {since} + interval '1 hour', NULL, {_org_sql("i")},
                   (SELECT id FROM scenario_engine.scenario_experiment WHERE rule_name = 'sessions_year'),
                   true
            FROM generate_series(1, 50000) i
            """,
        ),
        (
            "pushes",
            f"""
            INSERT INTO scenario_engine.push_notification (notification_id, mentor_id, scenario_type, title,
                body, data, idempotency_key, status, created_at, sent_at, organization_id, experiment_id,
                decided_at)
            SELECT n.id, c.mentor_id, c.scenario_type, 'A nudge', 'We miss you',
                   jsonb_build_object('rule', c.rule_name, 'notification_id', n.id, 'context', n.context),
                   c.dedup_key, s.status,
                   c.decided_at, CASE WHEN s.status = 'sent' THEN c.decided_at + interval '2 seconds' END,
                   c.organization_id, c.experiment_id, c.decided_at
            FROM bench_cand c
            JOIN scenario_engine.scenario_notification n ON n.dedup_key = c.dedup_key
            CROSS JOIN LATERAL (SELECT CASE WHEN c.u_push < 0.93 THEN 'sent'
                                            WHEN c.u_push < 0.96 THEN 'failed'
                                            WHEN c.u_push < 0.97 THEN 'dead'
                                            WHEN c.u_push < 0.98 THEN 'cancelled'
                                            WHEN c.decided_at > {t} - interval '2 days' THEN 'pending'
                                            ELSE 'sent' END AS status) s
            WHERE c.outcome = 'sent'
            """,
        ),
        ("analyze decisions", "ANALYZE scenario_engine.scenario_decision"),
        (
            "outcomes",
            f"""
            INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id,
                scenario_type, rule_name, experiment_id, arm, subject, decided_at, window_ends_at, status,
                resolved_at)
            SELECT d.id, d.mentor_id, d.organization_id, d.scenario_type, d.rule_name, d.experiment_id,
                   CASE d.outcome WHEN 'sent' THEN 'treated' ELSE 'holdout' END, c.week::text, d.as_of,
                   d.as_of + interval '14 days', s.status,
                   CASE WHEN s.status <> 'pending' THEN least(d.as_of + interval '14 days', {t}) END
            FROM scenario_engine.scenario_decision d
            JOIN bench_cand c ON c.dedup_key = d.dedup_key AND c.outcome = d.outcome
            CROSS JOIN LATERAL (SELECT CASE
                WHEN d.as_of + interval '14 days' > {t} AND c.u_outcome > 0.1 THEN 'pending'
                WHEN c.u_outcome < CASE d.outcome WHEN 'sent' THEN 0.35 ELSE 0.30 END THEN 'achieved'
                ELSE 'missed' END AS status) s
            WHERE d.outcome IN ('sent', 'holdout')
            """,
        ),
        ("drop scratch", "DROP TABLE bench_cand"),
    ]


async def generate(conn: asyncpg.Connection[Any], args: argparse.Namespace, timings: Timings) -> None:
    await conn.execute(f"SELECT setseed({args.seed})")
    await conn.execute("SET session_replication_role = replica")  # no event or FK triggers for the load
    for name, sql in generation_sql(args.mentors, args.weekly_share, args.as_of):
        with timings.step(f"generate {name}"):
            await conn.execute(sql)
    await conn.execute("RESET session_replication_role")
    # The load bypassed the triggers that keep the report's daily roll-ups (sql/0032): build
    # them from the loaded rows, as the migration does for an existing installation.
    with timings.step("report roll-ups"):
        await conn.execute("SELECT scenario_engine.report_rollups_rebuild()")
    with timings.step("vacuum analyze"):
        await conn.execute("VACUUM (ANALYZE)")


async def counts(conn: asyncpg.Connection[Any]) -> dict[str, int]:
    out = {}
    for table in (
        "public.peer_mentor",
        "public.certification",
        "scenario_engine.scenario_decision",
        "scenario_engine.scenario_notification",
        "scenario_engine.push_notification",
        "scenario_engine.scenario_outcome",
    ):
        out[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    return out


async def time_report(
    conn: Conn | asyncpg.Pool[Any], args: argparse.Namespace, **filters: Any
) -> dict[str, Any]:
    since = args.as_of - dt.timedelta(days=90)
    await build_report(conn, since=since, until=args.as_of, as_of=args.as_of, **filters)  # warm-up
    seconds = []
    report: Report | None = None
    for _ in range(RUNS):
        started = time.perf_counter()
        report = await build_report(conn, since=since, until=args.as_of, as_of=args.as_of, **filters)
        seconds.append(time.perf_counter() - started)
    assert report is not None
    return {
        "best_s": round(min(seconds), 3),
        "median_s": round(statistics.median(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
        "rows": len(report.rows),
        "candidates": sum(r.candidates for r in report.rows),
        "sent": sum(r.sent for r in report.rows),
        "held_out": sum(r.held_out for r in report.rows),
        "certification_orgs": len(report.certifications),
        "lifts": {
            f"{r.rule_name}#{r.experiment.id if r.experiment else '-'}@{str(r.organization_id)[-2:]}": (
                None if r.lift.points is None else round(r.lift.points, 2)
            )
            for r in report.rows[:6]
        },
    }


async def time_programme_page(conn: asyncpg.Connection[Any], args: argparse.Namespace) -> dict[str, Any]:
    """The programme-health page's reads (GET /programme, its default 12 weeks), which share
    the report's tables: its loader, as the status server runs it on one connection."""
    await load_programme_health(conn, args.as_of)  # warm-up
    seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        page = await load_programme_health(conn, args.as_of)
        seconds.append(time.perf_counter() - started)
    return {
        "best_s": round(min(seconds), 3),
        "median_s": round(statistics.median(seconds), 3),
        "runs_s": [round(s, 3) for s in seconds],
        "organisations": len(page.organisations),
    }


async def explain(conn: asyncpg.Connection[Any], args: argparse.Namespace) -> dict[str, str]:
    since = args.as_of - dt.timedelta(days=90)
    plans = {}
    counts = {"since": since, "until": args.as_of, "organization_id": None, "rule_name": None}
    cases: dict[str, dict[str, Any]] = {
        "report_decision_counts": counts,
        "report_delivered_counts": counts,
        "outcome_counts": {**counts, "as_of": args.as_of},
        "certification_renewals": {
            "since": since - dt.timedelta(days=90),
            "until": args.as_of,
            "split": since,
            "as_of": args.as_of,
            "organization_id": None,
        },
    }
    for name, params in cases.items():
        sql, bound = bind(name, params)
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *bound)
        plans[name] = "\n".join(r[0] for r in rows)
    return plans


async def measure(conn: asyncpg.Connection[Any], url: str, args: argparse.Namespace) -> dict[str, Any]:
    org = await conn.fetchval("SELECT organization_id FROM public.peer_mentor LIMIT 1")
    quiet = wait_for_quiet(args.quiet_below, args.quiet_timeout)
    pool = await create_pool(url, min_size=CONCURRENT_QUERIES, max_size=CONCURRENT_QUERIES)
    try:
        return {
            "quiet": quiet,
            "all_organisations": await time_report(pool, args),
            "one_organisation": await time_report(pool, args, organization_id=org),
            "all_organisations_one_connection": await time_report(conn, args),
            "programme_page": await time_programme_page(conn, args),
            "plans": await explain(conn, args),
        }
    finally:
        await pool.close()


async def run(cluster: LocalCluster, args: argparse.Namespace, result: dict[str, Any]) -> None:
    admin = await asyncpg.connect(cluster.dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()
    timings = Timings()
    conn = await connect(cluster.url(DB), application_name="bench report")
    try:
        with timings.step("migrate"):
            await migrate(conn)
        await generate(conn, args, timings)
        result["timings"] = timings.steps
        result["counts"] = await counts(conn)
        log(f"rows: {result['counts']}")
        result["baseline"] = await measure(conn, cluster.url(DB), args)
        log(f"build_report: {result['baseline']['all_organisations']}")
        for ddl in args.index:
            with timings.step(f"index: {ddl}"):
                await conn.execute(ddl)
                await conn.execute("ANALYZE")
            result.setdefault("with_indexes", []).append(ddl)
        if args.index:
            result["indexed"] = await measure(conn, cluster.url(DB), args)
            log(f"build_report with {args.index}: {result['indexed']['all_organisations']}")
    finally:
        await conn.close()


def summarize(result: dict[str, Any]) -> str:
    lines = [f"build_report over 90 days, {result['params']['mentors']} mentors, {result['counts']}"]
    for phase in ("baseline", "indexed"):
        if phase not in result:
            continue
        for scope in ("all_organisations", "one_organisation", "all_organisations_one_connection"):
            m = result[phase][scope]
            verdict = "ok" if m["median_s"] <= TARGET_S else "OVER"
            lines.append(
                f"  {phase:<8} {scope:<18} best {m['best_s']:.3f} s, median {m['median_s']:.3f} s "
                f"(target ≤ {TARGET_S} s: {verdict}); {m['rows']} rows, {m['candidates']} candidates"
            )
        page = result[phase]["programme_page"]
        lines.append(
            f"  {phase:<8} {'programme page':<18} best {page['best_s']:.3f} s, "
            f"median {page['median_s']:.3f} s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log("starting a private cluster (throwaway)")
    started = time.perf_counter()
    cluster = start_private_cluster(bin_dir=args.pg_bin, settings=BENCH_PG_SETTINGS, owner_pid=os.getpid())
    result: dict[str, Any] = {
        "benchmark": "report",
        "started_at": dt.datetime.now(dt.UTC).isoformat(),
        "params": {
            "mentors": args.mentors,
            "weekly_share": args.weekly_share,
            "as_of": args.as_of.isoformat(),
            "seed": args.seed,
            "runs": RUNS,
        },
        "machine": machine_facts(server_version(cluster.bin_dir)),
        "target_s": TARGET_S,
    }
    try:
        asyncio.run(run(cluster, args, result))
    finally:
        cluster.close()
        result["total_seconds"] = round(time.perf_counter() - started, 1)
    output = args.output or args.results_dir / f"report-{args.mentors}.json"
    write_json(output, result)
    log(f"results written to {output}")
    print()
    print(summarize(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
