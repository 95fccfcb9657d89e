"""Resolve pending outcomes from the platform's own data, set-based and incrementally.

Each scenario names the statement that marks its pending outcomes achieved (an activity in
the window, a renewal before expiry); then whatever is still pending once its window has
closed is missed. Both touch only pending rows, so a run costs what is open, not the
history. Runs after every completed sweep (engine.py), i.e. as of the sweep's instant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import fetch
from scenario_engine.scenarios.registry import SCENARIOS


@dataclass(frozen=True)
class ResolvedCount:
    rule_name: str
    arm: str  # treated | holdout
    status: str  # achieved | missed
    n: int


async def resolve_outcomes(conn: Conn, as_of: dt.datetime) -> list[ResolvedCount]:
    out: list[ResolvedCount] = []
    async with conn.transaction():
        await mark_engine_write(conn)
        for scenario in SCENARIOS:
            rows = await fetch(conn, scenario.outcome.resolve_query, scenario_type=scenario.type, as_of=as_of)
            out += [ResolvedCount(r["rule_name"], r["arm"], r["status"], int(r["n"])) for r in rows]
        rows = await fetch(conn, "outcome_close", as_of=as_of)
        out += [ResolvedCount(r["rule_name"], r["arm"], r["status"], int(r["n"])) for r in rows]
    return out
