"""Scale-out benchmark (issue 18, item 5): one full sweep shared by 1, 2 and 3 daemons.

    .venv/bin/python -m bench.scaleout                    # 300k mentors, 1/2/3 daemons
    .venv/bin/python -m bench.scaleout --mentors 1000000
    .venv/bin/python -m bench.scaleout --mentors 200000 --counts 1 --sweep-lanes 1 2   # lanes, back to back

Setup: a private cluster, a database populated by ``bench.harness.population`` (10 activities
per mentor, one certification per mentor, as of now), cloned fresh for each daemon count.
For each count n:

1. n real ``scenario-engine run`` processes start on the clone while this process holds the
   leader lock, so that all n are ready before the sweep begins; the lock is then released
   and one daemon opens the period's ranges (runtime/shared_sweep.py) that all n claim;
2. the *first* full sweep (lots to send) is timed from the database's own clock: the
   period's ``opened_at`` to its ``finished_at``; then the period row is deleted, which makes
   the leader sweep the same period again, in full, at a new instant: the *steady* sweep
   (nothing new to send) is timed alike;
3. during each sweep: CPU seconds of each daemon process and of the cluster's processes
   (postgres), the machine's busy share (/proc/stat), and every 0.2 s the daemons' backends
   in pg_stat_activity — how many are active, and what they wait for (wait_event_type /
   wait_event; "CPU" when active and not waiting) — the evidence of what limits the sweep;
4. which instance completed how many ranges (``claimed_by``), and the counts: decisions,
   notifications, ranges claimed more than once.

Writes ``bench/results/scaleout.json`` (``--output``) and prints a summary. Push delivery is
throttled (1/s) so the dispatcher does not compete with the sweep for the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness.cluster import (
    LocalCluster,
    admin,
    cluster_cpu,
    connect,
    cpu_delta,
    create_database,
    private_cluster,
    server_version,
)
from bench.harness.daemon import DaemonProc
from bench.harness.engine import benchmark_rules, ensure_rules_seen
from bench.harness.population import Shape, generate
from bench.harness.procfs import load_average
from bench.harness.report import RESULTS_DIR, Timings, log, machine_facts, run_header, scratch_dir, write_json
from scenario_engine.runtime.scheduler import LEADER_LOCK_KEY

TEMPLATE_DB = "bench_scaleout_tpl"
RUN_DB = "bench_scaleout_run"

WAITS = """
SELECT state, wait_event_type, wait_event, application_name
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'scenario-engine%'
"""

# What SCALING.md extrapolates: rows and on-disk size (table + indexes + TOAST) after two sweeps.
SIZES = """
SELECT c.relname AS name, c.reltuples::bigint AS rows, pg_total_relation_size(c.oid) AS bytes
FROM pg_class c
WHERE c.relkind = 'r' AND c.relnamespace IN ('public'::regnamespace, 'scenario_engine'::regnamespace)
  AND pg_total_relation_size(c.oid) > 64 * 1024
ORDER BY bytes DESC
"""


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


async def prepare_template(cluster: LocalCluster, mentors: int) -> dict[str, Any]:
    timings = Timings()
    url = await create_database(cluster, TEMPLATE_DB)
    conn = await asyncpg.connect(url)
    try:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        shape = Shape(mentors=mentors, activities_per_mentor=10.0, certifications=mentors, as_of=now)
        data = await generate(conn, shape, timings)
    finally:
        await conn.close()
    # The rules first seen a week ago, with their milestone baseline, as on a live system (and
    # as bench/sweep.py does): otherwise the daemons' start-up races to baseline a new rule over
    # the whole population, the losers time out (30 s) and the baseline lands in the sweep's
    # first range, where every other daemon's first range waits for it (Lock:transactionid).
    engine_conn = await connect(url)
    try:
        with timings.step("rules first seen + milestone baseline"):
            await ensure_rules_seen(engine_conn, benchmark_rules(), now - dt.timedelta(days=7))
    finally:
        await engine_conn.close()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return {"data": data, "timings": timings.steps}


class Sampler:
    """pg_stat_activity of the daemons' backends, every ``every`` seconds, until stopped."""

    def __init__(self, conn: asyncpg.Connection[Any], every: float = 0.2) -> None:
        self.conn = conn
        self.every = every
        self.samples = 0
        self.states: Counter[str] = Counter()
        self.active: list[int] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            rows = await self.conn.fetch(WAITS)
            self.samples += 1
            active = 0
            for r in rows:
                if r["state"] != "active":
                    continue
                active += 1
                what = f"{r['wait_event_type']}:{r['wait_event']}" if r["wait_event_type"] else "CPU"
                self.states[what] += 1
            self.active.append(active)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)

    def stop(self) -> None:
        self._stop.set()

    def summary(self) -> dict[str, Any]:
        total = sum(self.states.values()) or 1
        return {
            "samples": self.samples,
            "mean_active_backends": round(sum(self.active) / max(len(self.active), 1), 2),
            "active_backend_states_pct": {
                k: round(100 * v / total, 1) for k, v in self.states.most_common(12)
            },
        }


