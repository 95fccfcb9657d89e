"""A full sweep's batch reaches the scenarios' candidate statements as the id range from its first
to its last mentor (scenarios/common.py, ``range_statement``) instead of an array of its ids:
asyncpg encoded 20k ids in Python for every statement of every batch (issue 18: most of a steady
sweep's client time). The range may hold mentors the batch does not — one who became active after
the batch was listed — and those rows are dropped, so the candidates are exactly the array
form's: both ends included, nothing of a mentor outside the batch, whatever lies between.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine.db.queries import query_params
from scenario_engine.evaluate import SeenRules, ensure_rules_seen, evaluate_set_based
from scenario_engine.scenarios.anniversary import AnniversaryRule
from scenario_engine.scenarios.base import Candidate
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.common import in_span, range_statement
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.registry import SCENARIOS, scenario_of
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_activity, add_certification, add_mentor

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)

RULES = Rules(
    daily_cap=3,
    inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
    milestone=[MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3, 5])],
    certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7, 1])],
    anniversary=[AnniversaryRule(name="anniversary")],
)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.type)
def test_every_candidate_query_has_a_range_form(scenario: Any) -> None:
    declared = query_params(scenario.candidate_query)
    assert declared is not None and declared[0] == "mentors"
    sql = range_statement(scenario.candidate_query)
    assert "$1::uuid[]" not in sql
    assert f"${len(declared) + 1}::uuid" in sql
    assert f"${len(declared) + 2}" not in sql


def test_in_span_is_membership_of_a_sorted_batch() -> None:
    ids = sorted(uuid.uuid4() for _ in range(50))
    batch = ids[::2]
    assert [m for m in ids if in_span(batch, m)] == batch
    assert not in_span([], ids[0])


async def _population(conn: asyncpg.Connection[Any]) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """Mentors each of whom is a candidate of every rule (inactive for 30 days, three sessions
    this year, a certification expiring in 5 days, joined a year ago today), and as many paused
    ones with the same rows; returns (active, paused), each in id order."""
    active: list[uuid.UUID] = []
    paused: list[uuid.UUID] = []
    for i in range(24):
        status = "active" if i % 2 == 0 else "paused"
        mentor = await add_mentor(conn, joined_at=AS_OF - dt.timedelta(days=365, hours=2), status=status)
        for days in (30, 40, 50):
            await add_activity(conn, mentor, AS_OF - dt.timedelta(days=days))
        await add_certification(conn, mentor, expires_at=AS_OF + dt.timedelta(days=5))
        (active if status == "active" else paused).append(mentor)
    return sorted(active), sorted(paused)


def _key(c: Candidate) -> tuple[Any, ...]:
    return (c.mentor_id, c.rule_name, c.dedup_key, sorted(c.inputs.items()), c.achievements)


async def _both(conn: asyncpg.Connection[Any], batch: list[uuid.UUID]) -> list[list[tuple[Any, ...]]]:
    """Each rule's candidates for ``batch``, as an array and as a span; asserts they are equal."""
    out = []
    for rule in RULES.enabled():
        scenario = scenario_of(rule)
        array = [_key(c) for c in await scenario.candidates(conn, rule, batch, AS_OF)]
        span = [_key(c) for c in await scenario.candidates(conn, rule, batch, AS_OF, span=True)]
        assert span == array, rule.name
        out.append(span)
    return out


async def test_a_span_finds_what_the_array_finds(conn: asyncpg.Connection[Any]) -> None:
    active, paused = await _population(conn)
    # A sweep lists its batch in the server's uuid order; in_span bisects it in Python's.
    listed = await conn.fetch("SELECT id FROM peer_mentor WHERE status = 'active' ORDER BY id")
    assert [r["id"] for r in listed] == active
    everyone = await _both(conn, active)
    for found in everyone:  # every active mentor is a candidate of every rule; no paused one
        assert sorted({k[0] for k in found}) == active
    # The ends of the range are the batch's own first and last mentors: both included.
    inner = active[3:9]
    for found in await _both(conn, inner):
        assert sorted({k[0] for k in found}) == inner
    # Mentors inside the range but not in the batch (became active after it was listed; here:
    # left out) have no candidates, and neither do the paused ones in the range.
    gappy = active[2:12:3]
    assert any(active[2] < p < active[11] for p in paused)
    for found in await _both(conn, gappy):
        assert sorted({k[0] for k in found}) == gappy
    assert await _both(conn, active[5:6]) == [[k for k in f if k[0] == active[5]] for f in everyone]


async def test_a_sweep_batch_leaves_out_a_mentor_activated_after_it_was_listed(
    conn: asyncpg.Connection[Any],
) -> None:
    """``evaluate_set_based`` with ``bounds`` (a full sweep's batch) decides for the batch's
    mentors only, though a mentor inside its id range is active when the candidates are read."""
    active, paused = await _population(conn)
    late = next(p for p in paused if active[0] < p < active[-1])
    await conn.execute("UPDATE peer_mentor SET status = 'active' WHERE id = $1", late)
    experiments = await ensure_rules_seen(conn, RULES, AS_OF, SeenRules())
    outcomes = await evaluate_set_based(
        conn, RULES, experiments, AS_OF, lambda _t: active, bounds=(None, active[-1])
    )
    assert {o.candidate.mentor_id for o in outcomes} == set(active)
    assert not outcomes.quarantined
