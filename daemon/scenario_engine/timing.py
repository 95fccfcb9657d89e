"""Delivery timing: hold a push until the mentor's usual hour (docs/CHANNELS.md).

A rule with ``send_at = "usual_hour"`` holds each push until the next time the mentor's
clock shows the hour at which they most often logged activity over their last N activities
(``usual_hour_activities``); with fewer than ``usual_hour_min_history`` activities, the
programme's ``usual_hour``. Never longer than the rule's ``max_delay_hours``, and never for
a certification reminder in its last tier (it must not wait). Quiet hours are the
dispatcher's, as for every push: a hold that ends inside them waits for their end.

It is an experiment, like the holdout: ``timing_percent`` of the mentors a rule sends to get
the held push (arm ``usual_hour``), the others the immediate one (arm ``immediate``), drawn by
the holdout's salted hash (outcomes/holdout.py) with the programme's ``timing_salt`` and the
rule's name. The usual hours of a batch come from one query (queries/timing.sql).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scenario_engine.db.queries import fetch
from scenario_engine.domain.rule import RuleBase
from scenario_engine.outcomes.holdout import in_group
from scenario_engine.scenarios.base import Candidate
from scenario_engine.scenarios.rules import Rules

TimingArm = str  # 'usual_hour' | 'immediate'


@dataclass(frozen=True)
class UsualHour:
    """A mentor's activity history as the usual hour reads it."""

    timezone: str
    hour: int | None  # the most frequent local hour; None without activity
    in_hour: int  # activities in that hour
    activities: int  # activities looked at (at most usual_hour_activities)


@dataclass(frozen=True)
class Hold:
    until: dt.datetime | None  # None: due at once
    arm: TimingArm | None  # None: not in the timing experiment
    reason: str | None  # what explain shows, e.g. "held until 19:00 Europe/Oslo: ..."


NOT_TIMED = Hold(None, None, None)


def digest_arm(rules: Rules, mentor_id: uuid.UUID) -> str | None:
    """The mentor's arm of the programme's digest experiment ('digest' or 'separate'); None
    when the programme sends no digests. Per mentor, not per rule: a digest spans rules."""
    if rules.digest_minutes <= 0:
        return None
    return "digest" if in_group(rules.digest_percent, rules.digest_salt, mentor_id) else "separate"


def digested(rule: RuleBase, rules: Rules, candidate: Candidate) -> tuple[bool, str | None]:
    """Whether this allowed push waits for the mentor's digest, and the mentor's digest arm.
    A last-tier certification reminder is never held back by a digest (and is in no arm)."""
    if rules.digest_minutes <= 0 or last_tier(rule, candidate):
        return False, None
    arm = digest_arm(rules, candidate.mentor_id)
    return arm == "digest", arm


def timing_arm(rule: RuleBase, rules: Rules, mentor_id: uuid.UUID) -> TimingArm:
    """The mentor's arm of this rule's timing experiment: a pure function of salt and mentor."""
    salt = f"{rules.timing_salt}:{rule.name}"
    return "usual_hour" if in_group(rules.timing_percent, salt, mentor_id) else "immediate"


def last_tier(rule: RuleBase, candidate: Candidate) -> bool:
    """A certification reminder of the rule's smallest tier: the last before expiry."""
    tiers: Sequence[int] | None = getattr(rule, "tiers_days", None)
    return rule.scenario_type == "certification_expiry" and bool(tiers) and candidate.seq == min(tiers or [0])


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_local_hour(as_of: dt.datetime, zone: ZoneInfo, hour: int) -> dt.datetime:
    """The first instant at or after ``as_of`` at which the local clock shows ``hour``:00 or later
    in that hour; ``as_of`` itself when it already does. On a spring-forward day whose hour does
    not exist, the instant the clock jumps past it (zoneinfo's fold=0 reading)."""
    local = as_of.astimezone(zone)
    if local.hour == hour:
        return as_of
    day = local.date() if local.hour < hour else local.date() + dt.timedelta(days=1)
    target = dt.datetime.combine(day, dt.time(hour), tzinfo=zone).astimezone(dt.UTC)
    return max(target, as_of)


def plan_hold(
    candidate: Candidate, rule: RuleBase, rules: Rules, usual: UsualHour | None, as_of: dt.datetime
) -> Hold:
    """When one allowed push of a usual-hour rule becomes due, its arm, and why."""
    if rule.send_at != "usual_hour" or last_tier(rule, candidate):
        return NOT_TIMED
    arm = timing_arm(rule, rules, candidate.mentor_id)
    if arm == "immediate":
        return Hold(None, arm, None)
    timezone = usual.timezone if usual is not None else "UTC"
    zone = _zone(timezone)
    if usual is not None and usual.hour is not None and usual.activities >= rules.usual_hour_min_history:
        hour = usual.hour
        why = (
            f"{usual.in_hour} of the last {usual.activities} activities were between "
            f"{hour:02d}:00 and {(hour + 1) % 24:02d}:00"
        )
    else:
        hour = rules.usual_hour
        seen = usual.activities if usual is not None else 0
        why = (
            f"the programme's usual hour: {seen} activities, fewer than the "
            f"{rules.usual_hour_min_history} the mentor's own hour needs"
        )
    until = next_local_hour(as_of, zone, hour)
    latest = as_of + dt.timedelta(hours=rule.max_delay_hours)
    if until > latest:
        local = latest.astimezone(zone)
        return Hold(
            latest,
            arm,
            f"held until {local:%H:%M} {timezone}, the rule's maximum delay of {rule.max_delay_hours:g} h "
            f"(usual hour {hour:02d}:00: {why})",
        )
    if until <= as_of:
        return Hold(None, arm, f"sent at once: the usual hour {hour:02d}:00 {timezone} is now ({why})")
    local = until.astimezone(zone)
    return Hold(until, arm, f"held until {local:%H:%M} {timezone}: {why}")


async def plan_holds(
    conn: Any,
    rule: RuleBase,
    rules: Rules,
    candidates: Sequence[Candidate],
    as_of: dt.datetime,
) -> list[Hold]:
    """The hold of each allowed candidate of one rule (one query for the batch's usual hours)."""
    if rule.send_at != "usual_hour" or not candidates:
        return [NOT_TIMED] * len(candidates)
    wanted = [
        c.mentor_id
        for c in candidates
        if not last_tier(rule, c) and timing_arm(rule, rules, c.mentor_id) == "usual_hour"
    ]
    usual: Mapping[uuid.UUID, UsualHour] = {}
    if wanted:
        rows = await fetch(
            conn,
            "usual_hours",
            mentor_ids=list(dict.fromkeys(wanted)),
            activities=rules.usual_hour_activities,
            as_of=as_of,
        )
        usual = {
            r["mentor_id"]: UsualHour(r["timezone"], r["hour"], int(r["in_hour"]), int(r["activities"]))
            for r in rows
        }
    return [plan_hold(c, rule, rules, usual.get(c.mentor_id), as_of) for c in candidates]
