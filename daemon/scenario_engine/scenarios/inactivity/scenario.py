"""The inactivity scenario as the registry sees it (scenarios/protocol.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.records import Column, MentorRecord, TypedRow, load_activities, load_notifications
from scenario_engine.instants import epoch_micros, is_evaluable, iso
from scenario_engine.scenarios.base import Candidate, MentorDataError
from scenario_engine.scenarios.common import ACTIVITY_OUTCOME, SetBased
from scenario_engine.scenarios.inactivity import oracle
from scenario_engine.scenarios.inactivity.context import InactivityContext
from scenario_engine.scenarios.inactivity.oracle import InactivityState
from scenario_engine.scenarios.inactivity.rule import InactivityRule
from scenario_engine.scenarios.protocol import OutcomeSpec, Recheck


class InactivityRow(TypedRow):
    """A row of ``inactivity_candidates`` (queries.sql). On a ``problem`` row (a spell that
    starts outside the evaluable range) the spell and its start are NULL."""

    mentor_id = Column[uuid.UUID]()
    last_activity_at = Column[dt.datetime | None]()
    never_active = Column[bool]()
    spell = Column[str | None]()
    reminders_sent = Column[int]()
    problem = Column[str | None]()


class InactivityScenario(SetBased[InactivityRule, InactivityRow]):
    type = oracle.TYPE
    label = "Inactivity"
    title = "Check-ins with quiet mentors"
    about = (
        "A friendly check-in when a mentor has logged nothing for a while; "
        "success is that they log activity again."
    )
    context = InactivityContext
    rule_model = InactivityRule
    # New, changed or deleted activity ends (or re-opens) a spell; a status, zone or join date
    # change (peer_mentor) and an opt-in or opt-out (notification_preference) are re-evaluated.
    watched_tables = frozenset({"activity", "peer_mentor", "notification_preference"})
    recheck: Recheck | None = Recheck("inactivity_recheck", "mentor active again")
    outcome = OutcomeSpec("re-activated", "still inactive", ACTIVITY_OUTCOME, plain="came back")

    candidate_query = "inactivity_candidates"
    row_class = InactivityRow
    due_query = "inactivity_due"

    def rule_params(self, rule: InactivityRule) -> dict[str, Any]:
        return {
            "threshold_secs": rule.threshold_days * 86400.0,
            "max_reminders": rule.max_reminders,
            "spacing_secs": rule.cooldown.total_seconds(),
        }

    def from_row(self, row: InactivityRow, rule: InactivityRule, as_of: dt.datetime) -> Candidate:
        problem, start, spell = row.problem, row.last_activity_at, row.spell
        if problem is not None:
            raise MentorDataError({row.mentor_id: oracle.spell_problem(problem)})
        assert start is not None and spell is not None  # NULL only on a problem row
        number = int(row.reminders_sent) + 1
        inputs = oracle.context(start, bool(row.never_active), rule, as_of, number)
        return oracle.build_candidate(row.mentor_id, rule, spell, number, inputs)

    async def load_state(
        self, conn: Conn, rule: InactivityRule, mentor: MentorRecord, as_of: dt.datetime
    ) -> InactivityState:
        activities = await load_activities(conn, mentor.id, as_of)
        last = max((a.occurred_at for a in activities), default=None)
        start = last if last is not None else mentor.joined_at
        spell = str(epoch_micros(start)) if is_evaluable(start) else None
        sent = [n for n in await load_notifications(conn, mentor.id, rule.name) if n.subject == spell]
        return InactivityState(
            mentor_id=mentor.id,
            status=mentor.status,
            joined_at=mentor.joined_at,
            last_activity_at=last,
            reminders_sent=len(sent),
            last_reminder_as_of=max((n.as_of for n in sent), default=None),
        )

    def decide(self, state: InactivityState, rule: InactivityRule, as_of: dt.datetime) -> list[Candidate]:
        found = oracle.decide_inactivity(state, rule, as_of)
        return [found] if found else []

    def explain(
        self, state: InactivityState, rule: InactivityRule, as_of: dt.datetime
    ) -> tuple[dict[str, Any], str]:
        start = oracle.spell_start(state)
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
        return inputs, oracle.why_not(state, rule, as_of)

    def due_params(
        self, rules: Sequence[InactivityRule], since: dt.datetime, as_of: dt.datetime
    ) -> dict[str, Any]:
        return {
            "since": since,
            "as_of": as_of,
            "threshold_secs": sorted({r.threshold_days * 86400.0 for r in rules}),
            "rule_names": [r.name for r in rules],
            "spacing_secs": [r.cooldown.total_seconds() for r in rules],
        }


SCENARIO = InactivityScenario()
