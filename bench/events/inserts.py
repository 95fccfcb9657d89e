"""The ``inserts`` part: what the event triggers cost the platform's own writes, with pgbench.

One pgbench cell is ``--pgbench-seconds`` of single-row INSERTs into ``activity`` (one row,
one transaction: the platform's common write) at a number of clients, with the engine's real
triggers (the migrated ``activity_scenario_event_v1``) in one mode:

* ``disabled`` — ``DISABLE TRIGGER USER``: the platform without the engine, the yardstick;
* ``notify`` — the trigger writes the event row and a ``pg_notify('scenario_events', '')``
  (an empty wake-up since sql/0020), with one connection LISTENing as the daemon does;
* ``poll`` — the trigger writes the event row only (the default since sql/0025);
* ``poll@NNNN`` (opt-in, ``--insert-modes``) — poll mode with the capture function as migration
  ``sql/NNNN_*.sql`` defined it, put in place for the cell (the next cell's mode setting
  writes the current one back): a before/after of a change to the trigger function in one run
  (``poll@0025``: the function with its ``SET search_path`` clause and its per-row
  notify_mode lookup, before sql/0031).

Cells run for clients in ``--pgbench-clients`` under two durability settings — ``durable``
(fsync, synchronous_commit and full_page_writes on, as a production primary) and ``fsync_off``
(all three off, as the other benchmarks) — switched with ALTER SYSTEM + pg_reload_conf on the
same cluster. The three modes of a (durability, clients) cell run back to back, and the whole
grid is repeated ``--pgbench-rounds`` times, so the machine's load (2 cores shared with other
jobs) hits every mode alike; a mode's figure is the median over rounds of its rate divided by
the ``disabled`` rate of the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
from collections.abc import Sequence
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

MODES = ("disabled", "notify", "poll")
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
CAPTURE = "scenario_engine.scenario_capture_event_v1"
DURABILITY: dict[str, dict[str, str]] = {
    "durable": {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"},
    "fsync_off": {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
}


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
        str(min(2, clients)),
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


def cell_key(mode: str, durability: str, clients: int) -> str:
    return f"{mode}/{durability}/c{clients}"


def paired_ratios(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per round, each cell's rate over the ``disabled`` rate of the same round, durability and
    clients (they ran back to back), then the median over the rounds: robust to load that
    changes between rounds."""
    base = {(r["round"], r["durability"], r["clients"]): r["tps"] for r in runs if r["mode"] == "disabled"}
    ratios: dict[str, list[float]] = {}
    for r in runs:
        ratios.setdefault(cell_key(r["mode"], r["durability"], r["clients"]), []).append(
            r["tps"] / base[(r["round"], r["durability"], r["clients"])]
        )
    return {k: round(statistics.median(v), 2) for k, v in ratios.items()}


