"""Resolve pending outcomes from the platform's own data, set-based and incrementally.

Each scenario names the statement that marks its pending outcomes achieved (an activity in
the window, a renewal before expiry); then whatever is still pending once its window has
closed is missed. Runs after every completed sweep (engine.py), i.e. as of the sweep's instant.

A resolution costs what changed since the previous one, not every open outcome: the previous
resolution's instant and the newest decision it had seen are kept (sql/0027), and each
scenario's ``…_since`` statement judges only the pending outcomes decided since, those whose
window has closed, and those of mentors with platform data dated since (queries/outcomes.sql,
outcome_activity_after_since). The first resolution, and one at an instant before the previous
one (an ``--as-of`` in the past), judges every pending outcome.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import execute, fetch, query
from scenario_engine.scenarios.registry import SCENARIOS


@dataclass(frozen=True)
class ResolvedCount:
    rule_name: str
    arm: str  # treated | holdout
    status: str  # achieved | missed
    n: int


def _resolve_statements(full: bool) -> list[tuple[str, list[str]]]:
    """Each resolving statement once, with every scenario type that names it, in registry order
    (inactivity, milestone and anniversary share outcome_activity_after: issue 18, run once per
    type they were three statements per incremental sweep, each reading the same activities)."""
    out: dict[str, list[str]] = {}
    for scenario in SCENARIOS:
        name = scenario.outcome.resolve_query if full else scenario.outcome.resolve_since_query
        out.setdefault(name, []).append(scenario.type)
    return list(out.items())


async def resolve_outcomes(conn: Conn, as_of: dt.datetime) -> list[ResolvedCount]:
    out: list[ResolvedCount] = []
    async with conn.transaction():
        await mark_engine_write(conn)
        mark = await conn.fetchrow(query("outcome_resolution_mark"))
        assert mark is not None  # an upsert returns its row
        since: dt.datetime | None = mark["resolved_at"]
        newest = int(mark["newest_decision"] or 0)
        if since is not None and as_of < since:  # back in time: judge everything again
            since = None
        for name, types in _resolve_statements(since is None):
            if since is None:
                rows = await fetch(conn, name, scenario_types=types, as_of=as_of)
            else:
                rows = await fetch(
                    conn,
                    name,
                    scenario_types=types,
                    as_of=as_of,
                    since=since,
                    after_decision=int(mark["last_decision_id"]),
                    up_to_decision=newest,
                )
            out += [ResolvedCount(r["rule_name"], r["arm"], r["status"], int(r["n"])) for r in rows]
        rows = await fetch(conn, "outcome_close", as_of=as_of)
        out += [ResolvedCount(r["rule_name"], r["arm"], r["status"], int(r["n"])) for r in rows]
        await execute(conn, "outcome_resolution_save", as_of=as_of, last_decision_id=newest)
    return out
