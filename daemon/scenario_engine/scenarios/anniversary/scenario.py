"""The anniversary scenario as the registry sees it (scenarios/protocol.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from scenario_engine.db.connect import Conn
from scenario_engine.db.queries import fetch
from scenario_engine.db.records import Column, MentorRecord, TypedRow, load_notifications
from scenario_engine.instants import iso
from scenario_engine.scenarios.anniversary import oracle
from scenario_engine.scenarios.anniversary.context import AnniversaryContext
from scenario_engine.scenarios.anniversary.oracle import AnniversaryState
from scenario_engine.scenarios.anniversary.rule import AnniversaryRule
from scenario_engine.scenarios.base import Candidate, MentorDataError
from scenario_engine.scenarios.common import ACTIVITY_OUTCOME, SetBased
from scenario_engine.scenarios.protocol import OutcomeSpec, Recheck
from scenario_engine.scenarios.zones import UnknownTimezone, known_zones


class AnniversaryRow(TypedRow):
    """A row of ``anniversary_candidates`` (queries.sql). On a ``problem`` row (a zone Python
    cannot load) every other column is NULL."""

    mentor_id = Column[uuid.UUID]()
    years = Column[int | None]()
    joined_on = Column[dt.date | None]()
    day = Column[dt.date | None]()
    problem = Column[str | None]()


class AnniversaryScenario(SetBased[AnniversaryRule, AnniversaryRow]):
    type = oracle.TYPE
    label = "Anniversary"
    title = "Anniversary greetings"
    about = (
        "A greeting on a mentor's anniversary with the programme; "
        "success is that they stay active afterwards."
    )
    context = AnniversaryContext
    rule_model = AnniversaryRule
    # The join date and zone (peer_mentor) decide the day; opt-outs are re-evaluated at once.
    watched_tables = frozenset({"peer_mentor", "notification_preference"})
    recheck: Recheck | None = None
    outcome = OutcomeSpec("kept going", "no activity after", ACTIVITY_OUTCOME, plain="kept going")

    candidate_query = "anniversary_candidates"
    row_class = AnniversaryRow
    due_query = "anniversary_due"
    baseline_query = "anniversary_baseline"  # today's anniversaries are greeted already

    def rule_params(self, rule: AnniversaryRule) -> dict[str, Any]:
        return {
            "years": list(rule.years),
            "zones": list(known_zones()),
            "grace_days": rule.grace_days,
        }

    def from_row(self, row: AnniversaryRow, rule: AnniversaryRule, as_of: dt.datetime) -> Candidate:
        problem, years, joined, day = row.problem, row.years, row.joined_on, row.day
        if problem is not None:
            raise MentorDataError({row.mentor_id: str(UnknownTimezone(problem))})
        assert years is not None and joined is not None and day is not None  # NULL only on a problem row
        return oracle.build_candidate(row.mentor_id, rule, int(years), joined, day)

    async def load_state(
        self, conn: Conn, rule: AnniversaryRule, mentor: MentorRecord, as_of: dt.datetime
    ) -> AnniversaryState:
        greeted = {int(n.subject) for n in await load_notifications(conn, mentor.id, rule.name)}
        rows = await fetch(conn, "anniversary_baselines", mentor_id=mentor.id, rule_name=rule.name)
        return AnniversaryState(
            mentor_id=mentor.id,
            status=mentor.status,
            timezone=mentor.timezone,
            joined_at=mentor.joined_at,
            celebrated=frozenset(greeted | {int(r["years"]) for r in rows}),
        )

    def decide(self, state: AnniversaryState, rule: AnniversaryRule, as_of: dt.datetime) -> list[Candidate]:
        found = oracle.decide_anniversary(state, rule, as_of)
        return [found] if found else []

    def explain(
        self, state: AnniversaryState, rule: AnniversaryRule, as_of: dt.datetime
    ) -> tuple[dict[str, Any], str]:
        inputs = {
            "status": state.status,
            "joined_at": iso(state.joined_at),
            "timezone": state.timezone,
            "years": rule.years or "every year",
            "celebrated": sorted(state.celebrated),
        }
        return inputs, oracle.why_not(state, rule, as_of)

    def due_params(
        self, rules: Sequence[AnniversaryRule], since: dt.datetime, as_of: dt.datetime
    ) -> dict[str, Any]:
        grace = max((r.grace_days for r in rules), default=0)
        return {"since": since, "as_of": as_of, "zones": list(known_zones()), "grace_days": grace}

    def baseline_params(self, rule: AnniversaryRule) -> dict[str, Any]:
        return {"years": list(rule.years), "zones": list(known_zones()), "grace_days": rule.grace_days}

    def backfill(self, rule: AnniversaryRule) -> bool:
        return rule.backfill


SCENARIO = AnniversaryScenario()
