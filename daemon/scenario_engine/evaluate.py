"""The evaluation pipeline shared by the sweep, the event drain and the single-mentor path.

    candidates (set-based SQL, or pure Python for one mentor)
      → policy (opt-out, cooldown, cap)  → write (enqueue / ledger / decision log)

The set-based path runs a rule's candidate query once per batch of mentors; the
single-mentor path fetches that mentor's raw rows and applies the pure evaluators. Both
meet in ``decide_and_write`` so policy and persistence are one piece of code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from scenario_engine.config import CertificationExpiryRule, InactivityRule, MilestoneRule, Rule, Rules
from scenario_engine.db.connect import Conn, mark_engine_write
from scenario_engine.db.queries import query
from scenario_engine.notifications import Outcome, write_outcomes
from scenario_engine.policy import PolicyDecision, PolicyState, decide_policy, state_from_row
from scenario_engine.scenarios import certification, inactivity, milestone
from scenario_engine.scenarios.base import (
    EVALUABLE_FROM,
    EVALUABLE_UNTIL,
    Candidate,
    MentorDataError,
    epoch_micros,
    instant,
    is_evaluable,
    optional_instant,
)
from scenario_engine.scenarios.zones import known_zones


def utc(as_of: dt.datetime | None) -> dt.datetime:
    """Normalise an instant to UTC (wall-clock arithmetic across DST would be wrong)."""
    if as_of is None:
        return dt.datetime.now(dt.UTC)
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    at = as_of.astimezone(dt.UTC)
    # Lead times and thresholds are added to and subtracted from as_of: keep a margin.
    if not AS_OF_FROM <= at <= AS_OF_UNTIL:
        raise ValueError(f"as_of must lie between {AS_OF_FROM.date()} and {AS_OF_UNTIL.date()}")
    return at


AS_OF_FROM = EVALUABLE_FROM.replace(year=1000)
AS_OF_UNTIL = EVALUABLE_UNTIL.replace(year=9000)


# --- set-based candidates ------------------------------------------------------------


async def set_based_candidates(
    conn: Conn, rule: Rule, mentors: list[uuid.UUID], as_of: dt.datetime
) -> list[Candidate]:
    """One candidate query for a batch. Rows the engine cannot evaluate are collected, not
    skipped: the batch then raises one ``MentorDataError`` naming every such mentor, so the
    caller quarantines them all at once and evaluates the rest (isolation.py)."""
    if not mentors:
        return []
    build: Callable[[Any], Candidate]
    if isinstance(rule, InactivityRule):
        rows = await conn.fetch(query("inactivity_candidates"), *inactivity.query_args(rule, mentors, as_of))
        build = partial(inactivity.candidate_from_row, rule=rule, as_of=as_of)
    elif isinstance(rule, MilestoneRule):
        rows = await conn.fetch(query("milestone_candidates"), *milestone.query_args(rule, mentors, as_of))
        build = partial(milestone.candidate_from_row, rule=rule)
    else:
        rows = await conn.fetch(
            query("certification_candidates"), *certification.query_args(rule, mentors, as_of)
        )
        build = partial(certification.candidate_from_row, rule=rule, as_of=as_of)
    out: list[Candidate] = []
    problems: dict[uuid.UUID, str] = {}
    for row in rows:
        try:
            out.append(build(row))
        except MentorDataError as exc:
            problems.update(exc.problems)
    if problems:
        raise MentorDataError(problems)
    return out


# --- single-mentor candidates (pure evaluators over raw rows) ---------------------------


MentorState = inactivity.InactivityState | milestone.MilestoneState | certification.CertificationState


async def load_mentor_state(
    conn: Conn, rule: Rule, mentor_id: uuid.UUID, as_of: dt.datetime
) -> MentorState | None:
    """The raw rows one rule needs for one mentor, or None if the mentor does not exist."""
    mentor = await conn.fetchrow(query("mentor_row"), mentor_id)
    if mentor is None:
        return None
    joined_at = instant(mentor["joined_at"])
    if isinstance(rule, InactivityRule):
        activities = await conn.fetch(query("mentor_activities"), mentor_id, as_of)
        last = max((instant(a["occurred_at"]) for a in activities), default=None)
        start = last if last is not None else joined_at
        spell = str(epoch_micros(start)) if is_evaluable(start) else None
        sent = [
            n
            for n in await conn.fetch(query("mentor_notifications"), mentor_id)
            if n["rule_name"] == rule.name and n["subject"] == spell
        ]
        return inactivity.InactivityState(
            mentor_id=mentor_id,
            status=mentor["status"],
            joined_at=joined_at,
            last_activity_at=last,
            reminders_sent=len(sent),
            last_reminder_as_of=max((n["as_of"] for n in sent), default=None),
        )
    if isinstance(rule, MilestoneRule):
        activities = await conn.fetch(query("mentor_activities"), mentor_id, as_of)
        achieved = await conn.fetch(query("mentor_achievements"), mentor_id)
        return milestone.MilestoneState(
            mentor_id=mentor_id,
            status=mentor["status"],
            timezone=mentor["timezone"],
            activities=tuple(
                milestone.ActivityRow(
                    a["kind"], instant(a["occurred_at"]), a["duration_minutes"], a["contacts"]
                )
                for a in activities
            ),
            achieved=frozenset((a["milestone"], float(a["threshold"]), a["period"]) for a in achieved),
        )
    certs = await conn.fetch(query("mentor_certifications"), mentor_id)
    fired: dict[int, int] = {}
    for n in await conn.fetch(query("mentor_notifications"), mentor_id):
        if n["rule_name"] == rule.name:
            cert_id = int(n["subject"])
            fired[cert_id] = min(fired.get(cert_id, n["seq"]), n["seq"])
    return certification.CertificationState(
        mentor_id=mentor_id,
        status=mentor["status"],
        timezone=mentor["timezone"],
        certifications=tuple(
            certification.CertificationRow(
                c["id"],
                c["type"],
                instant(c["issued_at"]),
                instant(c["expires_at"]),
                optional_instant(c["revoked_at"]),
            )
            for c in certs
        ),
        fired_tiers=fired,
    )


def decide(state: MentorState, rule: Rule, as_of: dt.datetime) -> list[Candidate]:
    """The pure evaluators, dispatched on the rule's type."""
    if isinstance(rule, InactivityRule) and isinstance(state, inactivity.InactivityState):
        found = inactivity.decide_inactivity(state, rule, as_of)
        return [found] if found else []
    if isinstance(rule, MilestoneRule) and isinstance(state, milestone.MilestoneState):
        found_m = milestone.decide_milestone(state, rule, as_of)
        return [found_m] if found_m else []
    if isinstance(rule, CertificationExpiryRule) and isinstance(state, certification.CertificationState):
        return certification.decide_certifications(state, rule, as_of)
    raise TypeError(f"state {type(state).__name__} does not fit rule {rule.name!r}")


