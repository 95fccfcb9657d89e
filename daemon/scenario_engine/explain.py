"""``explain``: for one mentor, each rule's inputs, what it decided and why.

Built on the single-mentor path: the same state the pure evaluators see, a dry-run
evaluation for the decisions (exactly what a sweep would do now), and the mentor's
recent notification history.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import fetch, fetchrow
from scenario_engine.db.records import MentorRecord, load_mentor, plain
from scenario_engine.domain.rule import RuleBase
from scenario_engine.engine import Engine
from scenario_engine.evaluate import instant
from scenario_engine.isolation import may_quarantine, reason_for
from scenario_engine.notifications import Outcome
from scenario_engine.scenarios.base import MentorDataError
from scenario_engine.scenarios.registry import scenario_of
from scenario_engine.scenarios.rules import Rules
from scenario_engine.timing import plan_holds


@dataclass
class RuleTrace:
    rule: str
    scenario_type: str
    inputs: dict[str, Any]
    verdict: str  # would send / suppressed: <outcome> / not due
    reason: str


@dataclass
class Explanation:
    mentor: dict[str, Any]
    as_of: dt.datetime
    rules: list[RuleTrace] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    pushes: list[dict[str, Any]] = field(default_factory=list)
    # The mentor's scenario_quarantine entry (open or cleared), and whether this evaluation
    # would quarantine it again (with the reason) — rows the engine cannot evaluate.
    quarantine: dict[str, Any] | None = None
    # Which programme applied and why: the organisation, its name, the overrides the rules file
    # sets for it, and the locale chain with the locale whose texts a message would use.
    programme: dict[str, Any] = field(default_factory=dict)


MIN_PREFIX_DIGITS = 8


def mentor_reference(text: str) -> str:
    """A mentor id, or its first 8 or more hex digits (dashes ignored), as 8–32 lower-case hex
    digits; ValueError for anything else."""
    compact = text.strip().replace("-", "").lower()
    if not (MIN_PREFIX_DIGITS <= len(compact) <= 32 and all(c in "0123456789abcdef" for c in compact)):
        raise ValueError(f"not a mentor id, nor its first {MIN_PREFIX_DIGITS} or more hex digits: {text!r}")
    return compact


async def resolve_mentor(conn: Conn, reference: str) -> uuid.UUID:
    """The one mentor a ``mentor_reference`` names: a whole id as it is, a prefix looked up
    (LookupError when no mentor or more than one has it)."""
    if len(reference) == 32:
        return uuid.UUID(reference)
    low, high = uuid.UUID(reference.ljust(32, "0")), uuid.UUID(reference.ljust(32, "f"))
    rows = await fetch(conn, "mentor_id_prefix", low=low, high=high)
    if not rows:
        raise LookupError(f"no mentor's id starts with {reference}")
    if len(rows) > 1:
        raise LookupError(f"more than one mentor's id starts with {reference}: give more digits")
    mentor_id: uuid.UUID = rows[0]["id"]
    return mentor_id


async def explain_mentor(
    engine: Engine, mentor_id: uuid.UUID, as_of: dt.datetime | None = None
) -> Explanation:
    async with engine.pool.acquire() as conn:
        at = await instant(conn, as_of)
    outcomes = await engine.evaluate_mentor(mentor_id, as_of=at, dry_run=True)
    now_quarantined = {q.mentor_id: q.reason for q in outcomes.quarantined}
    by_rule: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_rule.setdefault(o.candidate.rule_name, []).append(o)
    async with engine.pool.acquire() as conn:
        mentor = await load_mentor(conn, mentor_id)
        if mentor is None:
            raise LookupError(f"no mentor with id {mentor_id}")
        result = Explanation(mentor=plain(vars(mentor)), as_of=at)
        result.programme = programme_of(engine.rules, mentor, await mentor_locale(conn, mentor_id))
        for listed in engine.rules.enabled():
            own = engine.rules.variants(listed.name).for_org(mentor.organization_id)
            if own is None:
                why = "not in this mentor's programme (disabled for the organisation, or another's rule)"
                result.rules.append(RuleTrace(listed.name, listed.scenario_type, {}, "not in programme", why))
                continue
            rule = own
            try:
                inputs, why_not = await describe(conn, rule, mentor, at)
            except Exception as exc:  # a poison row: say what, instead of failing the command
                if not may_quarantine(exc):  # a condition of the database, not this mentor's row
                    raise
                problems = exc.problems.values() if isinstance(exc, MentorDataError) else [reason_for(exc)]
                result.rules.append(
                    RuleTrace(rule.name, rule.scenario_type, {}, "cannot evaluate", "; ".join(problems))
                )
                continue
            fired = by_rule.get(rule.name, [])
            if not fired:
                result.rules.append(RuleTrace(rule.name, rule.scenario_type, inputs, "not due", why_not))
            for o in fired:
                verdict = "would send" if o.decision.allowed else f"suppressed: {o.decision.outcome}"
                reason = o.decision.reason
                if o.decision.allowed:  # when: the usual-hour hold the push would get (timing.py)
                    [hold] = await plan_holds(conn, rule, engine.rules, [o.candidate], at)
                    if hold.reason:
                        reason = f"{reason}; {hold.reason}"
                result.rules.append(
                    RuleTrace(
                        rule.name,
                        rule.scenario_type,
                        {**inputs, **o.candidate.inputs},
                        verdict,
                        reason,
                    )
                )
        entry = await fetchrow(conn, "mentor_quarantine", mentor_id=mentor_id)
        if entry is not None or mentor_id in now_quarantined:
            result.quarantine = {
                **(plain(entry) if entry else {}),
                "mentor_id": str(mentor_id),
                "quarantined_now": mentor_id in now_quarantined,
                "reason_now": now_quarantined.get(mentor_id),
            }
        for row in await fetch(conn, "mentor_decisions", mentor_id=mentor_id, limit=20):
            result.history.append(plain(row))
        for row in await fetch(conn, "mentor_pushes", mentor_id=mentor_id, limit=20):
            result.pushes.append(plain(row))
    return result


async def mentor_locale(conn: Conn, mentor_id: uuid.UUID) -> str | None:
    """``peer_mentor.locale`` when the platform has that column (policy_inputs reads it)."""
    rows = await fetch(
        conn, "policy_inputs", mentors=[mentor_id], scenario_type="all", as_of=dt.datetime.now(dt.UTC)
    )
    return rows[0]["locale"] if rows else None


def programme_of(rules: Rules, mentor: MentorRecord, locale: str | None) -> dict[str, Any]:
    """Which programme a mentor runs under, what it overrides, and which locale applies."""
    org = mentor.organization_id
    listed = org in rules.organization_ids()
    chain = rules.locale_chain(org, locale)
    return {
        "organization_id": str(org),
        "organization_name": rules.organization_name(org),
        "programme": f"organisation {org}" if listed else "default",
        "why": "the rules file lists this organisation"
        if listed
        else "the organisation is not listed in the rules file: the top level applies",
        "overrides": rules.overrides(org),
        "locale_chain": {
            "mentor": locale,
            "organization": rules.organization(org).default_locale,
            "default": rules.default_locale,
        },
        "locale": next((c for c in chain if c), rules.default_locale),
    }


async def describe(
    conn: Conn, rule: RuleBase, mentor: MentorRecord, as_of: dt.datetime
) -> tuple[dict[str, Any], str]:
    """The inputs a rule looked at for the mentor, and why it would not fire if it does not."""
    scenario = scenario_of(rule)
    state = await scenario.load_state(conn, rule, mentor, as_of)
    return scenario.explain(state, rule, as_of)
