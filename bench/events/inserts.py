"""The ``inserts`` part: the raw cost of the event triggers, measured with pgbench."""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
from pathlib import Path
from typing import Any

import asyncpg

from bench.events.db import RUN_DB, fresh_db
from bench.harness.cluster import LocalCluster
from bench.harness.procfs import load_average
from bench.harness.report import log

# --- raw insert cost (pgbench) -----------------------------------------------------------------


PGBENCH_ONE = """\\set i random(1, {mentors})
INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
VALUES (md5('bench-mentor-' || :i)::uuid, 'session', clock_timestamp(), 45, 1);
"""
PGBENCH_MANY = """INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes, contacts)
SELECT md5('bench-mentor-' || (1 + floor(random() * {mentors}))::int)::uuid,
       'session', clock_timestamp(), 45, 1
FROM generate_series(1, 50);
"""


def _counting(box: list[int]) -> Any:
    def on_notify(*_args: object) -> None:
        box[0] += 1

    return on_notify


async def pgbench(cluster: LocalCluster, script: Path, seconds: int, clients: int) -> dict[str, Any]:
    cmd = [
        str(cluster.bin_dir / "pgbench"),
        "-n",
        "-h",
        "127.0.0.1",
        "-p",
        str(cluster.port),
        "-U",
        "postgres",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-f",
        str(script),
        RUN_DB,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    raw, _ = await proc.communicate()
    text = raw.decode(errors="replace")
    tps = re.search(r"tps = ([\d.]+)", text)
    lat = re.search(r"latency average = ([\d.]+) ms", text)
    if proc.returncode != 0 or tps is None:
        raise RuntimeError(f"pgbench failed: {text[-2000:]}")
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(lat.group(1)) if lat else None}


STATEMENT_TRIGGER = """
CREATE FUNCTION bench_capture_insert_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_n    bigint;
    v_mode text;
BEGIN
    IF current_setting('scenario_engine.origin', true) = 'engine' THEN
        RETURN NULL;
    END IF;
    INSERT INTO scenario_engine.scenario_event (table_name, operation, mentor_id, row_id)
    SELECT TG_TABLE_NAME, TG_OP, n.mentor_id, n.id::text FROM new_rows n;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    SELECT value INTO v_mode FROM scenario_engine.scenario_engine_setting WHERE key = 'notify_mode';
    IF v_n > 0 AND coalesce(v_mode, 'notify') = 'notify' AND pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('scenario_events', json_build_object(
            'event_id', currval(pg_get_serial_sequence('scenario_engine.scenario_event', 'id')),
            'table', TG_TABLE_NAME, 'op', TG_OP, 'rows', v_n)::text);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_activity_insert_stmt AFTER INSERT ON activity
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION bench_capture_insert_stmt();
"""
INSERT_MODES: dict[str, tuple[str, list[str]]] = {
    # mode: (notify_mode setting, trigger statements)
    "notify": (
        "notify",
        [
            "ALTER TABLE activity ENABLE TRIGGER activity_scenario_event_v1",
            "ALTER TABLE activity DISABLE TRIGGER bench_activity_insert_stmt",
        ],
    ),
    "poll": (
        "poll",
        [
            "ALTER TABLE activity ENABLE TRIGGER activity_scenario_event_v1",
            "ALTER TABLE activity DISABLE TRIGGER bench_activity_insert_stmt",
        ],
    ),
    "disabled": ("notify", ["ALTER TABLE activity DISABLE TRIGGER USER"]),
    # a proposal, not the engine's trigger: one event INSERT … SELECT and one NOTIFY per statement
    "statement_notify": (
        "notify",
        [
            "ALTER TABLE activity DISABLE TRIGGER activity_scenario_event_v1",
            "ALTER TABLE activity ENABLE TRIGGER bench_activity_insert_stmt",
        ],
    ),
}


