"""A rule's sent and held-out candidates are written in parts (notifications.ENQUEUE_PART): the
server runs one part's enqueue_batch while Python prepares the next (issue 18). A part never
splits a mentor's rows, and the parts write what one statement writes: the same ledger rows,
texts, cooldowns (the mentor's newest notification), pushes (one digest window per mentor),
decisions and outcome rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine import notifications
from scenario_engine.evaluate import SeenRules, ensure_rules_seen, evaluate_set_based
from scenario_engine.notifications import parts
from scenario_engine.policy import PolicyDecision
from scenario_engine.scenarios.base import Candidate
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_certification, add_mentor

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
RULES = Rules(
    daily_cap=5,
    digest_minutes=30,
    digest_percent=100,
    inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
    certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 1])],
)


def _cand(mentor: int) -> tuple[Candidate, PolicyDecision]:
    m = uuid.UUID(int=mentor)
    return Candidate(m, "inactivity", "r", "s", 1, f"k{mentor}", {}), PolicyDecision("sent", "ok")


def test_parts_keep_a_mentors_rows_together() -> None:
    rows = [_cand(m) for m in (1, 2, 2, 2, 3, 4, 4, 5)]
    assert parts(rows, 100) == [(0, 8)]
    assert parts(rows, 2) == [(0, 4), (4, 7), (7, 8)]
    assert parts(rows, 1) == [(0, 1), (1, 4), (4, 5), (5, 7), (7, 8)]
    assert parts([], 2) == []
    # Not grouped by mentor (never so from a candidate statement): one part, as before.
    assert parts([_cand(m) for m in (1, 2, 1)], 1) == [(0, 3)]


async def _population(conn: asyncpg.Connection[Any]) -> list[uuid.UUID]:
    """Nine mentors, inactive for 90 days; the even ones with two certifications (two
    candidates each, both due for their 30-day reminder)."""
    mentors = []
    for i in range(9):
        m = await add_mentor(conn, joined_at=AS_OF - 90 * DAY, name=f"Mentor {i}")
        if i % 2 == 0:
            await add_certification(conn, m, expires_at=AS_OF + 20 * DAY, type_="first_aid")
            await add_certification(conn, m, expires_at=AS_OF + 25 * DAY, type_="cpr")
        mentors.append(m)
    return mentors


async def _written(conn: asyncpg.Connection[Any], mentors: list[uuid.UUID]) -> list[Any]:
    """What was written for each mentor, by its position (ids, names and the clock aside)."""
    out = []
    for m in mentors:
        notes = await conn.fetch(
            "SELECT scenario_type, rule_name, seq, context - '{display_name,certification_id}'::text[], "
            "held_out, id "
            "FROM scenario_engine.scenario_notification WHERE mentor_id = $1 ORDER BY id",
            m,
        )
        pushes = await conn.fetch(
            "SELECT scenario_type, title, body, digest, fallback FROM scenario_engine.push_notification "
            "WHERE mentor_id = $1 ORDER BY notification_id",
            m,
        )
        windows = await conn.fetchval(
            "SELECT count(DISTINCT digest_window) FROM scenario_engine.push_notification "
            "WHERE mentor_id = $1",
            m,
        )
        cooldowns = await conn.fetch(
            "SELECT scenario_type, last_rule_name, last_triggered_at, last_notification_id "
            "FROM scenario_engine.scenario_cooldown WHERE mentor_id = $1 ORDER BY scenario_type",
            m,
        )
        decisions = await conn.fetch(
            "SELECT rule_name, outcome, reason, final, inputs - '{display_name,certification_id}'::text[] "
            "FROM scenario_engine.scenario_decision WHERE mentor_id = $1 ORDER BY id",
            m,
        )
        outcomes = await conn.fetchval(
            "SELECT count(*) FROM scenario_engine.scenario_outcome WHERE mentor_id = $1", m
        )
        newest = {
            t: max(n["id"] for n in notes if n["scenario_type"] == t)
            for t in {n["scenario_type"] for n in notes}
        }
        assert {c["scenario_type"]: c["last_notification_id"] for c in cooldowns} == newest
        out.append(
            (
                [tuple(n)[:-1] for n in notes],
                [tuple(p) for p in pushes],
                windows,
                [(c["scenario_type"], c["last_rule_name"], c["last_triggered_at"]) for c in cooldowns],
                [tuple(d) for d in decisions],
                outcomes,
            )
        )
    return out


async def test_parts_write_what_one_statement_writes(
    conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    experiments = await ensure_rules_seen(conn, RULES, AS_OF, SeenRules())
    whole = await _population(conn)
    split = await _population(conn)

    one = await evaluate_set_based(conn, RULES, experiments, AS_OF, lambda _t: sorted(whole))
    monkeypatch.setattr(notifications, "ENQUEUE_PART", 2)
    many = await evaluate_set_based(conn, RULES, experiments, AS_OF, lambda _t: sorted(split))

    assert sum(o.decision.outcome == "sent" for o in one) == 9 + 2 * 5
    assert [(o.candidate.rule_name, o.decision.outcome, o.duplicate) for o in one] == [
        (o.candidate.rule_name, o.decision.outcome, o.duplicate) for o in many
    ]
    assert all(o.notification_id is not None for o in many)
    assert await _written(conn, whole) == await _written(conn, split)
