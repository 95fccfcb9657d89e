"""Milestones, the pure rule: the first time a period's count reaches a threshold, celebrate once.

Counts (sessions, hours, contacts) are taken over the current calendar year in the
mentor's time zone, or over all time. Every newly crossed threshold is written to the
``achievement`` ledger; one notification goes out, for the highest one. The ledger is
what makes "never celebrated twice in a period" hold even when activities are deleted
and re-added.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from scenario_engine.db.records import ActivityRecord
from scenario_engine.scenarios.base import (
    Achievement,
    Candidate,
    MentorDataError,
    dedup_key,
    threshold_label,
)
from scenario_engine.scenarios.milestone.context import MilestoneContext
from scenario_engine.scenarios.milestone.rule import MilestoneRule
from scenario_engine.scenarios.zones import UnknownTimezone, load_zone

TYPE = "milestone"
ActivityRow = ActivityRecord  # the oracle reads activities as the database boundary types them


@dataclass(frozen=True)
class MilestoneState:
    mentor_id: uuid.UUID
    status: str
    timezone: str
    activities: tuple[ActivityRow, ...]  # those at or before as_of
    achieved: frozenset[tuple[str, float, str]]  # (milestone, threshold, period)


def period_of(rule: MilestoneRule, timezone: str, as_of: dt.datetime) -> tuple[str, dt.datetime | None]:
    """The period label and its start (None for all time), in the mentor's zone.
    Raises ``UnknownTimezone`` for a yearly rule and a zone Python cannot load."""
    if rule.period == "all_time":
        return "all_time", None
    zone = load_zone(timezone)
    year = as_of.astimezone(zone).year
    return str(year), dt.datetime(year, 1, 1, tzinfo=zone)


def metric_value(metric: str, activities: Iterable[ActivityRow]) -> float:
    rows = list(activities)
    if metric == "sessions":
        return float(sum(1 for a in rows if a.kind == "session"))
    if metric == "hours":
        return float(sum(a.duration_minutes for a in rows)) / 60
    return float(sum(a.contacts for a in rows))


def decide_milestone(state: MilestoneState, rule: MilestoneRule, as_of: dt.datetime) -> Candidate | None:
    if state.status != "active":
        return None
    try:
        period, start = period_of(rule, state.timezone, as_of)
    except UnknownTimezone as exc:
        raise MentorDataError({state.mentor_id: str(exc)}) from None
    in_period = (
        a for a in state.activities if a.occurred_at <= as_of and (start is None or a.occurred_at >= start)
    )
    value = metric_value(rule.metric, in_period)
    new = [t for t in rule.thresholds if value >= t and (rule.name, t, period) not in state.achieved]
    if not new:
        return None
    return build_candidate(state.mentor_id, rule, period, value, new)


def build_candidate(
    mentor_id: uuid.UUID, rule: MilestoneRule, period: str, value: float, new_thresholds: list[float]
) -> Candidate:
    top = max(new_thresholds)
    label = threshold_label(top)
    return Candidate(
        mentor_id=mentor_id,
        scenario_type=TYPE,
        rule_name=rule.name,
        subject=period,
        seq=0,
        dedup_key=dedup_key(TYPE, rule.name, mentor_id, period, label),
        inputs=dict(
            MilestoneContext(
                metric=rule.metric,
                value=value,
                threshold=top,
                threshold_text=label,
                newly_crossed=sorted(new_thresholds),
                period=period,
                period_label="year" if rule.period == "year" else "time",
            )
        ),
        achievements=tuple(Achievement(rule.name, t, period) for t in sorted(new_thresholds)),
    )


def why_not(state: MilestoneState, rule: MilestoneRule, value: float) -> str:
    """Why the rule does not fire now (explain); only meaningful when ``decide`` found nothing."""
    if state.status != "active":
        return f"mentor is {state.status}"
    below = [t for t in rule.thresholds if value < t]
    return f"next threshold {below[0]:g} not reached" if below else "every threshold achieved"
