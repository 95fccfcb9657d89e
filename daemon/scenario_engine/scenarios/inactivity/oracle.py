"""Inactivity, the pure rule: a mentor who has logged nothing for the threshold gets a reminder.

A *spell* starts at the last activity (or the join date). The first reminder is due
once ``as_of - spell start >= threshold``; later ones in the same spell only after the
rule's cooldown, up to ``max_reminders``. New activity starts a new spell.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from scenario_engine.instants import describe_instant, epoch_micros, is_evaluable, iso
from scenario_engine.scenarios.base import Candidate, MentorDataError, dedup_key
from scenario_engine.scenarios.inactivity.context import InactivityContext
from scenario_engine.scenarios.inactivity.rule import InactivityRule

TYPE = "inactivity"


@dataclass(frozen=True)
class InactivityState:
    mentor_id: uuid.UUID
    status: str
    joined_at: dt.datetime
    last_activity_at: dt.datetime | None  # newest activity at or before as_of
    reminders_sent: int  # in the spell that starts at the effective last activity
    last_reminder_as_of: dt.datetime | None


def spell_start(state: InactivityState) -> dt.datetime:
    return state.last_activity_at if state.last_activity_at is not None else state.joined_at


def decide_inactivity(state: InactivityState, rule: InactivityRule, as_of: dt.datetime) -> Candidate | None:
    """The pure rule. Paused and inactive mentors get no inactivity nudges."""
    if state.status != "active":
        return None
    # Absolute time: two datetimes sharing one ZoneInfo subtract as wall clocks (DST!).
    as_of = as_of.astimezone(dt.UTC)
    start = spell_start(state).astimezone(dt.UTC)
    threshold = dt.timedelta(days=rule.threshold_days)
    if as_of - start < threshold:
        return None
    if not is_evaluable(start):  # e.g. joined_at = '-infinity': no spell key can name it
        raise MentorDataError({state.mentor_id: spell_problem(describe_instant(start))})
    if state.reminders_sent >= rule.max_reminders:
        return None
    last = state.last_reminder_as_of
    if last is not None and as_of - last.astimezone(dt.UTC) < rule.cooldown:
        return None
    return build_candidate(
        state.mentor_id,
        rule,
        str(epoch_micros(start)),
        state.reminders_sent + 1,
        context(start, state.last_activity_at is None, rule, as_of, state.reminders_sent + 1),
    )


def build_candidate(
    mentor_id: uuid.UUID, rule: InactivityRule, spell: str, number: int, inputs: InactivityContext
) -> Candidate:
    return Candidate(
        mentor_id=mentor_id,
        scenario_type=TYPE,
        rule_name=rule.name,
        subject=spell,
        seq=number,
        dedup_key=dedup_key(TYPE, rule.name, mentor_id, spell, number),
        inputs=dict(inputs),
    )


def spell_problem(start: str) -> str:
    return f"the inactivity spell starts at {start}, outside the evaluable range"


def context(
    start: dt.datetime, never_active: bool, rule: InactivityRule, as_of: dt.datetime, number: int
) -> InactivityContext:
    return InactivityContext(
        last_activity_at=iso(start),
        since="joined" if never_active else "last_activity",
        days_inactive=(as_of - start).days,
        threshold_days=rule.threshold_days,
        reminder=number,
        max_reminders=rule.max_reminders,
    )


def why_not(state: InactivityState, rule: InactivityRule, as_of: dt.datetime) -> str:
    """Why the rule does not fire now (explain); only meaningful when ``decide`` found nothing."""
    if state.status != "active":
        return f"mentor is {state.status}"
    if as_of - spell_start(state) < dt.timedelta(days=rule.threshold_days):
        return f"inactive for less than {rule.threshold_days} days"
    if state.reminders_sent >= rule.max_reminders:
        return "all reminders of this spell were sent"
    return "next reminder of this spell not due yet (cooldown)"
