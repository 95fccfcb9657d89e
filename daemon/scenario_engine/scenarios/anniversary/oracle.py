"""Anniversaries, the pure rule: "N years as a peer mentor", once per mentor and year number.

It fires on the local calendar day of ``joined_at`` in the mentor's time zone, N years on, and
stays due for the rule's ``grace_days`` local days after it (default 1). The grace is what makes
a day that fell entirely between two sweeps still greeted: a local day can be 23 hours long (New
York's 14 March 2027 runs 05:00 UTC to 04:00 UTC next day, so a sweep daily at 04:30 UTC never
falls inside it), and any sweep interval of 23 hours or more can step over a whole day. With a
grace of G days a greeting goes out at the first sweep up to G local days late; beyond that it
is not sent (a greeting weeks late is not a greeting). A mentor who joined on 29 February
celebrates on 28 February in years that have no 29th. A join instant outside the evaluable range
has no calendar day and is never celebrated.
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


def latest_anniversary(joined: dt.date, today: dt.date) -> tuple[int, dt.date] | None:
    """(year number, day) of the most recent anniversary on or before ``today``, if any (the
    SQL computes the same in closed form: this year's, else last year's)."""
    years = today.year - joined.year
    if years >= 1 and anniversary_on(joined, today.year) > today:
        years -= 1
    if years < 1:
        return None
    return years, anniversary_on(joined, joined.year + years)


def due_anniversary(
    state: AnniversaryState, as_of: dt.datetime, grace_days: int
) -> tuple[int, dt.date, dt.date] | None:
    """(year number, join date, the anniversary day) when, in the mentor's zone, the latest
    anniversary is today or at most ``grace_days`` local days ago."""
    if not is_evaluable(state.joined_at):
        return None
    try:
        zone = load_zone(state.timezone)
    except UnknownTimezone as exc:
        raise MentorDataError({state.mentor_id: str(exc)}) from None
    today = as_of.astimezone(zone).date()
    joined = state.joined_at.astimezone(zone).date()
    found = latest_anniversary(joined, today)
    if found is None or (today - found[1]).days > grace_days:
        return None
    return found[0], joined, found[1]


def decide_anniversary(
    state: AnniversaryState, rule: AnniversaryRule, as_of: dt.datetime
) -> Candidate | None:
    if state.status != "active":
        return None
    found = due_anniversary(state, as_of, rule.grace_days)
    if found is None:
        return None
    years, joined, day = found
    if rule.years and years not in rule.years:
        return None
    if years in state.celebrated:
        return None
    return build_candidate(state.mentor_id, rule, years, joined, day)


def build_candidate(
    mentor_id: uuid.UUID, rule: AnniversaryRule, years: int, joined: dt.date, day: dt.date
) -> Candidate:
    return Candidate(
        mentor_id=mentor_id,
        scenario_type=TYPE,
        rule_name=rule.name,
        subject=str(years),
        seq=0,
        dedup_key=dedup_key(TYPE, rule.name, mentor_id, str(years), 0),
        inputs=dict(
            AnniversaryContext(years=years, joined_on=joined.isoformat(), anniversary_on=day.isoformat())
        ),
    )


def why_not(state: AnniversaryState, rule: AnniversaryRule, as_of: dt.datetime) -> str:
    if state.status != "active":
        return f"mentor is {state.status}"
    if not is_evaluable(state.joined_at):
        return f"joined_at {iso(state.joined_at)} has no calendar day"
    found = due_anniversary(state, as_of, rule.grace_days)
    if found is None:
        if rule.grace_days:
            return f"the mentor's anniversary is neither today nor in the last {rule.grace_days} day(s)"
        return "today is not the mentor's anniversary"
    if rule.years and found[0] not in rule.years:
        return f"year {found[0]} is not celebrated by this rule"
    return f"year {found[0]} already celebrated"
