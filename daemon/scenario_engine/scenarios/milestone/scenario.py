"""The milestone scenario as the registry sees it (scenarios/protocol.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.records import Column, MentorRecord, TypedRow, load_achievements, load_activities
from scenario_engine.scenarios.base import Candidate, MentorDataError, threshold_label
from scenario_engine.scenarios.common import ACTIVITY_OUTCOME, SetBased
from scenario_engine.scenarios.milestone import oracle
from scenario_engine.scenarios.milestone.context import MilestoneContext
from scenario_engine.scenarios.milestone.oracle import MilestoneState
from scenario_engine.scenarios.milestone.rule import MilestoneRule
from scenario_engine.scenarios.protocol import OutcomeSpec, Recheck
from scenario_engine.scenarios.zones import UnknownTimezone, known_zones


class MilestoneRow(TypedRow):
    """A row of ``milestone_candidates`` (queries.sql). On a ``problem`` row (a zone Python
    cannot load) every other column is NULL."""

    mentor_id = Column[uuid.UUID]()
    period = Column[str | None]()
    value = Column[float | None]()
    new_thresholds = Column[list[float] | None]()
    problem = Column[str | None]()


class MilestoneScenario(SetBased[MilestoneRule, MilestoneRow]):
    type = oracle.TYPE
    label = "Milestone"
    title = "Milestone celebrations"
    about = "Congratulations when a mentor reaches a milestone; success is that they stay active afterwards."
    context = MilestoneContext
    rule_model = MilestoneRule
    # Activity moves the counts; a coordinator awarding or removing an achievement changes what
    # is already celebrated; status, zone (the calendar year) and opt-outs are re-evaluated.
    watched_tables = frozenset({"activity", "achievement", "peer_mentor", "notification_preference"})
    recheck: Recheck | None = None
    outcome = OutcomeSpec("kept going", "no activity after", ACTIVITY_OUTCOME, plain="kept going")

    candidate_query = "milestone_candidates"
    row_class = MilestoneRow
    due_query = "milestone_due"
    baseline_query = "milestone_baseline"  # thresholds already crossed are celebrated already

    def rule_params(self, rule: MilestoneRule) -> dict[str, Any]:
        return {
            "metric": rule.metric,
            "period": rule.period,
            "thresholds": list(rule.thresholds),
            "labels": [threshold_label(t) for t in rule.thresholds],
            "zones": list(known_zones()),
        }

    def needs_zones(self, rule: MilestoneRule) -> bool:
        return rule.period == "year"  # a zone Python cannot load has no calendar year

    def from_row(self, row: MilestoneRow, rule: MilestoneRule, as_of: dt.datetime) -> Candidate:
        problem, period, value, crossed = row.problem, row.period, row.value, row.new_thresholds
        if problem is not None:
            raise MentorDataError({row.mentor_id: str(UnknownTimezone(problem))})
        assert period is not None and value is not None and crossed is not None  # NULL only on a problem row
        return oracle.build_candidate(row.mentor_id, rule, period, float(value), list(crossed))

    async def load_state(
        self, conn: Conn, rule: MilestoneRule, mentor: MentorRecord, as_of: dt.datetime
    ) -> MilestoneState:
        return MilestoneState(
            mentor_id=mentor.id,
            status=mentor.status,
            timezone=mentor.timezone,
            activities=tuple(await load_activities(conn, mentor.id, as_of)),
            achieved=await load_achievements(conn, mentor.id),
        )

    def decide(self, state: MilestoneState, rule: MilestoneRule, as_of: dt.datetime) -> list[Candidate]:
        found = oracle.decide_milestone(state, rule, as_of)
        return [found] if found else []

    def explain(
        self, state: MilestoneState, rule: MilestoneRule, as_of: dt.datetime
    ) -> tuple[dict[str, Any], str]:
        period, start_at = oracle.period_of(rule, state.timezone, as_of)
        value = oracle.metric_value(
            rule.metric, (a for a in state.activities if start_at is None or a.occurred_at >= start_at)
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
        return inputs, oracle.why_not(state, rule, value)

    def due_params(
        self, rules: Sequence[MilestoneRule], since: dt.datetime, as_of: dt.datetime
    ) -> dict[str, Any]:
        return {"since": since, "as_of": as_of}

    def baseline_params(self, rule: MilestoneRule) -> dict[str, Any]:
        return {
            "metric": rule.metric,
            "period": rule.period,
            "thresholds": list(rule.thresholds),
            "zones": list(known_zones()),
        }

    def backfill(self, rule: MilestoneRule) -> bool:
        return rule.backfill


SCENARIO = MilestoneScenario()