async def single_mentor_candidates(
    conn: Conn, rule: Rule, mentor_id: uuid.UUID, as_of: dt.datetime
) -> list[Candidate]:
    state = await load_mentor_state(conn, rule, mentor_id, as_of)
    return [] if state is None else decide(state, rule, as_of)


# --- policy and persistence -------------------------------------------------------------


async def policy_states(
    conn: Conn, mentors: Sequence[uuid.UUID], scenario_type: str, as_of: dt.datetime
) -> tuple[dict[uuid.UUID, PolicyState], dict[uuid.UUID, str | None]]:
    rows = await conn.fetch(query("policy_inputs"), list(mentors), scenario_type, as_of)
    return {r["mentor_id"]: state_from_row(r) for r in rows}, {
        r["mentor_id"]: r["display_name"] for r in rows
    }


def apply_policy(
    candidates: Sequence[Candidate],
    states: dict[uuid.UUID, PolicyState],
    rule: Rule,
    rules: Rules,
    as_of: dt.datetime,
) -> list[tuple[Candidate, PolicyDecision]]:
    """Pure: decide each candidate in order; earlier allowed ones count toward the cap."""
    pending: Counter[uuid.UUID] = Counter()
    out: list[tuple[Candidate, PolicyDecision]] = []
    for cand in candidates:
        state = states.get(cand.mentor_id)
        if state is None:  # mentor deleted between the two reads
            continue
        decision = decide_policy(
            state, cand.scenario_type, rule.cooldown, rules.daily_cap, as_of, pending[cand.mentor_id]
        )
        if decision.allowed:
            pending[cand.mentor_id] += 1
        out.append((cand, decision))
    return out


async def decide_and_write(
    conn: Conn, candidates: list[Candidate], rule: Rule, rules: Rules, as_of: dt.datetime
) -> list[Outcome]:
    if not candidates:
        return []
    mentors = list(dict.fromkeys(c.mentor_id for c in candidates))
    states, names = await policy_states(conn, mentors, rule.scenario_type, as_of)
    decided = apply_policy(candidates, states, rule, rules, as_of)
    return await write_outcomes(conn, rule, decided, as_of, names)


# --- milestone baselines ------------------------------------------------------------------


async def ensure_rules_seen(conn: Conn, rules: Rules, as_of: dt.datetime, known: set[str]) -> None:
    """Record each rule the first time any engine sees it; baseline milestone rules.

    ``known`` caches names already recorded, so the common case costs nothing.
    """
    missing = [r for r in rules.enabled() if r.name not in known]
    if not missing:
        return
    known.update(r["rule_name"] for r in await conn.fetch(query("known_rules")))
    for rule in missing:
        if rule.name in known:
            continue
        backfill = isinstance(rule, MilestoneRule) and rule.backfill
        async with conn.transaction():
            await mark_engine_write(conn)
            claimed = await conn.fetchval(
                query("claim_rule_first_seen"), rule.name, rule.scenario_type, as_of, backfill
            )
            if claimed and isinstance(rule, MilestoneRule) and not backfill:
                await conn.execute(
                    query("milestone_baseline"),
                    as_of,
                    rule.name,
                    rule.metric,
                    rule.period,
                    list(rule.thresholds),
                    list(known_zones()),
                )
        known.add(rule.name)
