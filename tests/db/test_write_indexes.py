"""Indexes the write path maintains for nobody (sql/0033; docs/BENCHMARKS.md, "What enqueue_batch costs").

Every notification the engine writes adds entries to every index of scenario_notification,
scenario_decision, scenario_outcome and push_notification. 0033 dropped three that no query
read: scenario_notification_mentor_created_idx, push_notification_created_idx and
push_notification_due_idx. These tests keep them gone and check that the queries which could
have used them still read through an index — the planner is told to avoid sequential scans,
so a plan without one means no index serves the query at all. (Which of two partial indexes
a plan over an empty table picks is a coin toss: where both serve, only the table is named.)
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.queries import bind, query

DROPPED = (
    "scenario_notification_mentor_created_idx",
    "push_notification_created_idx",
    "push_notification_due_idx",
)
MENTOR = uuid.UUID(int=0xB0)
AS_OF = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


async def _plan(conn: asyncpg.Connection[Any], sql: str, *args: Any) -> str:
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch(f"EXPLAIN (COSTS OFF) {sql}", *args)
        return "\n".join(r[0] for r in rows)


async def test_the_unread_indexes_are_gone(conn: asyncpg.Connection[Any]) -> None:
    present = await conn.fetch(
        "SELECT indexname FROM pg_indexes"
        " WHERE schemaname = 'scenario_engine' AND indexname = ANY($1::text[])",
        list(DROPPED),
    )
    assert present == []


async def test_the_rollups_leave_room_for_hot_updates(conn: asyncpg.Connection[Any]) -> None:
    options = await conn.fetch(
        "SELECT relname, reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'scenario_engine' AND relname LIKE 'report\\_%\\_day' ORDER BY relname"
    )
    assert [(r["relname"], r["reloptions"]) for r in options] == [
        (name, ["fillfactor=50"]) for name in ("report_decision_day", "report_outcome_day", "report_push_day")
    ]


@pytest.mark.parametrize(
    ("sql", "args", "index"),
    [
        # GET /mentors/{id}: a mentor's notifications, by the other indexes leading with mentor_id
        (query("mentor_notifications"), [MENTOR], "scenario_notification_"),
        # forget: the erasure deletes a mentor's rows by mentor_id (privacy.py)
        (
            "DELETE FROM scenario_engine.scenario_notification WHERE mentor_id = $1",
            [MENTOR],
            "scenario_notification_",
        ),
        (
            "DELETE FROM scenario_engine.push_notification WHERE mentor_id = $1",
            [MENTOR],
            "push_notification_mentor_idx",
        ),
        # the outbox readers of pending pushes and of created_at, through the partial indexes
        (query("outbox_stats"), [], "push_notification_claim_order_idx"),
        (query("outbox_stats"), [], "push_notification_dead_idx"),
        (*bind("claim_pushes", {"batch_size": 10, "lease_secs": 30.0}), "push_notification_claim_order_idx"),
        (*bind("requeue_dead_pushes", {"since": AS_OF}), "push_notification_"),
        (*bind("status_deliveries_since", {"first_day": AS_OF.date()}), "push_notification_finished_idx"),
        (*bind("status_deliveries_since", {"first_day": AS_OF.date()}), "push_notification_claim_order_idx"),
        (
            *bind("privacy_delete_finished_pushes", {"cutoff": AS_OF, "batch_size": 10}),
            "push_notification_finished_idx",
        ),
    ],
)
async def test_the_readers_still_take_an_index(
    conn: asyncpg.Connection[Any], sql: str, args: list[Any], index: str
) -> None:
    plan = await _plan(conn, sql, *args)
    assert "Index" in plan, plan
    assert index in plan, plan
    assert "Seq Scan on scenario_notification" not in plan, plan
    assert "Seq Scan on push_notification" not in plan, plan
    for name in DROPPED:
        assert name not in plan, plan
