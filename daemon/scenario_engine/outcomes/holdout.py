"""Holdout groups: which candidates policy would have sent are kept back as a control.

Assignment is a pure function of a salt and the mentor id — a SHA-256 bucket in 0..9999 —
so it is the same in every process, on the set-based and the single-mentor path, across
sweeps and rule reloads, and needs no stored state. Two groups are drawn: the global holdout
(``global_holdout_percent``: mentors whom no rule nudges) and, for everyone else, each rule's
own (``holdout_percent``, salted per rule, so that rules draw independent groups). A held-out
candidate is decided exactly as if sent — it takes its place in the reminder schedule, the
cooldown and the daily cap — and gets no push (docs/OUTCOMES.md).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from scenario_engine.domain.rule import RuleBase
from scenario_engine.policy import PolicyDecision
from scenario_engine.scenarios.base import Candidate
from scenario_engine.scenarios.rules import Rules

BUCKETS = 10_000  # a resolution of 0.01 %


def bucket(salt: str, mentor_id: uuid.UUID) -> int:
    digest = hashlib.sha256(f"{salt}:{mentor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_group(percent: float, salt: str, mentor_id: uuid.UUID) -> bool:
    return percent > 0 and bucket(salt, mentor_id) < round(percent * BUCKETS / 100)


@dataclass(frozen=True)
class ExperimentKey:
    """What identifies an experiment: change any part and a new one starts."""

    rule_name: str
    scenario_type: str
    holdout_salt: str
    holdout_percent: float
    global_holdout_salt: str
    global_holdout_percent: float


def experiment_key(rule: RuleBase, rules: Rules) -> ExperimentKey:
    return ExperimentKey(
        rule.name,
        rule.scenario_type,
        rule.salt,
        rule.holdout_percent,
        rules.global_holdout_salt,
        rules.global_holdout_percent,
    )


def holdout_reason(rule: RuleBase, rules: Rules, mentor_id: uuid.UUID) -> str | None:
    """Why this mentor is held out of this rule's pushes, or None (treated)."""
    if in_group(rules.global_holdout_percent, rules.global_holdout_salt, mentor_id):
        return f"in the global holdout ({rules.global_holdout_percent:g} % of mentors)"
    if in_group(rule.holdout_percent, rule.salt, mentor_id):
        return f"in the holdout of {rule.name} ({rule.holdout_percent:g} % of its candidates)"
    return None


def hold_out(
    decided: Sequence[tuple[Candidate, PolicyDecision]], rule: RuleBase, rules: Rules
) -> list[tuple[Candidate, PolicyDecision]]:
    """Turn the allowed decisions of held-out mentors into ``holdout`` decisions (pure)."""
    if rule.holdout_percent <= 0 and rules.global_holdout_percent <= 0:
        return list(decided)
    out: list[tuple[Candidate, PolicyDecision]] = []
    for cand, decision in decided:
        reason = holdout_reason(rule, rules, cand.mentor_id) if decision.allowed else None
        out.append((cand, PolicyDecision("holdout", reason) if reason else decision))
    return out
