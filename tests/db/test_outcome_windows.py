"""The outcome window's boundaries, as docs/OUTCOMES.md states them, through the resolution the
engine runs after every sweep (outcomes/resolve.py, queries/outcomes.sql and the certification
scenario's certification_outcomes):

* an activity at the decision instant does not count; one a microsecond later does;
* an activity at the window's end counts (the window is (decided_at, window_ends_at]); one a
  microsecond later does not, and once the window has closed the outcome is missed for good;
* an activity after the instant resolved at is not known yet: the outcome stays pending;
* a renewal issued a microsecond before the expiry is in time; one issued at the expiry
  instant is not: the certification has lapsed.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import asyncpg

from scenario_engine.db.connect import mark_engine_write
from scenario_engine.outcomes.resolve import resolve_outcomes
from tests.support.factories import add_certification

DECIDED = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
WINDOW_ENDS = DECIDED + dt.timedelta(days=14)
US = dt.timedelta(microseconds=1)
ORG = uuid.UUID(int=0xA)
_keys = itertools.count()


async def mentor(conn: asyncpg.Connection[Any]) -> uuid.UUID:
    mentor_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO public.peer_mentor (organization_id, joined_at) VALUES ($1, $2) RETURNING id",
        ORG,
        DECIDED - dt.timedelta(days=400),
    )
    return mentor_id


async def outcome(
    conn: asyncpg.Connection[Any],
    mentor_id: uuid.UUID,
    scenario_type: str,
    subject: str,
    window_ends: dt.datetime,
) -> int:
    """A 'sent' decision and its pending outcome, as enqueue_batch writes them."""
    experiment = await conn.fetchval(
        "INSERT INTO scenario_engine.scenario_experiment (rule_name, scenario_type, holdout_salt,"
        " holdout_percent, global_holdout_salt, global_holdout_percent, started_at)"
        " VALUES ($1, $2, 's', 0, 'g', 0, $3) RETURNING id",
        f"rule_{next(_keys)}",
        scenario_type,
        DECIDED,
    )
    async with conn.transaction():
        await mark_engine_write(conn)
        decision: int = await conn.fetchval(
            "INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name, dedup_key,"
            " outcome, reason, as_of, organization_id, experiment_id)"
            " VALUES ($1, $2, 'r', $3, 'sent', 'due', $4, $5, $6) RETURNING id",
            mentor_id,
            scenario_type,
            f"{scenario_type}:{next(_keys)}",
            DECIDED,
            ORG,
            experiment,
        )
        await conn.execute(
            "INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id,"
            " scenario_type, rule_name, experiment_id, arm, subject, decided_at, window_ends_at)"
            " VALUES ($1, $2, $3, $4, 'r', $5, 'treated', $6, $7, $8)",
            decision,
            mentor_id,
            ORG,
            scenario_type,
            experiment,
            subject,
            DECIDED,
            window_ends,
        )
    return decision


async def status(conn: asyncpg.Connection[Any], decision: int) -> str:
    value: str = await conn.fetchval(
        "SELECT status FROM scenario_engine.scenario_outcome WHERE decision_id = $1", decision
    )
    return value


async def test_an_activity_counts_after_the_decision_instant_and_up_to_the_window_end(
    conn: asyncpg.Connection[Any],
) -> None:
    cases = {
        "at the decision instant": (DECIDED, "missed"),
        "a microsecond after the decision": (DECIDED + US, "achieved"),
        "at the window's end": (WINDOW_ENDS, "achieved"),
        "a microsecond after the window's end": (WINDOW_ENDS + US, "missed"),
    }
    decisions = {}
    for name, (occurred, _) in cases.items():
        m = await mentor(conn)
        await conn.execute(
            "INSERT INTO public.activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', $2)",
            m,
            occurred,
        )
        decisions[name] = await outcome(conn, m, "inactivity", "spell", WINDOW_ENDS)
    await resolve_outcomes(conn, WINDOW_ENDS)  # resolved at the very instant the window closes
    assert {name: await status(conn, d) for name, d in decisions.items()} == {
        name: want for name, (_, want) in cases.items()
    }
    await resolve_outcomes(conn, WINDOW_ENDS + dt.timedelta(days=1))  # later activity changes nothing
    assert {name: await status(conn, d) for name, d in decisions.items()} == {
        name: want for name, (_, want) in cases.items()
    }


async def test_an_activity_after_the_instant_resolved_at_is_not_known_yet(
    conn: asyncpg.Connection[Any],
) -> None:
    m = await mentor(conn)
    as_of = DECIDED + dt.timedelta(days=3)
    await conn.execute(
        "INSERT INTO public.activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', $2)", m, as_of + US
    )
    decision = await outcome(conn, m, "inactivity", "spell", WINDOW_ENDS)
    await resolve_outcomes(conn, as_of)
    assert await status(conn, decision) == "pending"
    await resolve_outcomes(conn, as_of + US)
    assert await status(conn, decision) == "achieved"


async def test_a_renewal_issued_at_the_expiry_instant_has_lapsed(conn: asyncpg.Connection[Any]) -> None:
    expires = WINDOW_ENDS
    decisions = {}
    for name, issued in (("a microsecond before expiry", expires - US), ("at the expiry instant", expires)):
        m = await mentor(conn)
        cert = await add_certification(conn, m, expires_at=expires)
        await add_certification(conn, m, issued_at=issued, expires_at=issued + dt.timedelta(days=730))
        decisions[name] = await outcome(conn, m, "certification_expiry", str(cert), expires)
    await resolve_outcomes(conn, expires + dt.timedelta(days=1))
    assert {name: await status(conn, d) for name, d in decisions.items()} == {
        "a microsecond before expiry": "achieved",
        "at the expiry instant": "missed",
    }