def ratio_ranges(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """[lowest, highest] paired ratio over the rounds per cell: how noisy the median is."""
    base = {(r["round"], r["durability"], r["clients"]): r["tps"] for r in runs if r["mode"] == "disabled"}
    ratios: dict[str, list[float]] = {}
    for r in runs:
        ratios.setdefault(cell_key(r["mode"], r["durability"], r["clients"]), []).append(
            r["tps"] / base[(r["round"], r["durability"], r["clients"])]
        )
    return {k: [round(min(v), 2), round(max(v), 2)] for k, v in ratios.items()}


def median_rates(runs: list[dict[str, Any]]) -> dict[str, int]:
    """Median tps over the rounds per cell."""
    rates: dict[str, list[float]] = {}
    for r in runs:
        rates.setdefault(cell_key(r["mode"], r["durability"], r["clients"]), []).append(r["tps"])
    return {k: round(statistics.median(v)) for k, v in rates.items()}


def capture_function_of(version: str) -> str:
    """The ``CREATE OR REPLACE FUNCTION`` of the row capture as migration ``version`` wrote it."""
    (path,) = SQL_DIR.glob(f"{version}_*.sql")
    found = re.search(
        rf"CREATE OR REPLACE FUNCTION {re.escape(CAPTURE)}\(\).*?\n\$\$;", path.read_text(), re.S
    )
    if found is None:
        raise ValueError(f"{path.name} does not define {CAPTURE}")
    return found.group(0)


async def set_mode(conn: asyncpg.Connection[Any], mode: str) -> None:
    """The engine's triggers on ``activity`` on (notify / poll / poll@NNNN) or off (disabled).

    Setting notify_mode writes the capture functions for that mode (sql/0031's trigger on the
    settings table); a ``poll@NNNN`` cell then puts migration NNNN's function in their place,
    and the next cell's setting writes the current one back."""
    if mode == "disabled":
        await conn.execute("ALTER TABLE activity DISABLE TRIGGER USER")
        return
    await conn.execute("ALTER TABLE activity ENABLE TRIGGER USER")
    notify_mode, _, version = mode.partition("@")
    await conn.execute(
        "INSERT INTO scenario_engine.scenario_engine_setting (key, value) VALUES ('notify_mode', $1) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
        notify_mode,
    )
    if version:
        # a CREATE OR REPLACE replaces the function's SET clause too (proconfig)
        await conn.execute(capture_function_of(version))


async def set_durability(conn: asyncpg.Connection[Any], name: str) -> dict[str, str]:
    """ALTER SYSTEM the durability settings and reload; returns what the server then reports."""
    for key, value in DURABILITY[name].items():
        await conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
    await conn.execute("SELECT pg_reload_conf()")
    await asyncio.sleep(0.3)  # the postmaster signals the backends; new sessions read it at start
    return {key: await conn.fetchval(f"SHOW {key}") for key in DURABILITY[name]}


async def _cell(
    cluster: LocalCluster,
    conn: asyncpg.Connection[Any],
    script: Path,
    seconds: int,
    clients: int,
    received: list[int],
) -> dict[str, Any]:
    """One pgbench cell on an empty event table: tps, events written, NOTIFYs received."""
    await conn.execute("TRUNCATE scenario_engine.scenario_event")
    await conn.execute("CHECKPOINT")
    received[0] = 0
    load = load_average()
    got = await pgbench(cluster, script, seconds, clients)
    await asyncio.sleep(0.2)
    return {
        **got,
        "events_written": await conn.fetchval("SELECT count(*) FROM scenario_engine.scenario_event"),
        "notifications_received": received[0],
        "load_before": load,
        "load_after": load_average(),
    }


async def run_inserts(cluster: LocalCluster, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The grid rounds × durability × clients × mode on one database (module docstring)."""
    script = workdir / "pgbench-one-row.sql"
    script.write_text(PGBENCH_ONE.format(mentors=args.mentors), encoding="utf-8")
    script.chmod(0o644)
    out: dict[str, Any] = {
        "statement": "INSERT INTO activity … VALUES (…): one row per transaction",
        "clients": args.pgbench_clients,
        "seconds": args.pgbench_seconds,
        "rounds": args.pgbench_rounds,
        "durability": DURABILITY,
        "listener": "one asyncpg connection LISTENs on scenario_events during every cell",
        "runs": [],
    }
    modes: Sequence[str] = getattr(args, "insert_modes", None) or MODES
    out["modes"] = list(modes)
    url = await fresh_db(cluster, "notify")
    conn = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    received = [0]
    await listener.add_listener("scenario_events", _counting(received))
    try:
        for round_no in range(args.pgbench_rounds):
            for durability in DURABILITY:
                shown = await set_durability(conn, durability)
                for clients in args.pgbench_clients:
                    for mode in modes:
                        await set_mode(conn, mode)
                        got = await _cell(cluster, conn, script, args.pgbench_seconds, clients, received)
                        run = {
                            "round": round_no,
                            "durability": durability,
                            "server_settings": shown,
                            "clients": clients,
                            "mode": mode,
                            **got,
                        }
                        out["runs"].append(run)
                        log(
                            f"pgbench r{round_no} {durability:<9} c{clients:<2} {mode:<8} "
                            f"tps {got['tps']:>8,.0f} ({got['latency_avg_ms']} ms), "
                            f"events {run['events_written']}, "
                            f"notifications {run['notifications_received']}, load {run['load_after']}"
                        )
    finally:
        await set_mode(conn, "poll")  # the current capture functions back
        await set_durability(conn, "fsync_off")
        await listener.close()
        await conn.close()
    out["relative_to_disabled_median_of_rounds"] = paired_ratios(out["runs"])
    out["ratio_range_over_rounds"] = ratio_ranges(out["runs"])
    out["median_tps"] = median_rates(out["runs"])
    return out
