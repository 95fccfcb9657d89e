"""The incremental sweep evaluates each due mentor only for the scenario types it is due for
(sweep.due_mentors, issue 18: every due mentor was evaluated for every type — at 1M,
``milestone_candidates`` read 3.9k buffers for 308 mentors of whom ``milestone_due`` found none):
a scenario's own due window concerns that type, an ended cooldown the cooldown's type; a
notification leaving the 24-hour cap window concerns every type (the cap counts all of them), and
so does a mentor in quarantine (a full sweep withholds every scenario from a mentor one of them
cannot evaluate).

What each type was asked about is observed at the candidate reads themselves: a wrapper around
``evaluate.set_based_candidates`` that records the mentors of each call and runs the real
statement on the real database. After each incremental sweep, a full sweep at the same instant
must write nothing (the equivalence property, tests/db/test_equivalence.py, checks the same on
random populations).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine import evaluate
from scenario_engine.domain.rule import RuleBase
from scenario_engine.engine import Engine
from scenario_engine.scenarios.anniversary import AnniversaryRule
from scenario_engine.scenarios.base import Candidate
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.milestone import MilestoneRule
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_activity, add_certification, add_mentor

UTC = dt.UTC
T1 = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)  # the incremental sweep
T0 = T1 - dt.timedelta(minutes=15)  # the sweep before it (full)
SEEN = T1 - dt.timedelta(days=60)  # the rules first seen, before any mentor exists
JOINED = T1 - dt.timedelta(days=500)  # an anniversary ≈ 135 days ago: never due here
DAY = dt.timedelta(days=1)
FIVE_MIN = dt.timedelta(minutes=5)
TYPES = ("inactivity", "milestone", "certification_expiry", "anniversary")


def _rules(daily_cap: int) -> Rules:
    return Rules(
        daily_cap=daily_cap,
        inactivity=[InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=2)],
        milestone=[
            MilestoneRule(name="sessions_year", metric="sessions", thresholds=[2, 3, 5], cooldown_days=2)
        ],
        certification_expiry=[CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7, 1])],
        anniversary=[AnniversaryRule(name="anniversary")],
    )


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[uuid.UUID]]:
    """Scenario type → every mentor a candidate statement of that type was run for."""
    seen: dict[str, set[uuid.UUID]] = {}
    real = evaluate.set_based_candidates

    async def recording(
        conn: Any, rule: RuleBase, mentors: list[uuid.UUID], *args: Any, **kwargs: Any
    ) -> list[Candidate]:
        seen.setdefault(rule.scenario_type, set()).update(mentors)
        return await real(conn, rule, mentors, *args, **kwargs)

    monkeypatch.setattr(evaluate, "set_based_candidates", recording)
    return seen


async def _rows(pool: asyncpg.Pool[Any]) -> tuple[int, int]:
    decisions = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_decision")
    notifications = await pool.fetchval("SELECT count(*) FROM scenario_engine.scenario_notification")
    return int(decisions), int(notifications)


async def _incremental_then_full(
    engine: Engine, pool: asyncpg.Pool[Any], asked: dict[str, set[uuid.UUID]], full_at_t0: bool = True
) -> list[tuple[uuid.UUID, str, str]]:
    """The full sweep at T0 (unless the test ran it), the incremental one at T1 (what it asked
    of each type is left in ``asked``), then a full one at T1 that must find nothing more.
    Returns the incremental sweep's outcomes (mentor, rule, outcome)."""
    if full_at_t0:
        await engine.run_scheduled_evaluation(T0)
    asked.clear()
    result = await engine.run_scheduled_evaluation(T1, since=T0, collect=True)
    found = {t: set(ms) for t, ms in asked.items()}
    before = await _rows(pool)
    again = await engine.run_scheduled_evaluation(T1, collect=True)
    assert [o for o in again.outcomes if o.decision.recorded and not o.duplicate] == []
    assert await _rows(pool) == before, "a full sweep after the incremental one wrote more"
    asked.clear()
    asked.update(found)
    return sorted((o.candidate.mentor_id, o.candidate.rule_name, o.decision.outcome) for o in result.outcomes)


