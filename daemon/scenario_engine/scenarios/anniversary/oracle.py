"""Anniversaries, the pure rule: "N years as a peer mentor", once per mentor and year number.

It fires on the local calendar day of ``joined_at`` in the mentor's time zone, N years on. A
mentor who joined on 29 February celebrates on 28 February in years that have no 29th. Only
that day counts: a greeting that could not go out that day (the mentor was paused, the engine
was down all day) is not sent later. A join instant outside the evaluable range has no
calendar day and is never celebrated.
"""

from __future__ import annotations

import calendar
import datetime as dt
import uuid
from dataclasses import dataclass

from scenario_engine.instants import is_evaluable, iso
from scenario_engine.scenarios.anniversary.context import AnniversaryContext
from scenario_engine.scenarios.anniversary.rule import AnniversaryRule
from scenario_engine.scenarios.base import Candidate, MentorDataError, dedup_key
from scenario_engine.scenarios.zones import UnknownTimezone, load_zone

TYPE = "anniversary"


@dataclass(frozen=True)
class AnniversaryState:
    mentor_id: uuid.UUID
    status: str
    timezone: str
    joined_at: dt.datetime
    celebrated: frozenset[int]  # year numbers this rule already greeted or baselined


def anniversary_on(joined: dt.date, year: int) -> dt.date:
    if (joined.month, joined.day) == (2, 29) and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return joined.replace(year=year)


def todays_anniversary(state: AnniversaryState, as_of: dt.datetime) -> tuple[int, dt.date, dt.date] | None:
    """(year number, join date, today) when today is the mentor's anniversary in their zone."""
    if not is_evaluable(state.joined_at):
        return None
    try:
        zone = load_zone(state.timezone)
    except UnknownTimezone as exc:
        raise MentorDataError({state.mentor_id: str(exc)}) from None
    today = as_of.astimezone(zone).date()
    joined = state.joined_at.astimezone(zone).date()
    years = today.year - joined.year
    if years < 1 or today != anniversary_on(joined, today.year):
        return None
    return years, joined, today


def decide_anniversary(
    state: AnniversaryState, rule: AnniversaryRule, as_of: dt.datetime
) -> Candidate | None:
    if state.status != "active":
        return None
    found = todays_anniversary(state, as_of)
    if found is None:
        return None
    years, joined, today = found
    if rule.years and years not in rule.years:
        return None
    if years in state.celebrated:
        return None
    return build_candidate(state.mentor_id, rule, years, joined, today)


def build_candidate(
    mentor_id: uuid.UUID, rule: AnniversaryRule, years: int, joined: dt.date, today: dt.date
) -> Candidate:
    return Candidate(
        mentor_id=mentor_id,
        scenario_type=TYPE,
        rule_name=rule.name,
        subject=str(years),
        seq=0,
        dedup_key=dedup_key(TYPE, rule.name, mentor_id, str(years), 0),
        inputs=dict(
            AnniversaryContext(years=years, joined_on=joined.isoformat(), anniversary_on=today.isoformat())
        ),
    )


def why_not(state: AnniversaryState, rule: AnniversaryRule, as_of: dt.datetime) -> str:
    if state.status != "active":
        return f"mentor is {state.status}"
    if not is_evaluable(state.joined_at):
        return f"joined_at {iso(state.joined_at)} has no calendar day"
    found = todays_anniversary(state, as_of)
    if found is None:
        return "today is not the mentor's anniversary"
    if rule.years and found[0] not in rule.years:
        return f"year {found[0]} is not celebrated by this rule"
    return f"year {found[0]} already celebrated"
