"""enqueue_notification, record_last_triggered and the decision log.

One transaction writes, for each allowed candidate, the scenario_notification (unique
dedup key: a repeat is a no-op that returns the existing row), the cooldown state, a
pending push_notification and a 'sent' decision row; milestone achievements go to the
ledger whatever policy said; suppressed candidates leave one decision row each.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import query
from scenario_engine.domain.rule import RuleBase as Rule
from scenario_engine.policy import PolicyDecision, PolicyState
from scenario_engine.scenarios.base import Candidate
from scenario_engine.templates import render, render_body, render_title

__all__ = ["Outcome", "record_last_triggered", "render", "write_outcomes"]


@dataclass(frozen=True)
class Outcome:
    candidate: Candidate
    decision: PolicyDecision
    notification_id: int | None = None
    duplicate: bool = False  # allowed, but the dedup key had already been enqueued


async def write_outcomes(
    conn: Conn,
    rule: Rule,
    decided: Sequence[tuple[Candidate, PolicyDecision]],
    as_of: dt.datetime,
    states: Mapping[uuid.UUID, PolicyState],
) -> list[Outcome]:
    """Persist one batch of decisions for one rule in one engine-marked transaction."""
    allowed = [(c, d) for c, d in decided if d.allowed]
    suppressed = [(c, d) for c, d in decided if not d.allowed]
    achievements = [(c.mentor_id, a) for c, _ in decided for a in c.achievements]
    created: dict[str, int] = {}
    existing: dict[str, int] = {}
    async with conn.transaction():
        await mark_engine_write(conn)
        if achievements:
            await conn.execute(
                query("record_achievements"),
                [m for m, _ in achievements],
                [a.milestone for _, a in achievements],
                [a.threshold for _, a in achievements],
                [a.period for _, a in achievements],
                as_of,
            )
        if allowed:
            contexts = [
                {**c.inputs, "rule": c.rule_name, "display_name": _display_name(states, c.mentor_id)}
                for c, _ in allowed
            ]
            rows = await conn.fetch(
                query("enqueue_batch"),
                [c.mentor_id for c, _ in allowed],
                [c.scenario_type for c, _ in allowed],
                [c.rule_name for c, _ in allowed],
                [c.subject for c, _ in allowed],
                [c.seq for c, _ in allowed],
                [c.dedup_key for c, _ in allowed],
                contexts,
                [render_title(rule.title, ctx) for ctx in contexts],
                [render_body(rule.body, ctx) for ctx in contexts],
                as_of,
            )
            created = {r["dedup_key"]: r["id"] for r in rows}
            if created:  # wake the dispatchers once per batch (delivered at commit)
                await conn.execute("SELECT pg_notify('scenario_push', $1::text)", str(len(created)))
            missing = [c.dedup_key for c, _ in allowed if c.dedup_key not in created]
            if missing:
                rows = await conn.fetch(query("existing_notifications"), missing)
                existing = {r["dedup_key"]: r["id"] for r in rows}
        if suppressed:
            await conn.execute(
                query("log_suppressed_batch"),
                [c.mentor_id for c, _ in suppressed],
                [c.scenario_type for c, _ in suppressed],
                [c.rule_name for c, _ in suppressed],
                [c.dedup_key for c, _ in suppressed],
                [d.outcome for _, d in suppressed],
                [d.reason for _, d in suppressed],
                [c.inputs for c, _ in suppressed],
                as_of,
            )
    out: list[Outcome] = []
    for c, d in decided:
        if not d.allowed:
            out.append(Outcome(c, d))
        elif c.dedup_key in created:
            out.append(Outcome(c, d, created[c.dedup_key]))
        else:
            out.append(Outcome(c, d, existing.get(c.dedup_key), duplicate=True))
    return out


def _display_name(states: Mapping[uuid.UUID, PolicyState], mentor_id: uuid.UUID) -> str:
    state = states.get(mentor_id)
    return (state.display_name if state else None) or "there"


async def record_last_triggered(
    conn: Conn | asyncpg.Pool[Any],
    mentor_id: uuid.UUID,
    scenario_type: str,
    triggered_at: dt.datetime,
    rule_name: str,
    notification_id: int | None = None,
) -> None:
    """Persist cooldown state (never moves it backwards)."""
    await conn.execute(
        query("record_last_triggered"), mentor_id, scenario_type, triggered_at, rule_name, notification_id
    )
