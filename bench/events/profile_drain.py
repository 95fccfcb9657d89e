"""Where a drain batch's time goes: the drain in-process, over a backlog of real events.

    .venv/bin/python -m bench.events.profile_drain --mentors 100000 --events 60000

A private cluster, the events benchmark's template (``--mentors`` mentors, first sweep done),
``--events`` activities inserted through the real triggers (multi-row INSERTs, as the throughput
writer), then one ``Drain`` drains the backlog in this process with each phase timed (claim,
parse and route, evaluation, mark processed, commit) and, with ``--cprofile``, under cProfile.
No concurrent writer: this is the drain's own cost per event, the ceiling of what it can keep up with.

With ``--writer-seconds N`` the backlog is not inserted first: ``--writers`` connections of another
process insert at full speed for N seconds (the throughput part's writer) while the drain runs
as the daemon runs it (``Drain.run``, ``--concurrency`` loops), and the wall time of each phase
of a batch is what it costs beside a writer (the figure the bar is about).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import multiprocessing
import pstats
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import asyncpg

from bench.events.db import INSERT_MANY, KINDS, fresh_db, mentor_ids, prepare_template
from bench.events.throughput import pgss_reset, pgss_top
from bench.harness.cluster import RUNTIME_PG_SETTINGS, private_cluster
from bench.harness.procfs import load_average
from bench.harness.report import RESULTS_DIR, log, scratch_dir, write_json
from scenario_engine.db.connect import create_pool
from scenario_engine.engine import Engine
from scenario_engine.runtime import drain as drain_module
from scenario_engine.runtime.drain import Drain
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.scenarios.rules import default_rules


class PhaseTimer:
    """Wall time per named query of the drain (wraps the query helpers the drain module uses)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, fn: Any) -> Any:
        async def timed(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(conn, query, *args, **kwargs)
            finally:
                self.seconds[f"{name}:{query}"] += time.perf_counter() - t0
                self.calls[f"{name}:{query}"] += 1

        return timed

    def wrap_method(self, obj: Any, method: str, name: str) -> None:
        """Time ``obj.method`` (a coroutine method) as the phase ``name``."""
        fn = getattr(obj, method)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        setattr(obj, method, timed)


async def insert_backlog(url: str, mentors: int, events: int, rows: int = 50) -> float:
    conn = await asyncpg.connect(url)
    try:
        ids = mentor_ids(mentors)
        rnd = random.Random(1)
        stmt = await conn.prepare(INSERT_MANY)
        t0 = time.perf_counter()
        for _ in range(events // rows):
            await stmt.fetch(rnd.choices(ids, k=rows), rnd.choices(KINDS, k=rows))
        return time.perf_counter() - t0
    finally:
        await conn.close()


def _writer_process(url: str, mentors: int, seconds: float, writers: int, rows: int, done: Any) -> None:
    """The throughput part's full-speed writer, in its own process (its Python must not share
    the drain's event loop): ``done`` gets the number of rows inserted."""
    from bench.events.throughput import full_speed_writer

    async def go() -> int:
        conns = [await asyncpg.connect(url) for _ in range(writers)]
        counter = [0]
        ids = mentor_ids(mentors)
        await asyncio.gather(
            *(full_speed_writer(c, ids, rows, seconds, counter, seed=i) for i, c in enumerate(conns))
        )
        for c in conns:
            await c.close()
        return counter[0]

    done.put(asyncio.run(go()))


async def drain_beside_writer(
    url: str, drain: Drain, args: argparse.Namespace, timer: PhaseTimer
) -> dict[str, Any]:
    """``Drain.run`` for ``--writer-seconds`` beside the writer process, then until the backlog
    is drained; the rate while the writer ran and after."""
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    writer = ctx.Process(
        target=_writer_process,
        args=(url, args.mentors, args.writer_seconds, args.writers, args.rows_per_insert, done),
    )
    processed = drain.state.metrics.events_processed
    task = asyncio.create_task(drain.run())
    t0 = time.perf_counter()
    writer.start()
    inserted = await asyncio.to_thread(done.get)
    writer_s = time.perf_counter() - t0
    writer.join()
    at_stop = processed._value.get()
    at_stop_timer = dict(timer.seconds), dict(timer.calls)
    for _ in range(6000):  # at most 5 minutes for the backlog
        if processed._value.get() >= inserted:
            break
        await asyncio.sleep(0.05)
    drain_s = time.perf_counter() - t0 - writer_s
    drain.state.stopping.set()
    drain.state.drain_wakeup.poke()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    batches = at_stop_timer[1].get("evaluate", 0)
    return {
        "writer_rows": inserted,
        "writer_s": round(writer_s, 2),
        "writer_rate_per_s": round(inserted / writer_s),
        "drained_while_writing": int(at_stop),
        "drain_rate_while_writing_per_s": round(at_stop / writer_s),
        "drain_after_writer_s": round(drain_s, 2),
        "drain_rate_after_writer_per_s": round((inserted - at_stop) / drain_s) if drain_s > 0 else None,
        "batches_while_writing": batches,
        # summed over the concurrent loops: wall time of each phase per batch, beside the writer
        "per_batch_ms_while_writing": {
            k: round(1000 * v / max(batches, 1), 2) for k, v in at_stop_timer[0].items()
        },
    }


async def profile(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"params": {k: str(v) for k, v in vars(args).items()}}
    settings = {
        **RUNTIME_PG_SETTINGS,
        "shared_preload_libraries": "pg_stat_statements",
        "pg_stat_statements.track": "all",
    }
    with private_cluster(settings) as cluster:
        args.pgss = True
        await prepare_template(cluster, args, workdir)
        url = await fresh_db(cluster, "poll")
        if not args.writer_seconds:
            out["insert_s"] = round(await insert_backlog(url, args.mentors, args.events), 2)
        monitor = await asyncpg.connect(url)
        await pgss_reset(monitor)
        pool = await create_pool(url, min_size=1, max_size=args.concurrency + 1)
        try:
            state = RuntimeState(instance_id="profile")
            state.set_leader(True)  # a follower whose rules are unchecked claims nothing
            drain = Drain(
                pool,
                Engine(pool, default_rules()),
                state,
                batch_size=args.batch_size,
                poll_interval=0.5,
                min_poll_interval=0.005,
                max_attempts=5,
                concurrency=args.concurrency,
            )
            timer = PhaseTimer()
            for name in ("fetch", "execute", "fetchval"):
                setattr(drain_module, name, timer.wrap(name, getattr(drain_module, name)))
            timer.wrap_method(drain.engine, "evaluate_routed", "evaluate")
            timer.wrap_method(drain, "drain_once", "drain_once")
            if args.writer_seconds:
                out["beside_writer"] = await drain_beside_writer(url, drain, args, timer)
                out["pg_stat_statements"] = await pgss_top(monitor, 25)
                out["load_average"] = load_average()
                return out
            prof = cProfile.Profile() if args.cprofile else None
            t0 = time.perf_counter()
            batches = processed = 0
            if prof:
                prof.enable()
            while n := await drain.drain_once():
                batches += 1
                processed += n
            if prof:
                prof.disable()
            wall = time.perf_counter() - t0
            out["pg_stat_statements"] = await pgss_top(monitor, 25)
        finally:
            await pool.close()
            await monitor.close()
    out.update(
        events=processed,
        batches=batches,
        wall_s=round(wall, 2),
        events_per_s=round(processed / wall),
        per_batch_ms={k: round(1000 * v / max(batches, 1), 2) for k, v in timer.seconds.items()},
        calls=dict(timer.calls),
        unaccounted_per_batch_ms=round(1000 * (wall - sum(timer.seconds.values())) / max(batches, 1), 2),
    )
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(45)
        out["cprofile_cumulative"] = buf.getvalue().splitlines()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        out["cprofile_tottime"] = buf.getvalue().splitlines()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.events.profile_drain", description=__doc__)
    p.add_argument("--mentors", type=int, default=100_000)
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--cprofile", action="store_true")
    p.add_argument("--concurrency", type=int, default=1, help="drain loops (SCENARIO_DRAIN_CONCURRENCY)")
    p.add_argument("--writer-seconds", type=float, default=0.0, help="drain beside a full-speed writer")
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--rows-per-insert", type=int, default=50)
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    result = asyncio.run(profile(args, scratch_dir("profile-drain")))
    write_json(args.output or RESULTS_DIR / "events-drain-profile.json", result)
    if "beside_writer" in result:
        log(f"beside a writer: {result['beside_writer']}; load {result['load_average']}")
        for row in result["pg_stat_statements"]:
            print(
                f"{row['total_ms']:>9} ms {row['calls']:>6} calls {row['rows']:>8} rows  {row['query'][:110]}"
            )
        return 0
    log(
        f"{result['events']} events in {result['batches']} batches, {result['wall_s']} s: "
        f"{result['events_per_s']}/s; per batch ms {result['per_batch_ms']}, "
        f"unaccounted {result['unaccounted_per_batch_ms']}"
    )
    for line in result.get("cprofile_tottime", [])[:45]:
        print(line)
    for row in result["pg_stat_statements"]:
        print(f"{row['total_ms']:>9} ms {row['calls']:>6} calls {row['rows']:>8} rows  {row['query'][:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
