"""Unit tests of the pure decision code (docs/SCENARIOS.md): no database, no event loop.

Every instant the engine hands these functions comes from Postgres (UTC) or through
``evaluate.utc()``; the tests also feed instants in other zones, because a pure function
of instants must not depend on the zone an instant happens to be written in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from scenario_engine.evaluate import apply_policy, utc
from scenario_engine.notifications import render
from scenario_engine.policy import PolicyState, decide_policy
from scenario_engine.scenarios.base import (
    EPOCH,
    Achievement,
    Candidate,
    days_left,
    epoch_micros,
    threshold_label,
)
from scenario_engine.scenarios.certification import (
    CertificationExpiryRule,
    CertificationRow,
    CertificationState,
    applicable_tier,
    decide_certifications,
    is_superseded,
    still_applies,
)
from scenario_engine.scenarios.inactivity import InactivityRule, InactivityState, decide_inactivity
from scenario_engine.scenarios.milestone import (
    ActivityRow,
    MilestoneRule,
    MilestoneState,
    decide_milestone,
    metric_value,
    period_of,
)
from scenario_engine.scenarios.rules import Rules

UTC = dt.UTC
LA = ZoneInfo("America/Los_Angeles")
AUCKLAND = ZoneInfo("Pacific/Auckland")
BERLIN = ZoneInfo("Europe/Berlin")
MENTOR = uuid.UUID("00000000-0000-0000-0000-000000000001")
OTHER = uuid.UUID("00000000-0000-0000-0000-000000000002")
T0 = dt.datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = dt.timedelta(days=1)
US = dt.timedelta(microseconds=1)
SEC = dt.timedelta(seconds=1)

# 2026-03-08 02:00 PST → 03:00 PDT (US spring-forward). Noon the day before, in UTC:
LA_NOON_BEFORE_SPRING_FORWARD = dt.datetime(2026, 3, 7, 12, tzinfo=LA).astimezone(UTC)

INACTIVE_21D = InactivityRule(name="inactive_21d", threshold_days=21, cooldown_days=7, max_reminders=3)
SESSIONS_YEAR = MilestoneRule(name="sessions_year", metric="sessions", period="year", thresholds=[2, 3, 5])
HOURS_ALL_TIME = MilestoneRule(name="hours_all", metric="hours", period="all_time", thresholds=[1.5, 4])
CERT_RULE = CertificationExpiryRule(name="cert_expiry", tiers_days=[30, 7, 1])


# --- helpers ------------------------------------------------------------------------------


def inactivity_state(
    *,
    last_activity_at: dt.datetime | None = T0,
    joined_at: dt.datetime = T0 - 100 * DAY,
    status: str = "active",
    reminders_sent: int = 0,
    last_reminder_as_of: dt.datetime | None = None,
) -> InactivityState:
    return InactivityState(
        mentor_id=MENTOR,
        status=status,
        joined_at=joined_at,
        last_activity_at=last_activity_at,
        reminders_sent=reminders_sent,
        last_reminder_as_of=last_reminder_as_of,
    )


def session(at: dt.datetime, *, kind: str = "session", minutes: int = 60, contacts: int = 1) -> ActivityRow:
    return ActivityRow(kind=kind, occurred_at=at, duration_minutes=minutes, contacts=contacts)


def milestone_state(
    activities: list[ActivityRow],
    *,
    timezone: str = "UTC",
    achieved: set[tuple[str, float, str]] | None = None,
    status: str = "active",
) -> MilestoneState:
    return MilestoneState(
        mentor_id=MENTOR,
        status=status,
        timezone=timezone,
        activities=tuple(activities),
        achieved=frozenset(achieved or set()),
    )


def cert(
    cert_id: int,
    expires_at: dt.datetime,
    *,
    type_: str = "first_aid",
    issued_at: dt.datetime | None = None,
    revoked_at: dt.datetime | None = None,
) -> CertificationRow:
    return CertificationRow(
        id=cert_id,
        type=type_,
        issued_at=issued_at if issued_at is not None else expires_at - 365 * DAY,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def cert_state(
    certs: list[CertificationRow],
    *,
    fired: dict[int, int] | None = None,
    status: str = "active",
    timezone: str = "UTC",
) -> CertificationState:
    return CertificationState(
        mentor_id=MENTOR,
        status=status,
        timezone=timezone,
        certifications=tuple(certs),
        fired_tiers=fired or {},
    )


def policy_state(
    *,
    status: str = "active",
    opted_out_scope: str | None = None,
    last_triggered_at: dt.datetime | None = None,
    sent_24h: int = 0,
    mentor_id: uuid.UUID = MENTOR,
) -> PolicyState:
    return PolicyState(
        mentor_id=mentor_id,
        status=status,
        opted_out_scope=opted_out_scope,
        last_triggered_at=last_triggered_at,
        last_rule_name="inactive_21d" if last_triggered_at is not None else None,
        sent_24h=sent_24h,
    )


# --- inactivity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elapsed", "fires"),
    [
        (21 * DAY - SEC, False),
        (21 * DAY - US, False),
        (21 * DAY, True),
        (21 * DAY + US, True),
        (40 * DAY, True),
    ],
    ids=["1s-before", "1us-before", "exactly", "1us-after", "long-after"],
)
def test_inactivity_fires_exactly_at_threshold_not_before(elapsed: dt.timedelta, fires: bool) -> None:
    found = decide_inactivity(inactivity_state(last_activity_at=T0), INACTIVE_21D, T0 + elapsed)
    assert (found is not None) == fires


def test_inactivity_first_reminder_candidate_fields() -> None:
    found = decide_inactivity(inactivity_state(last_activity_at=T0), INACTIVE_21D, T0 + 21 * DAY)
    assert found is not None
    spell = str(epoch_micros(T0))
    assert (found.scenario_type, found.rule_name, found.subject, found.seq) == (
        "inactivity",
        "inactive_21d",
        spell,
        1,
    )
    assert found.dedup_key == f"inactivity:inactive_21d:{MENTOR}:{spell}:1"
    assert found.inputs["days_inactive"] == 21
    assert found.inputs["since"] == "last_activity"
    assert found.inputs["last_activity_at"] == T0.isoformat()
    assert found.achievements == ()


def test_inactivity_uses_join_date_when_there_is_no_activity() -> None:
    joined = T0 - 30 * DAY
    state = inactivity_state(last_activity_at=None, joined_at=joined)
    assert decide_inactivity(state, INACTIVE_21D, joined + 21 * DAY - US) is None
    found = decide_inactivity(state, INACTIVE_21D, joined + 21 * DAY)
    assert found is not None
    assert found.subject == str(epoch_micros(joined))
    assert found.inputs["since"] == "joined"


def test_inactivity_last_activity_wins_over_join_date() -> None:
    state = inactivity_state(last_activity_at=T0, joined_at=T0 - 300 * DAY)
    assert decide_inactivity(state, INACTIVE_21D, T0 + 20 * DAY) is None
    found = decide_inactivity(state, INACTIVE_21D, T0 + 21 * DAY)
    assert found is not None
    assert found.subject == str(epoch_micros(T0))


def test_inactivity_mentor_who_joins_after_as_of_is_not_inactive() -> None:
    state = inactivity_state(last_activity_at=None, joined_at=T0 + DAY)
    assert decide_inactivity(state, INACTIVE_21D, T0) is None


@pytest.mark.parametrize("status", ["paused", "inactive"])
def test_inactivity_no_nudge_unless_mentor_is_active(status: str) -> None:
    state = inactivity_state(status=status, last_activity_at=T0 - 100 * DAY)
    assert decide_inactivity(state, INACTIVE_21D, T0) is None


@pytest.mark.parametrize(("reminders_sent", "expected_seq"), [(0, 1), (1, 2), (2, 3), (3, None), (4, None)])
def test_inactivity_reminders_stop_at_max_reminders(reminders_sent: int, expected_seq: int | None) -> None:
    last_reminder = None if reminders_sent == 0 else T0 + 21 * DAY
    state = inactivity_state(reminders_sent=reminders_sent, last_reminder_as_of=last_reminder)
    found = decide_inactivity(state, INACTIVE_21D, T0 + 100 * DAY)
    assert (found.seq if found else None) == expected_seq
    if found is not None:
        assert found.dedup_key.endswith(f":{expected_seq}")
        assert found.inputs["reminder"] == expected_seq


@pytest.mark.parametrize(
    ("since_last_reminder", "fires"),
    [(7 * DAY - US, False), (7 * DAY - SEC, False), (7 * DAY, True), (7 * DAY + US, True)],
    ids=["1us-before", "1s-before", "exactly", "1us-after"],
)
def test_inactivity_next_reminder_waits_for_the_cooldown(
    since_last_reminder: dt.timedelta, fires: bool
) -> None:
    first = T0 + 21 * DAY
    state = inactivity_state(reminders_sent=1, last_reminder_as_of=first)
    found = decide_inactivity(state, INACTIVE_21D, first + since_last_reminder)
    assert (found is not None) == fires


@pytest.mark.parametrize("as_of_zone", [UTC, LA, AUCKLAND, BERLIN], ids=str)
def test_inactivity_threshold_is_21_times_24h_across_us_spring_forward(as_of_zone: dt.tzinfo) -> None:
    start = LA_NOON_BEFORE_SPRING_FORWARD  # as Postgres returns it: UTC
    wall_clock_21_days_later = dt.datetime(2026, 3, 28, 12, tzinfo=LA)  # only 21*24h - 1h later
    assert wall_clock_21_days_later - dt.datetime(2026, 3, 7, 12, tzinfo=LA) == 21 * DAY  # the trap
    assert wall_clock_21_days_later.astimezone(UTC) - start == 21 * DAY - dt.timedelta(hours=1)
    state = inactivity_state(last_activity_at=start)
    assert decide_inactivity(state, INACTIVE_21D, wall_clock_21_days_later.astimezone(as_of_zone)) is None
    exactly = (start + 21 * DAY).astimezone(as_of_zone)
    assert decide_inactivity(state, INACTIVE_21D, exactly - US) is None
    found = decide_inactivity(state, INACTIVE_21D, exactly)
    assert found is not None
    assert found.subject == str(epoch_micros(start))


def test_inactivity_same_decision_when_spell_start_and_as_of_share_a_zone() -> None:
    """Instants are instants: a spell start and an as_of both written in Los Angeles time
    (the same ZoneInfo object, where Python subtracts wall clocks) must be judged on
    absolute time like their UTC forms."""
    start = dt.datetime(2026, 3, 7, 12, tzinfo=LA)
    as_of = dt.datetime(2026, 3, 28, 12, tzinfo=LA)  # 21 wall-clock days, 21*24h - 1h of absolute time
    in_utc = decide_inactivity(
        inactivity_state(last_activity_at=start.astimezone(UTC)), INACTIVE_21D, utc(as_of)
    )
    in_la = decide_inactivity(inactivity_state(last_activity_at=start), INACTIVE_21D, as_of)
    assert in_utc is None
    assert in_la is None, (
        "decide_inactivity fired after 21*24h - 1h because start and as_of share a ZoneInfo "
        "(Python subtracts wall clocks then); thresholds are whole 24-hour days"
    )


def test_inactivity_utc_normalises_zoned_as_of_to_the_same_instant() -> None:
    zoned = dt.datetime(2026, 3, 28, 13, tzinfo=LA)
    assert utc(zoned) == zoned
    assert utc(zoned).tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        utc(dt.datetime(2026, 1, 1))


# --- milestone: periods and metrics ---------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "timezone", "label", "start_utc"),
    [
        # Auckland is UTC+13 in January: its new year begins at 11:00 UTC on 31 December.
        (
            dt.datetime(2026, 12, 31, 10, 59, 59, 999999, tzinfo=UTC),
            "Pacific/Auckland",
            "2026",
            dt.datetime(2025, 12, 31, 11, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 12, 31, 11, tzinfo=UTC),
            "Pacific/Auckland",
            "2027",
            dt.datetime(2026, 12, 31, 11, tzinfo=UTC),
        ),
        # Los Angeles is UTC-8 in January: 1 January UTC is still 31 December there.
        (
            dt.datetime(2027, 1, 1, 7, 59, 59, 999999, tzinfo=UTC),
            "America/Los_Angeles",
            "2026",
            dt.datetime(2026, 1, 1, 8, tzinfo=UTC),
        ),
        (
            dt.datetime(2027, 1, 1, 8, tzinfo=UTC),
            "America/Los_Angeles",
            "2027",
            dt.datetime(2027, 1, 1, 8, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
            "UTC",
            "2026",
            dt.datetime(2026, 1, 1, tzinfo=UTC),
        ),
        (
            dt.datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
            "Asia/Kolkata",
            "2027",
            dt.datetime(2026, 12, 31, 18, 30, tzinfo=UTC),
        ),
    ],
    ids=["auckland-last-us-of-2026", "auckland-2027", "la-last-us-of-2026", "la-2027", "utc", "kolkata"],
)
def test_period_of_year_is_the_calendar_year_in_the_mentor_zone(
    instant: dt.datetime, timezone: str, label: str, start_utc: dt.datetime
) -> None:
    period, start = period_of(SESSIONS_YEAR, timezone, instant)
    assert period == label
    assert start is not None
    assert start == start_utc


@pytest.mark.parametrize("zone", [UTC, LA, AUCKLAND], ids=str)
def test_period_of_does_not_depend_on_the_zone_as_of_is_written_in(zone: dt.tzinfo) -> None:
    instant = dt.datetime(2026, 12, 31, 11, tzinfo=UTC)
    assert period_of(SESSIONS_YEAR, "Pacific/Auckland", instant.astimezone(zone)) == period_of(
        SESSIONS_YEAR, "Pacific/Auckland", instant
    )


def test_period_of_all_time_has_no_start() -> None:
    assert period_of(HOURS_ALL_TIME, "Pacific/Auckland", T0) == ("all_time", None)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("sessions", 2.0), ("hours", (60 + 30 + 15) / 60), ("contacts", 3.0 + 0 + 4)],
)
def test_metric_value_counts_sessions_sums_hours_and_contacts(metric: str, expected: float) -> None:
    rows = [
        session(T0, minutes=60, contacts=3),
        session(T0, kind="training", minutes=30, contacts=0),
        session(T0, minutes=15, contacts=4),
    ]
    assert metric_value(metric, rows) == expected


def test_metric_value_of_nothing_is_zero() -> None:
    assert [metric_value(m, []) for m in ("sessions", "hours", "contacts")] == [0.0, 0.0, 0.0]


# --- milestone: decisions --------------------------------------------------------------------


def test_milestone_several_thresholds_crossed_at_once_notify_highest_and_record_all() -> None:
    state = milestone_state([session(T0 - i * DAY) for i in range(4)])  # 4 sessions: crosses 2 and 3
    found = decide_milestone(state, SESSIONS_YEAR, T0)
    assert found is not None
    assert found.inputs["threshold"] == 3
    assert found.inputs["newly_crossed"] == [2, 3]
    assert found.inputs["value"] == 4.0
    assert found.achievements == (
        Achievement("sessions_year", 2, "2026"),
        Achievement("sessions_year", 3, "2026"),
    )
    assert (found.subject, found.seq) == ("2026", 0)
    assert found.dedup_key == f"milestone:sessions_year:{MENTOR}:2026:3"


def test_milestone_already_achieved_thresholds_are_not_repeated() -> None:
    state = milestone_state(
        [session(T0 - i * DAY) for i in range(3)], achieved={("sessions_year", 2.0, "2026")}
    )
    found = decide_milestone(state, SESSIONS_YEAR, T0)
    assert found is not None
    assert found.inputs["newly_crossed"] == [3]
    assert found.achievements == (Achievement("sessions_year", 3, "2026"),)


def test_milestone_nothing_new_when_every_crossed_threshold_is_achieved() -> None:
    achieved = {("sessions_year", 2.0, "2026"), ("sessions_year", 3.0, "2026")}
    state = milestone_state([session(T0 - i * DAY) for i in range(4)], achieved=achieved)
    assert decide_milestone(state, SESSIONS_YEAR, T0) is None


def test_milestone_achievement_of_another_period_or_rule_does_not_block() -> None:
    achieved = {("sessions_year", 2.0, "2025"), ("other_rule", 2.0, "2026")}
    state = milestone_state([session(T0), session(T0 - DAY)], achieved=achieved)
    found = decide_milestone(state, SESSIONS_YEAR, T0)
    assert found is not None
    assert found.inputs["threshold"] == 2


@pytest.mark.parametrize(("sessions", "threshold"), [(1, None), (2, 2), (3, 3), (4, 3), (5, 5)])
def test_milestone_reaching_a_threshold_exactly_counts(sessions: int, threshold: int | None) -> None:
    state = milestone_state([session(T0 - i * SEC) for i in range(sessions)])
    found = decide_milestone(state, SESSIONS_YEAR, T0)
    assert (found.inputs["threshold"] if found else None) == threshold


@pytest.mark.parametrize(("minutes", "fires"), [(89, False), (90, True)])
def test_milestone_fractional_hours_threshold(minutes: int, fires: bool) -> None:
    state = milestone_state([session(T0 - 400 * DAY, kind="training", minutes=minutes)])
    found = decide_milestone(state, HOURS_ALL_TIME, T0)
    assert (found is not None) == fires
    if found is not None:
        assert found.subject == "all_time"
        assert found.dedup_key == f"milestone:hours_all:{MENTOR}:all_time:1.5"
        assert found.achievements == (Achievement("hours_all", 1.5, "all_time"),)


def test_milestone_counts_activity_at_as_of_but_not_after() -> None:
    state = milestone_state([session(T0 - DAY), session(T0), session(T0 + US)])
    found = decide_milestone(state, SESSIONS_YEAR, T0)
    assert found is not None
    assert found.inputs["value"] == 2.0
    assert decide_milestone(state, SESSIONS_YEAR, T0 - US) is None


def test_milestone_year_boundary_in_auckland() -> None:
    new_year = dt.datetime(2027, 1, 1, tzinfo=AUCKLAND)  # = 2026-12-31 11:00 UTC
    state = milestone_state(
        [session((new_year - dt.timedelta(hours=h)).astimezone(UTC)) for h in (1, 2)]
        + [session(new_year.astimezone(UTC))],
        timezone="Pacific/Auckland",
    )
    before = decide_milestone(state, SESSIONS_YEAR, new_year.astimezone(UTC) - US)
    assert before is not None
    assert (before.subject, before.inputs["value"]) == ("2026", 2.0)
    # at local midnight only the activity at exactly midnight is in 2027: one session
    assert decide_milestone(state, SESSIONS_YEAR, new_year.astimezone(UTC)) is None
    assert decide_milestone(state, SESSIONS_YEAR, new_year.astimezone(UTC) + DAY) is None


def test_milestone_year_boundary_in_los_angeles_when_utc_already_has_the_new_year() -> None:
    # 2027-01-01 03:00 UTC is still 2026-12-31 19:00 in Los Angeles.
    as_of = dt.datetime(2027, 1, 1, 3, tzinfo=UTC)
    state = milestone_state(
        [session(dt.datetime(2026, 12, 31, 20, tzinfo=UTC)), session(dt.datetime(2027, 1, 1, 1, tzinfo=UTC))],
        timezone="America/Los_Angeles",
    )
    found = decide_milestone(state, SESSIONS_YEAR, as_of)
    assert found is not None
    assert found.subject == "2026"
    # the same data for a UTC mentor: the earlier session is last year's, nothing to celebrate
    assert decide_milestone(milestone_state(list(state.activities)), SESSIONS_YEAR, as_of) is None


def test_milestone_all_time_ignores_year_boundaries() -> None:
    state = milestone_state(
        [session(T0 - 500 * DAY, minutes=60), session(T0, minutes=30)], timezone="Pacific/Auckland"
    )
    found = decide_milestone(state, HOURS_ALL_TIME, T0)
    assert found is not None
    assert found.inputs["value"] == 1.5


@pytest.mark.parametrize("status", ["paused", "inactive"])
def test_milestone_nothing_for_a_mentor_who_is_not_active(status: str) -> None:
    state = milestone_state([session(T0 - i * SEC) for i in range(5)], status=status)
    assert decide_milestone(state, SESSIONS_YEAR, T0) is None


@pytest.mark.parametrize(("value", "label"), [(10.0, "10"), (12.5, "12.5"), (1.5, "1.5"), (100, "100")])
def test_threshold_label_in_dedup_keys(value: float, label: str) -> None:
    assert threshold_label(value) == label


def test_threshold_labels_of_distinct_thresholds_are_distinct() -> None:
    """The label is the dedup key's last part: two thresholds with one label share a key, so
    the second milestone is taken for a repeat of the first and never sent."""
    rule = MilestoneRule(
        name="contacts", metric="contacts", period="all_time", thresholds=[1_000_000, 1_000_001]
    )
    labels = [threshold_label(t) for t in rule.thresholds]
    assert len(set(labels)) == len(labels), f"threshold_label collides: {labels}"


# --- certification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("until_expiry", "tier"),
    [
        (30 * DAY + US, None),
        (30 * DAY, 30),
        (7 * DAY + US, 30),
        (7 * DAY, 7),
        (5 * DAY, 7),
        (DAY + US, 7),
        (DAY, 1),
        (US, 1),
    ],
    ids=[
        "beyond-lead",
        "30d-exactly",
        "just-over-7d",
        "7d-exactly",
        "5d",
        "just-over-1d",
        "1d-exactly",
        "1us",
    ],
)
def test_applicable_tier_is_the_smallest_tier_the_expiry_falls_within(
    until_expiry: dt.timedelta, tier: int | None
) -> None:
    assert applicable_tier(CERT_RULE, T0 + until_expiry, T0) == tier


@pytest.mark.parametrize("as_of_zone", [UTC, LA], ids=str)
def test_applicable_tier_counts_whole_24h_days_across_spring_forward(as_of_zone: dt.tzinfo) -> None:
    as_of = LA_NOON_BEFORE_SPRING_FORWARD
    expires = as_of + 7 * DAY  # exactly 7*24h later (13:00 PDT on 14 March)
    assert applicable_tier(CERT_RULE, expires, as_of.astimezone(as_of_zone)) == 7, (
        "as_of + timedelta(days=7) on a ZoneInfo datetime is wall-clock arithmetic (7*24h - 1h here)"
    )
    assert applicable_tier(CERT_RULE, expires + US, as_of.astimezone(as_of_zone)) == 30


def test_is_superseded_only_by_a_newer_unrevoked_certification_of_the_same_type() -> None:
    old = cert(1, T0 + 5 * DAY, issued_at=T0 - 300 * DAY)
    newer = cert(2, T0 + 400 * DAY, issued_at=T0 - DAY)
    newer_revoked = cert(3, T0 + 400 * DAY, issued_at=T0 - DAY, revoked_at=T0)
    other_type = cert(4, T0 + 400 * DAY, issued_at=T0 - DAY, type_="safeguarding")
    assert is_superseded(old, (old, newer))
    assert not is_superseded(newer, (old, newer))
    assert not is_superseded(old, (old, newer_revoked))
    assert not is_superseded(old, (old, other_type))
    assert not is_superseded(old, (old,))


def test_is_superseded_same_issue_time_is_broken_by_id() -> None:
    first = cert(1, T0 + 5 * DAY, issued_at=T0 - DAY)
    second = cert(2, T0 + 6 * DAY, issued_at=T0 - DAY)
    assert is_superseded(first, (first, second))
    assert not is_superseded(second, (first, second))


@pytest.mark.parametrize(
    ("row", "applies"),
    [
        (cert(1, T0 + DAY), True),
        (cert(1, T0 + US), True),
        (cert(1, T0), False),  # expires exactly now: already expired
        (cert(1, T0 - DAY), False),
        (cert(1, T0 + DAY, revoked_at=T0 - DAY), False),
        (cert(1, T0 + DAY, revoked_at=T0 + DAY), False),  # a revocation is final whenever dated
    ],
    ids=["valid", "expires-in-1us", "expires-now", "expired", "revoked", "revoked-later"],
)
def test_still_applies_unless_revoked_or_expired(row: CertificationRow, applies: bool) -> None:
    assert still_applies(row, (row,), T0) == applies


def test_still_applies_is_false_once_renewed() -> None:
    old = cert(1, T0 + 3 * DAY, issued_at=T0 - 300 * DAY)
    renewal = cert(2, T0 + 400 * DAY, issued_at=T0)
    assert still_applies(old, (old,), T0)
    assert not still_applies(old, (old, renewal), T0)


def test_certification_first_seen_late_gets_only_the_nearest_tier() -> None:
    [found] = decide_certifications(cert_state([cert(11, T0 + 5 * DAY)]), CERT_RULE, T0)
    assert (found.subject, found.seq) == ("11", 7)
    assert found.dedup_key == f"certification_expiry:cert_expiry:{MENTOR}:11:7"
    assert found.inputs["days_left"] == 5
    assert found.inputs["tier_days"] == 7
    assert found.inputs["certification_type"] == "first_aid"


@pytest.mark.parametrize(
    ("fired", "until_expiry", "expected"),
    [
        (None, 20 * DAY, 30),
        (30, 20 * DAY, None),  # same tier already sent
        (30, 5 * DAY, 7),  # a smaller tier is due
        (7, 5 * DAY, None),
        (7, 20 * DAY, None),  # a larger tier never after a smaller one
        (7, 12 * dt.timedelta(hours=1), 1),
        (1, 12 * dt.timedelta(hours=1), None),
    ],
)
def test_certification_fired_tier_prevents_same_or_larger_tier(
    fired: int | None, until_expiry: dt.timedelta, expected: int | None
) -> None:
    state = cert_state([cert(5, T0 + until_expiry)], fired={5: fired} if fired else None)
    found = decide_certifications(state, CERT_RULE, T0)
    assert [c.seq for c in found] == ([expected] if expected else [])


def test_certification_revoked_superseded_and_expired_never_fire() -> None:
    certs = [
        cert(1, T0 + 5 * DAY, type_="revoked", revoked_at=T0 - DAY),
        cert(2, T0 - DAY, type_="expired"),
        cert(3, T0, type_="expires_now"),
        cert(4, T0 + 5 * DAY, type_="renewed", issued_at=T0 - 300 * DAY),
        cert(5, T0 + 400 * DAY, type_="renewed", issued_at=T0 - DAY),
    ]
    assert decide_certifications(cert_state(certs), CERT_RULE, T0) == []


def test_certification_older_one_still_fires_when_its_renewal_was_revoked() -> None:
    certs = [
        cert(1, T0 + 5 * DAY, issued_at=T0 - 300 * DAY),
        cert(2, T0 + 400 * DAY, issued_at=T0 - DAY, revoked_at=T0),
    ]
    assert [c.subject for c in decide_certifications(cert_state(certs), CERT_RULE, T0)] == ["1"]


def test_certification_one_candidate_per_certification_in_id_order() -> None:
    certs = [cert(9, T0 + 2 * DAY, type_="b"), cert(3, T0 + 20 * DAY, type_="a")]
    found = decide_certifications(cert_state(certs), CERT_RULE, T0)
    assert [(c.subject, c.seq) for c in found] == [("3", 30), ("9", 7)]


def test_certification_rule_watches_only_its_types() -> None:
    rule = CertificationExpiryRule(name="fa", tiers_days=[30], certification_types=["first_aid"])
    certs = [cert(1, T0 + DAY, type_="first_aid"), cert(2, T0 + DAY, type_="safeguarding")]
    assert [c.subject for c in decide_certifications(cert_state(certs), rule, T0)] == ["1"]


@pytest.mark.parametrize("status", ["paused", "inactive"])
def test_certification_nothing_for_a_mentor_who_is_not_active(status: str) -> None:
    assert decide_certifications(cert_state([cert(1, T0 + DAY)], status=status), CERT_RULE, T0) == []


def test_certification_expires_on_is_the_date_in_the_mentor_zone() -> None:
    expires = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)  # 11 March 01:00 in Auckland
    [found] = decide_certifications(
        cert_state([cert(1, expires)], timezone="Pacific/Auckland"), CERT_RULE, T0
    )
    assert found.inputs["expires_on"] == "2026-03-11"
    assert found.inputs["expires_at"] == expires.isoformat()


@pytest.mark.parametrize(
    ("left", "days"), [(5 * DAY, 5), (5 * DAY - SEC, 5), (4 * DAY + US, 5), (US, 1), (30 * DAY, 30)]
)
def test_days_left_rounds_up_to_whole_days(left: dt.timedelta, days: int) -> None:
    assert days_left(T0 + left, T0) == days


# --- policy -----------------------------------------------------------------------------------

SIX_HOURS = dt.timedelta(hours=6)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            policy_state(status="paused", opted_out_scope="all", last_triggered_at=T0, sent_24h=9),
            "mentor_not_active",
        ),
        (policy_state(opted_out_scope="all", last_triggered_at=T0, sent_24h=9), "opted_out"),
        (policy_state(last_triggered_at=T0 - DAY, sent_24h=9), "cooldown"),
        (policy_state(last_triggered_at=T0 - 8 * DAY, sent_24h=2), "daily_cap"),
        (policy_state(last_triggered_at=T0 - 8 * DAY, sent_24h=1), "sent"),
        (policy_state(), "sent"),
    ],
    ids=["not-active-first", "opted-out-before-cooldown", "cooldown-before-cap", "cap", "sent", "fresh"],
)
def test_policy_checks_in_order_not_active_opted_out_cooldown_cap(state: PolicyState, expected: str) -> None:
    decision = decide_policy(state, "inactivity", 7 * DAY, 2, T0)
    assert decision.outcome == expected
    assert decision.allowed == (expected == "sent")
    assert decision.reason


@pytest.mark.parametrize(
    ("scope", "text"), [("all", "all notifications"), ("inactivity", "inactivity notifications")]
)
def test_policy_opt_out_reason_names_the_scope(scope: str, text: str) -> None:
    decision = decide_policy(policy_state(opted_out_scope=scope), "inactivity", DAY, 3, T0)
    assert decision.outcome == "opted_out"
    assert text in decision.reason


@pytest.mark.parametrize(
    ("since", "outcome"),
    [(7 * DAY - US, "cooldown"), (7 * DAY - SEC, "cooldown"), (7 * DAY, "sent"), (7 * DAY + US, "sent")],
    ids=["1us-before", "1s-before", "exactly", "1us-after"],
)
def test_policy_cooldown_ends_exactly_after_the_cooldown(since: dt.timedelta, outcome: str) -> None:
    decision = decide_policy(policy_state(last_triggered_at=T0 - since), "inactivity", 7 * DAY, 3, T0)
    assert decision.outcome == outcome


def test_policy_zero_cooldown_never_blocks() -> None:
    decision = decide_policy(policy_state(last_triggered_at=T0), "milestone", dt.timedelta(0), 3, T0)
    assert decision.outcome == "sent"


def test_policy_cooldown_measured_in_absolute_time_for_a_zoned_as_of() -> None:
    last = LA_NOON_BEFORE_SPRING_FORWARD
    as_of = (last + 7 * DAY - US).astimezone(LA)
    assert decide_policy(policy_state(last_triggered_at=last), "inactivity", 7 * DAY, 3, as_of).outcome == (
        "cooldown"
    )
    assert decide_policy(policy_state(last_triggered_at=last), "inactivity", 7 * DAY, 3, as_of + US).allowed


@pytest.mark.parametrize(
    ("sent_24h", "pending", "outcome"),
    [
        (0, 0, "sent"),
        (1, 0, "sent"),
        (2, 0, "daily_cap"),
        (1, 1, "daily_cap"),
        (0, 2, "daily_cap"),
        (0, 1, "sent"),
    ],
)
def test_policy_pending_in_the_same_batch_counts_toward_the_cap(
    sent_24h: int, pending: int, outcome: str
) -> None:
    decision = decide_policy(policy_state(sent_24h=sent_24h), "milestone", dt.timedelta(0), 2, T0, pending)
    assert decision.outcome == outcome
    if outcome == "daily_cap":
        assert f"{sent_24h + pending} notifications" in decision.reason


def _candidate(mentor: uuid.UUID, n: int) -> Candidate:
    return Candidate(mentor, "certification_expiry", "cert_expiry", str(n), 7, f"k{mentor}{n}", {})


def test_apply_policy_earlier_allowed_candidates_fill_the_cap_per_mentor() -> None:
    rules = Rules(daily_cap=2, certification_expiry=[CERT_RULE])
    states = {MENTOR: policy_state(), OTHER: policy_state(mentor_id=OTHER, sent_24h=1)}
    candidates = [_candidate(MENTOR, 1), _candidate(OTHER, 1), _candidate(MENTOR, 2), _candidate(OTHER, 2)]
    candidates.append(_candidate(MENTOR, 3))
    candidates.append(_candidate(uuid.uuid4(), 1))  # mentor vanished between reads: dropped
    decided = apply_policy(candidates, states, CERT_RULE, rules, T0)
    assert [(c.mentor_id, c.subject, d.outcome) for c, d in decided] == [
        (MENTOR, "1", "sent"),
        (OTHER, "1", "sent"),
        (MENTOR, "2", "sent"),
        (OTHER, "2", "daily_cap"),
        (MENTOR, "3", "daily_cap"),
    ]


def test_apply_policy_suppressed_candidates_do_not_use_the_cap() -> None:
    rules = Rules(daily_cap=1, certification_expiry=[CERT_RULE])
    states = {MENTOR: policy_state(opted_out_scope="certification_expiry")}
    decided = apply_policy([_candidate(MENTOR, 1), _candidate(MENTOR, 2)], states, CERT_RULE, rules, T0)
    assert [d.outcome for _, d in decided] == ["opted_out", "opted_out"]


# --- render -------------------------------------------------------------------------------------


def test_render_fills_named_placeholders() -> None:
    assert render(
        "Hi {display_name}, {days_inactive} days", {"display_name": "Ana", "days_inactive": 21}
    ) == ("Hi Ana, 21 days")


def test_render_unknown_placeholder_stays_visible() -> None:
    assert render("Hi {display_name}, {mystery}!", {"display_name": "Ana"}) == "Hi Ana, {mystery}!"


@pytest.mark.parametrize(("threshold", "text"), [(10.0, "10"), (12.5, "12.5"), (1.5, "1.5"), (100, "100")])
def test_render_format_spec_g(threshold: float, text: str) -> None:
    assert (
        render("You reached {threshold:g} sessions", {"threshold": threshold})
        == f"You reached {text} sessions"
    )


def test_render_default_milestone_body() -> None:
    body = render(
        SESSIONS_YEAR.body,
        {"threshold": 25.0, "threshold_text": "25", "metric": "sessions", "period_label": "year"},
    )
    assert body == "You reached 25 sessions this year. Thank you!"


def test_render_escaped_braces_are_literal() -> None:
    assert render("{{not a placeholder}} {n}", {"n": 1}) == "{not a placeholder} 1"


def test_render_unknown_placeholder_with_format_spec_does_not_blank_the_known_ones() -> None:
    """A typo in one placeholder ({treshold:g}) must not leave every other placeholder unfilled."""
    out = render("{display_name}: {treshold:g} {metric}", {"display_name": "Ana", "metric": "sessions"})
    assert "{treshold" in out  # the unknown one stays visible
    assert out.startswith("Ana: ") and out.endswith(" sessions"), (
        f"render fell back to the raw template: {out!r}"
    )


def test_render_never_raises_on_a_value_unfit_for_its_format_spec() -> None:
    out = render("{threshold:g} left", {"threshold": "ten"})
    assert "left" in out


# --- epoch_micros ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "micros"),
    [
        (EPOCH, 0),
        (EPOCH + US, 1),
        (EPOCH - US, -1),
        (dt.datetime(2026, 3, 1, 12, tzinfo=UTC), 1_772_366_400_000_000),
        # float timestamps get this one wrong (int(ts * 1e6) == 275334790618543)
        (dt.datetime(1978, 9, 22, 17, 53, 10, 618544, tzinfo=UTC), 275_334_790_618_544),
        # beyond 2**53 µs a float cannot even hold the value
        (dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 253_402_300_799_999_999),
    ],
)
def test_epoch_micros_is_exact(instant: dt.datetime, micros: int) -> None:
    assert epoch_micros(instant) == micros


@pytest.mark.parametrize("zone", [LA, AUCKLAND, BERLIN, ZoneInfo("Asia/Kolkata")], ids=str)
def test_epoch_micros_is_the_same_for_an_instant_in_any_zone(zone: dt.tzinfo) -> None:
    instant = dt.datetime(2026, 3, 8, 9, 59, 59, 999999, tzinfo=UTC)
    assert epoch_micros(instant.astimezone(zone)) == epoch_micros(instant)


def test_epoch_micros_distinguishes_instants_one_microsecond_apart() -> None:
    a = dt.datetime(2026, 3, 8, 10, 0, 0, 123456, tzinfo=UTC)
    assert epoch_micros(a + US) - epoch_micros(a) == 1
    assert epoch_micros(a) == int((a - EPOCH).total_seconds()) * 1_000_000 + 123456
