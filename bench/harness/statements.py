"""Where a run's database time went: pg_stat_statements folded onto the engine's named queries.

pg_stat_statements keeps a normalised text per statement; matching it against the engine's
``.sql`` files gives "milestone_candidates: 4.2 s over 48 calls" instead of a page of SQL.
The cluster needs ``shared_preload_libraries = pg_stat_statements`` (``BENCH_PG_SETTINGS``).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

import asyncpg

from bench.harness.engine import all_queries


def _normal(sql: str) -> str:
    """Whitespace-collapsed text without leading comment lines (pg_stat_statements drops them)."""
    lines = sql.strip().splitlines()
    while lines and lines[0].lstrip().startswith("--"):
        lines.pop(0)
    return re.sub(r"\s+", " ", "\n".join(lines)).strip().rstrip(";").rstrip()


def _shape(sql: str) -> str:
    """A statement text without comments, with its constants and parameters alike:
    pg_stat_statements keeps the text of a statement it first saw parsed with its constants as
    ``$n`` (`'locale'`, `interval '24 hours'`, `LIMIT 1`), so a first sweep's policy_inputs and
    active_mentor_batch read as ``other``."""
    text = re.sub(r"--[^\n]*", " ", sql)  # comments first: "the mentor's" is no quote
    text = re.sub(r"'(?:[^']|'')*'", "?", text)
    text = re.sub(r"\$\d+|\b\d+(?:\.\d+)?\b", "?", text)
    # PostgreSQL 18 squashes a list of constants: "IN ('all', $2::text)" -> "IN ($5 /*, ... */)"
    text = re.sub(r"/\*.*?\*/", " ", text)
    text = re.sub(r"::[\w.]+(?:\[\])?", "", text)
    text = re.sub(r"\?(?:\s*,\s*\?)+", "?", text)
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s*([(),])\s*", r"\1", text).strip().rstrip(";").rstrip()


@functools.cache
def _names() -> dict[str, str]:
    return {_normal(sql): name for name, sql in all_queries().items()}


@functools.cache
def _shapes() -> dict[str, str]:
    return {_shape(sql): name for name, sql in all_queries().items()}


def query_name(text: str) -> str:
    """The engine's name for a statement text, or ``other: <its start>``."""
    names = _names()
    norm = _normal(text)
    if norm in names:
        return names[norm]
    shape = _shape(text)
    if shape in _shapes():
        return _shapes()[shape]
    for sql, name in names.items():
        if norm[:120] == sql[:120]:
            return name
    return "other: " + norm[:60]


async def stats_reset(admin: asyncpg.Connection[Any]) -> None:
    await admin.execute("SELECT pg_stat_statements_reset()")


async def stats(admin: asyncpg.Connection[Any], database: str) -> dict[str, Any]:
    """Execution and planning time, calls, rows and buffers per named query since the reset."""
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
        name = query_name(r["query"])
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
