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

from scenario_engine.config import CertificationExpiryRule, InactivityRule, MilestoneRule, Rule
from scenario_engine.db.queries import query
from scenario_engine.engine import Engine
from scenario_engine.evaluate import MentorState, load_mentor_state, utc
from scenario_engine.isolation import reason_for
from scenario_engine.notifications import Outcome
from scenario_engine.runtime.backoff import TRANSIENT_DB_ERRORS
from scenario_engine.scenarios import certification, inactivity, milestone
from scenario_engine.scenarios.base import MentorDataError, iso


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


def describe_state(state: MentorState, rule: Rule, as_of: dt.datetime) -> tuple[dict[str, Any], str]:
    """The inputs a rule looked at, and why it would not fire if it does not."""
    inputs: dict[str, Any]
    if isinstance(rule, InactivityRule) and isinstance(state, inactivity.InactivityState):
        start = inactivity.spell_start(state)
        inputs = {
            "status": state.status,
            "last_activity_at": iso(state.last_activity_at),
            "joined_at": iso(state.joined_at),
            "days_inactive": round((as_of - start).total_seconds() / 86400, 2),
            "threshold_days": rule.threshold_days,
            "reminders_sent_this_spell": state.reminders_sent,
            "max_reminders": rule.max_reminders,
            "last_reminder_at": iso(state.last_reminder_as_of),
        }
        if state.status != "active":
            why = f"mentor is {state.status}"
        elif as_of - start < dt.timedelta(days=rule.threshold_days):
            why = f"inactive for less than {rule.threshold_days} days"
        elif state.reminders_sent >= rule.max_reminders:
            why = "all reminders of this spell were sent"
        else:
            why = "next reminder of this spell not due yet (cooldown)"
        return inputs, why
    if isinstance(rule, MilestoneRule) and isinstance(state, milestone.MilestoneState):
        period, start_at = milestone.period_of(rule, state.timezone, as_of)
        value = milestone.metric_value(
            rule.metric,
            (a for a in state.activities if start_at is None or a.occurred_at >= start_at),
        )
        achieved = sorted(t for (name, t, p) in state.achieved if name == rule.name and p == period)
        inputs = {
            "status": state.status,
            "metric": rule.metric,
            "period": period,
            "value": value,
            "thresholds": rule.thresholds,
            "achieved": achieved,
        }
        if state.status != "active":
            return inputs, f"mentor is {state.status}"
        below = [t for t in rule.thresholds if value < t]
        return inputs, (f"next threshold {below[0]:g} not reached" if below else "every threshold achieved")
    if isinstance(rule, CertificationExpiryRule) and isinstance(state, certification.CertificationState):
        certs = []
        for c in sorted(state.certifications, key=lambda c: c.id):
            if c.revoked_at is not None:
                status = "revoked"
            elif c.expires_at <= as_of:
                status = "expired"
            elif certification.is_superseded(c, state.certifications):
                status = "superseded"
            elif certification.applicable_tier(rule, c.expires_at, as_of) is None:
                status = f"expires beyond the {rule.lead_time_days}-day lead time"
            else:
                status = f"in tier {certification.applicable_tier(rule, c.expires_at, as_of)}"
            certs.append(
                {
                    "id": c.id,
                    "type": c.type,
                    "expires_at": iso(c.expires_at),
                    "status": status,
                    "smallest_tier_sent": state.fired_tiers.get(c.id),
                }
            )
        return {"status": state.status, "tiers_days": rule.tiers_days, "certifications": certs}, (
            "no certification is due for a reminder"
        )
    raise TypeError(f"state {type(state).__name__} does not fit rule {rule.name!r}")


async def explain_mentor(
    engine: Engine, mentor_id: uuid.UUID, as_of: dt.datetime | None = None
) -> Explanation:
    at = utc(as_of)
    outcomes = await engine.evaluate_mentor(mentor_id, as_of=at, dry_run=True)
    now_quarantined = {q.mentor_id: q.reason for q in outcomes.quarantined}
    by_rule: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_rule.setdefault(o.candidate.rule_name, []).append(o)
    async with engine.pool.acquire() as conn:
        mentor = await conn.fetchrow(query("mentor_row"), mentor_id)
        if mentor is None:
            raise LookupError(f"no mentor with id {mentor_id}")
        result = Explanation(
            mentor=_plain(mentor),
            as_of=at,
        )
        for rule in engine.rules.enabled():
            try:
                state = await load_mentor_state(conn, rule, mentor_id, at)
                assert state is not None
                inputs, why_not = describe_state(state, rule, at)
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:  # a poison row: say what, instead of failing the command
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
                result.rules.append(
                    RuleTrace(
                        rule.name,
                        rule.scenario_type,
                        {**inputs, **o.candidate.inputs},
                        verdict,
                        o.decision.reason,
                    )
                )
        entry = await conn.fetchrow(query("mentor_quarantine"), mentor_id)
        if entry is not None or mentor_id in now_quarantined:
            result.quarantine = {
                **(_plain(entry) if entry else {}),
                "mentor_id": str(mentor_id),
                "quarantined_now": mentor_id in now_quarantined,
                "reason_now": now_quarantined.get(mentor_id),
            }
        for row in await conn.fetch(query("mentor_decisions"), mentor_id, 20):
            result.history.append(_plain(row))
        for row in await conn.fetch(query("mentor_pushes"), mentor_id, 20):
            result.pushes.append(_plain(row))
    return result


def _plain(row: Any) -> dict[str, Any]:
    """A row as printable values: instants in ISO form, ids as strings."""
    return {
        k: (iso(v) if isinstance(v, dt.datetime) else str(v) if isinstance(v, uuid.UUID) else v)
        for k, v in row.items()
    }