async def _period(conn: asyncpg.Connection[Any]) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT sweep_key, as_of, finished_at, stats, "
        "extract(epoch FROM finished_at - (shared->>'opened_at')::timestamptz)::float8 AS seconds "
        "FROM scenario_engine.scenario_sweep WHERE finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
    )


async def one_sweep(
    cluster: LocalCluster,
    url: str,
    conn: asyncpg.Connection[Any],
    daemons: list[DaemonProc],
    start: Any,
    limit_s: float,
) -> dict[str, Any]:
    """Starts a sweep (``start()``), waits for the period to finish, and measures it."""
    sampler = Sampler(await asyncpg.connect(url))
    pg_before = cluster_cpu(cluster)
    py_before = [d.cpu_seconds() or 0.0 for d in daemons]
    ticks_before = _machine_ticks()
    wall = time.perf_counter()
    task = asyncio.create_task(sampler.run())
    await start()
    deadline = time.perf_counter() + limit_s
    row = None
    while time.perf_counter() < deadline:
        row = await _period(conn)
        if row is not None:
            break
        await asyncio.sleep(0.2)
    sampler.stop()
    await task
    await sampler.conn.close()
    wall = time.perf_counter() - wall
    if row is None:
        raise RuntimeError("the sweep did not finish: " + daemons[0].tail())
    ticks_after = _machine_ticks()
    pg = cpu_delta(pg_before, cluster_cpu(cluster))
    py = [round((d.cpu_seconds() or 0.0) - b, 2) for d, b in zip(daemons, py_before, strict=True)]
    total_ticks = ticks_after[0] - ticks_before[0]
    busy = 1.0 - (ticks_after[1] - ticks_before[1]) / max(total_ticks, 1)
    ranges = await conn.fetch(
        "SELECT claimed_by, count(*) AS n, sum(mentors) AS mentors, max(attempts) AS attempts "
        "FROM scenario_engine.scenario_sweep_range WHERE sweep_key = $1 "
        "GROUP BY claimed_by ORDER BY claimed_by",
        row["sweep_key"],
    )
    seconds = float(row["seconds"])
    mentors = int(row["stats"]["shared"]["mentors"])
    return {
        "seconds": round(seconds, 2),
        "wall_s": round(wall, 2),
        "mentors": mentors,
        "us_per_mentor": round(1e6 * seconds / max(mentors, 1), 1),
        "per_rule": row["stats"]["per_rule"],
        "ranges_by_instance": {r["claimed_by"]: int(r["n"]) for r in ranges},
        "max_attempts": max((int(r["attempts"]) for r in ranges), default=0),
        "cpu_s": {"postgres": pg, "daemons": py, "daemons_total": round(sum(py), 2)},
        "cpu_share_of_2_cores_pct": {
            "postgres": round(100 * pg / (2 * seconds), 1),
            "daemons": round(100 * sum(py) / (2 * seconds), 1),
        },
        "machine_busy_pct": round(100 * busy, 1),
        "pg_stat_activity": sampler.summary(),
    }