async def test_a_due_mentor_is_evaluated_only_for_what_it_is_due_for(
    pool: asyncpg.Pool[Any], asked: dict[str, set[uuid.UUID]]
) -> None:
    engine = Engine(pool, _rules(daily_cap=3))
    await engine.run_scheduled_evaluation(SEEN)  # the rules first seen: nothing to baseline yet
    # A: an activity dated between the two sweeps — inactivity and milestone (its second session).
    a = await add_mentor(pool, joined_at=JOINED)
    await add_activity(pool, a, T1 - 3 * DAY)
    await add_activity(pool, a, T1 - FIVE_MIN)
    # B: a certification that entered its 7-day tier between the two sweeps — certification.
    b = await add_mentor(pool, joined_at=JOINED)
    await add_activity(pool, b, T1 - 3 * DAY)
    await add_certification(pool, b, expires_at=T1 + 7 * DAY - FIVE_MIN)
    # C: a milestone cooldown (2 days) that ended between the two sweeps — milestone only (its
    # notification left the cap window a day before T0).
    c = await add_mentor(pool, joined_at=JOINED)
    await add_activity(pool, c, T1 - 10 * DAY)
    await add_activity(pool, c, T1 - 9 * DAY)
    sent = await engine.evaluate_mentor(c, as_of=T1 - 2 * DAY - FIVE_MIN)
    assert [(o.candidate.rule_name, o.decision.outcome) for o in sent] == [("sessions_year", "sent")]
    # D: inactive, notified a day before T1 minus five minutes: that notification left the cap
    # window between the two sweeps — every type.
    d = await add_mentor(pool, joined_at=JOINED)
    sent = await engine.evaluate_mentor(d, as_of=T1 - DAY - FIVE_MIN)
    assert [(o.candidate.rule_name, o.decision.outcome) for o in sent] == [("inactive_21d", "sent")]
    # E: nothing due.
    e = await add_mentor(pool, joined_at=JOINED)
    await add_activity(pool, e, T1 - 3 * DAY)

    outcomes = await _incremental_then_full(engine, pool, asked)

    assert asked == {
        "inactivity": {a, d},
        "milestone": {a, c, d},
        "certification_expiry": {b, d},
        "anniversary": {d},
    }
    assert e not in set().union(*asked.values())
    assert (a, "sessions_year", "sent") in outcomes
    assert (b, "cert_expiry", "sent") in outcomes


async def test_a_cap_window_left_by_one_type_frees_another(
    pool: asyncpg.Pool[Any], asked: dict[str, set[uuid.UUID]]
) -> None:
    """The cross-type case: an inactivity reminder held back by the daily cap, which a milestone
    filled, goes out once that milestone leaves the 24-hour window — though no inactivity due
    window names the mentor, and the notification that left was a milestone's."""
    engine = Engine(pool, _rules(daily_cap=1))
    await engine.run_scheduled_evaluation(SEEN)
    m = await add_mentor(pool, joined_at=JOINED)
    await add_activity(pool, m, T1 - 21 * DAY - 2 * dt.timedelta(hours=1))
    await add_activity(pool, m, T1 - 21 * DAY - dt.timedelta(hours=1))  # 21 days old before T0
    first = await engine.evaluate_mentor(m, as_of=T1 - DAY - FIVE_MIN)  # not inactive yet
    assert [(o.candidate.rule_name, o.decision.outcome) for o in first] == [("sessions_year", "sent")]
    before_t0 = await engine.run_scheduled_evaluation(T0, collect=True)
    assert [(o.candidate.rule_name, o.decision.outcome) for o in before_t0.outcomes] == [
        ("inactive_21d", "daily_cap")
    ]

    outcomes = await _incremental_then_full(engine, pool, asked, full_at_t0=False)

    assert outcomes == [(m, "inactive_21d", "sent")]
    assert {t: ms for t, ms in asked.items() if ms} == {t: {m} for t in TYPES}


async def test_a_quarantined_mentor_is_evaluated_for_every_type(
    pool: asyncpg.Pool[Any], asked: dict[str, set[uuid.UUID]]
) -> None:
    """A mentor whose activity cannot be evaluated is quarantined by the full sweep, which then
    sends it nothing at all. Due for certification alone, it is still evaluated for every type
    by the incremental sweep: quarantined again, and its certification withheld as a full sweep
    withholds it (evaluated for certification alone, it would have been sent)."""
    engine = Engine(pool, _rules(daily_cap=3))
    await engine.run_scheduled_evaluation(SEEN)
    q = await add_mentor(pool, joined_at=JOINED)
    await pool.execute(
        "INSERT INTO activity (mentor_id, kind, occurred_at) VALUES ($1, 'session', '-infinity')", q
    )
    await add_certification(pool, q, expires_at=T1 + 7 * DAY - FIVE_MIN)
    healthy = await add_mentor(pool, joined_at=JOINED)
    await add_activity(pool, healthy, T1 - 3 * DAY)
    await add_certification(pool, healthy, expires_at=T1 + 7 * DAY - FIVE_MIN)

    outcomes = await _incremental_then_full(engine, pool, asked)

    # Asked of inactivity, which no window names it for (the evaluation of a mentor stops at the
    # first rule that fails on its rows: inactivity's, here).
    assert asked["inactivity"] == {q}
    assert healthy in asked["certification_expiry"]
    assert outcomes == [(healthy, "cert_expiry", "sent")]
    row = await pool.fetchrow(
        "SELECT occurrences, cleared_at FROM scenario_engine.scenario_quarantine WHERE mentor_id = $1", q
    )
    assert row is not None and row["cleared_at"] is None and row["occurrences"] >= 3  # T0, T1, T1 again
    assert not await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_notification WHERE mentor_id = $1", q
    )