def paired_ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per round, each mode's rate over the disabled rate of the same round (they ran back to
    back), then the median over the rounds: robust to load that changes between rounds."""
    base = {(r["round"], r["script"]): r["rows_per_s"] for r in runs if r["mode"] == "disabled"}
    ratios: dict[str, list[float]] = {}
    for r in runs:
        ratios.setdefault(f"{r['mode']}/{r['script']}", []).append(
            r["rows_per_s"] / base[(r["round"], r["script"])]
        )
    return {k: round(statistics.median(v), 2) for k, v in ratios.items()}


def _pgbench_scripts(workdir: Path, mentors: int) -> dict[str, tuple[Path, int]]:
    """name → (pgbench script, rows per transaction)."""
    scripts = {}
    for name, text, rows in (("one_row", PGBENCH_ONE, 1), ("fifty_rows", PGBENCH_MANY, 50)):
        path = workdir / f"pgbench-{name}.sql"
        path.write_text(text.format(mentors=mentors), encoding="utf-8")
        path.chmod(0o644)
        scripts[name] = (path, rows)
    return scripts


async def _trigger_mode(conn: asyncpg.Connection[Any], mode: str) -> None:
    setting, statements = INSERT_MODES[mode]
    await conn.execute("ALTER TABLE activity ENABLE TRIGGER USER")
    for sql in statements:
        await conn.execute(sql)
    await conn.execute(
        "UPDATE scenario_engine.scenario_engine_setting SET value = $1 WHERE key = 'notify_mode'", setting
    )


async def _pgbench_run(
    cluster: LocalCluster,
    conn: asyncpg.Connection[Any],
    script: Path,
    rows: int,
    seconds: int,
    received: list[int],
) -> dict[str, Any]:
    """One pgbench run on an empty event table: rows/s, events written, NOTIFYs received."""
    await conn.execute("TRUNCATE scenario_engine.scenario_event")
    await conn.execute("CHECKPOINT")
    received[0] = 0
    load = load_average()
    got = await pgbench(cluster, script, seconds, 4)
    await asyncio.sleep(0.2)
    return {
        "rows_per_transaction": rows,
        **got,
        "rows_per_s": round(got["tps"] * rows),
        "events_written": await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_event"),
        "notifications_received": received[0],
        "load_before": load,
        "load_after": load_average(),
    }


def _best_rates(runs: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, float]]:
    """Best rows/s per mode and script, and each relative to triggers disabled."""
    best: dict[str, int] = {}
    for r in runs:
        key = f"{r['mode']}/{r['script']}"
        best[key] = max(best.get(key, 0), r["rows_per_s"])
    relative = {k: round(v / best[f"disabled/{k.split('/')[1]}"], 3) for k, v in best.items()}
    return best, relative


async def run_inserts(cluster: LocalCluster, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """pgbench into ``activity`` with the triggers in each mode; modes interleaved over
    ``--pgbench-rounds`` rounds on one database so that a change in machine load hits all alike."""
    scripts = _pgbench_scripts(workdir, args.mentors)
    out: dict[str, Any] = {
        "clients": 4,
        "seconds": args.pgbench_seconds,
        "rounds": args.pgbench_rounds,
        "listener": "one asyncpg connection LISTENs on scenario_events during every run",
        "runs": [],
    }
    url = await fresh_db(cluster, "notify")
    conn = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    received = [0]
    await listener.add_listener("scenario_events", _counting(received))
    try:
        await conn.execute(STATEMENT_TRIGGER)
        for round_no in range(args.pgbench_rounds):
            for mode in INSERT_MODES:
                await _trigger_mode(conn, mode)
                for name, (path, rows) in scripts.items():
                    got = await _pgbench_run(cluster, conn, path, rows, args.pgbench_seconds, received)
                    run = {"round": round_no, "mode": mode, "script": name, **got}
                    out["runs"].append(run)
                    log(
                        f"pgbench r{round_no} {mode:<16} {name:<10} {run['rows_per_s']:>8,} rows/s "
                        f"(tps {got['tps']:.0f}, {got['latency_avg_ms']} ms), "
                        f"events {run['events_written']}, "
                        f"notifications {run['notifications_received']}, load {run['load_after']}"
                    )
    finally:
        await listener.close()
        await conn.close()
    out["relative_to_disabled_median_of_rounds"] = paired_ratios(out["runs"])
    out["best_rows_per_s"], out["relative_to_disabled"] = _best_rates(out["runs"])
    return out