async def run_count(
    cluster: LocalCluster, n: int, args: argparse.Namespace, workdir: Path, lanes: int | None = None
) -> dict[str, Any]:
    """One count of daemons; ``lanes``: their ``SCENARIO_SWEEP_LANES`` (None: the default) — how
    many ranges each works at once."""
    url = await create_database(cluster, RUN_DB, template=TEMPLATE_DB)
    conn = await asyncpg.connect(url)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    lock = await asyncpg.connect(url)
    daemons: list[DaemonProc] = []
    try:
        await lock.execute("SELECT pg_advisory_lock($1)", LEADER_LOCK_KEY)  # nobody leads yet
        settings = {
            "sweep_batch_size": args.batch_size,
            "push_rate_per_second": 1,
            "leader_retry_seconds": 0.2,
            "full_sweep_interval_hours": 0,  # every sweep full
            **({"sweep_lanes": lanes} if lanes is not None else {}),
        }
        daemons = [
            DaemonProc(url, workdir, name=f"d{i}-of-{n}-lanes{lanes}", **settings).start() for i in range(n)
        ]
        for d in daemons:
            await d.wait_ready(limit_s=60)
        load = load_average()

        async def release() -> None:
            await lock.execute("SELECT pg_advisory_unlock($1)", LEADER_LOCK_KEY)

        log(f"{n} daemon(s): first sweep …")
        first = await one_sweep(cluster, url, conn, daemons, release, args.limit)
        log(f"  first {first['seconds']} s, ranges {first['ranges_by_instance']}")

        async def again() -> None:  # the leader sweeps the same period again, in full
            await conn.execute("DELETE FROM scenario_engine.scenario_sweep_range")
            await conn.execute("DELETE FROM scenario_engine.scenario_sweep")

        await asyncio.sleep(1.0)  # the closer's outcome resolution and records
        log(f"{n} daemon(s): steady sweep …")
        steady = await one_sweep(cluster, url, conn, daemons, again, args.limit)
        await conn.execute("ANALYZE")  # reltuples for the sizes below
        log(f"  steady {steady['seconds']} s, ranges {steady['ranges_by_instance']}")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM scenario_engine.scenario_notification) AS notifications, "
            "(SELECT count(DISTINCT dedup_key) FROM scenario_engine.scenario_notification) AS keys"
        )
        assert counts is not None
        sizes = await conn.fetch(SIZES)
        errors = [e for d in daemons for e in d.log_errors()]
        return {
            "daemons": n,
            "sweep_lanes": lanes,
            "load_at_start": load,
            "first": first,
            "steady": steady,
            "notifications": int(counts["notifications"]),
            "distinct_dedup_keys": int(counts["keys"]),
            "table_sizes": {
                r["name"]: {"rows": int(r["rows"]), "mb": round(r["bytes"] / 2**20, 1)} for r in sizes
            },
            "errors": errors,
        }
    finally:
        for d in daemons:
            await d.stop()
        await lock.close()
        await conn.close()
        a = await admin(cluster)
        try:
            await a.execute(f'DROP DATABASE IF EXISTS "{RUN_DB}" WITH (FORCE)')
        finally:
            await a.close()


def summary(result: dict[str, Any]) -> list[str]:
    lines = [f"scale-out, {result['params']['mentors']:,} mentors, batch {result['params']['batch_size']:,}"]
    base: dict[str, float] = {}
    for r in result["runs"]:
        for kind in ("first", "steady"):
            s = r[kind]
            base.setdefault(kind, s["seconds"])
            lines.append(
                f"  {r['daemons']} daemon(s) lanes {r.get('sweep_lanes') or 'default'} {kind:<6} "
                f"{s['seconds']:>7.2f} s  load {r['load_at_start']}  "
                f"speed-up {base[kind] / s['seconds']:.2f}×  cpu postgres {s['cpu_s']['postgres']:.1f} s "
                f"daemons {s['cpu_s']['daemons_total']:.1f} s  machine busy {s['machine_busy_pct']} %  "
                f"active backends {s['pg_stat_activity']['mean_active_backends']}  "
                f"ranges {sorted(s['ranges_by_instance'].values())}"
            )
    return lines


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result = run_header(
        "scaleout",
        {
            "mentors": args.mentors,
            "batch_size": args.batch_size,
            "counts": args.counts,
            "sweep_lanes": args.sweep_lanes,
        },
    )
    workdir = scratch_dir("scaleout")
    with private_cluster() as cluster:
        result["machine"] = machine_facts(server_version(cluster.bin_dir))
        log(f"population: {args.mentors:,} mentors …")
        result["setup"] = await prepare_template(cluster, args.mentors)
        result["runs"] = [
            await run_count(cluster, n, args, workdir, lanes)
            for n in args.counts
            for lanes in (args.sweep_lanes or [None])
        ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mentors", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--sweep-lanes",
        type=int,
        nargs="+",
        default=None,
        help="SCENARIO_SWEEP_LANES of the daemons, each run back to back per count (default: the daemon's)",
    )
    parser.add_argument("--limit", type=float, default=900.0, help="seconds allowed per sweep")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "scaleout.json")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    result["summary"] = summary(result)
    write_json(args.output, result)
    print("\n".join(result["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
