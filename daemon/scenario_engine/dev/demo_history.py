"""Twelve weeks of demo history, written by the engine itself.

The demo is meant to show what the engine is for: messages sent, what mentors did afterwards,
and the difference against the held-out mentors. That needs history, and history that the
engine's own code wrote, so that every figure on the programme page and in ``report`` is one
the engine would have produced. So this module simulates a platform day by day and runs the
engine's sweep (``Engine.run_scheduled_evaluation``, the same code the daemon runs) at the end
of past days, four a week: decisions, holdouts, dedup keys, cooldowns and outcomes are all the
engine's.

What the simulation writes is only what a platform would: mentors, their organisations,
activities, certifications (and their renewals), opt-outs; each row dated when it happens,
and inserted only once the simulated clock has passed that instant, so that a sweep at a past
``as_of`` sees exactly what existed then. Mentor behaviour reacts to the engine's decisions:

* an active mentor goes quiet now and then; a quiet mentor comes back on any day with a small
  chance, which is higher for two weeks after an inactivity reminder was *sent* (a held-out
  mentor gets no message, so no boost): the nudge really helps, somewhat;
* a certification is renewed before it expires by a quarter of mentors early on their own;
  the others decide at the first reminder decision, more of them when the reminder was sent
  than when it was held out; a certification nobody reminded lapses.

The one thing simulated outside the engine is the push gateway: pushes of past decisions are
marked accepted (a few rejected) as of their decision, since the dispatcher only sends now.

Everything is drawn from one seeded ``random.Random``: a fresh demo is the same every time.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from scenario_engine.db.connect import create_pool
from scenario_engine.db.queries import execute, query
from scenario_engine.engine import Engine
from scenario_engine.scenarios.rules import Rules

DAY = dt.timedelta(days=1)
HISTORY_DAYS = 84  # twelve weeks
PRE_HISTORY_DAYS = 90  # activity before the first simulated day (the year's counts, last activity)
SEED = 17
# The history's sweeps: four a week, two days apart but one (the daemon sweeps every minute;
# a day's grain is enough for reminders counted in days, and fewer sweeps keep a fresh demo
# quick). The same days of every seven, so that each calendar week holds four sweeps covering
# seven days of activity: every other day would give weeks of 8 and 6 days in turn, a zigzag in
# the weekly figures that nobody's mentors made. Counted back from the last, the day before now.
# A full sweep once a week, incremental ones in between, as the daemon's scheduler does.
SWEEP_DAYS = (0, 2, 4, 6)  # of each seven
SWEEPS_PER_WEEK = len(SWEEP_DAYS)
FULL_SWEEP_EVERY = SWEEPS_PER_WEEK

# (id, name, share of mentors): one large organisation with enough mentors in both arms for a
# lift, two medium ones, and a small one whose holdout stays too small to say anything.
ORGANISATIONS: tuple[tuple[uuid.UUID, str, float], ...] = (
    (uuid.UUID("00000000-0000-4000-8000-000000000001"), "Northside Peer Support", 0.45),
    (uuid.UUID("00000000-0000-4000-8000-000000000002"), "Harbour Youth Mentors", 0.25),
    (uuid.UUID("00000000-0000-4000-8000-000000000003"), "Riverbend Recovery Network", 0.15),
    (uuid.UUID("00000000-0000-4000-8000-000000000004"), "Hillcrest Carers' Circle", 0.12),
    (uuid.UUID("00000000-0000-4000-8000-000000000005"), "Lakeside Village Helpers", 0.03),
)
FIRST_NAMES = (
    "Ada",
    "Bea",
    "Cai",
    "Dev",
    "Eli",
    "Fay",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kim",
    "Lea",
    "Max",
    "Noa",
    "Oli",
    "Pia",
    "Quin",
    "Rae",
    "Sam",
    "Tove",
)
LAST_NAMES = (
    "Berg",
    "Okafor",
    "Larsen",
    "Nakamura",
    "Silva",
    "Haddad",
    "Novak",
    "Reyes",
    "Moreau",
    "Lindqvist",
    "Dubois",
    "Kowalski",
)
TIMEZONES = (
    "Europe/Oslo",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "UTC",
)
CERTIFICATION_TYPES = ("first_aid", "safeguarding")
SCOPES = ("all", "inactivity", "milestone", "certification_expiry")

# Behaviour (per simulated day unless said otherwise).
ACTIVITY_RATE = (0.08, 0.30)  # an active mentor's chance of logging something on a given day
GO_QUIET = 0.009  # an active mentor stops
COME_BACK = 0.018  # a quiet mentor returns on their own (≈ 22 % within 14 days)
COME_BACK_NUDGED = 0.038  # … in the 14 days after a reminder was sent (≈ 42 %)
NUDGE_DAYS = 14
QUIET_AT_START = 0.22  # share of mentors already quiet when the history starts
PAUSED = 0.05
OPTED_OUT = 0.06
RENEW_EARLY = 0.25  # renew before any reminder, on their own
RENEW_AFTER_SENT = 0.85
RENEW_AFTER_HELD_OUT = 0.70
RENEWAL_DELAY_HOURS = 96.0  # mean time from the deciding reminder to the renewal
UNDELIVERED = 0.03  # pushes the simulated gateway rejects


@dataclass
class _Mentor:
    id: uuid.UUID
    organization_id: uuid.UUID
    paused: bool
    rate: float
    quiet: bool
    nudged_until: dt.datetime | None = None


@dataclass
class _Certification:
    id: int
    mentor_id: uuid.UUID
    type: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    decided: bool = False  # the renewal was decided (early, or at the first reminder)


@dataclass
class HistoryStats:
    mentors: int = 0
    activities: int = 0
    certifications: int = 0
    renewals: int = 0
    sweeps: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class _World:
    """The simulated platform: who is quiet, which certifications exist, what is scheduled."""

    def __init__(self, rng: random.Random, start: dt.datetime, now: dt.datetime) -> None:
        self.rng = rng
        self.start = start
        self.now = now
        self.mentors: list[_Mentor] = []
        self.by_id: dict[uuid.UUID, _Mentor] = {}
        self.certifications: dict[int, _Certification] = {}
        self.next_certification_id = 1
        # Renewals scheduled for a later instant, inserted once the clock has passed them.
        self.scheduled: list[tuple[dt.datetime, _Certification]] = []

    def _at(self, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
        return lo + (hi - lo) * self.rng.random()

    def population(self, count: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Mentor rows and their activity before the history starts."""
        rng = self.rng
        weights = [share for _, _, share in ORGANISATIONS]
        mentor_rows: list[tuple[Any, ...]] = []
        activity_rows: list[tuple[Any, ...]] = []
        pre_start = self.start - PRE_HISTORY_DAYS * DAY
        for g in range(count):
            mentor_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            org = rng.choices(ORGANISATIONS, weights)[0][0]
            paused = rng.random() < PAUSED
            joined = self.start - dt.timedelta(days=rng.uniform(30, 700))
            name = (
                f"{FIRST_NAMES[g % len(FIRST_NAMES)]} {LAST_NAMES[(g // len(FIRST_NAMES)) % len(LAST_NAMES)]}"
            )
            mentor_rows.append(
                (
                    mentor_id,
                    org,
                    name,
                    "paused" if paused else "active",
                    TIMEZONES[g % len(TIMEZONES)],
                    joined,
                )
            )
            mentor = _Mentor(mentor_id, org, paused, rng.uniform(*ACTIVITY_RATE), quiet=False)
            self.mentors.append(mentor)
            self.by_id[mentor_id] = mentor
            last = self.start
            if rng.random() < QUIET_AT_START:
                mentor.quiet = True
                last = self.start - dt.timedelta(days=rng.uniform(0, 30))
            day = max(pre_start, joined)
            while day < last:
                if rng.random() < mentor.rate:
                    activity_rows.append(self._activity(mentor_id, self._at(day, min(day + DAY, last))))
                day += DAY
        return mentor_rows, activity_rows

    def _activity(self, mentor_id: uuid.UUID, at: dt.datetime) -> tuple[Any, ...]:
        rng = self.rng
        kind = rng.choice(("session", "session", "session", "contact", "training"))
        return (mentor_id, kind, at, rng.randint(30, 120), rng.randint(0, 3))

    def initial_certifications(self) -> list[tuple[Any, ...]]:
        rows = []
        for mentor in self.mentors:
            for kind in CERTIFICATION_TYPES:
                if self.rng.random() < 2 / 3:
                    expires = self.start + dt.timedelta(days=self.rng.uniform(-20, 365))
                    cert = self._certification(mentor.id, kind, expires - 365 * DAY, expires)
                    rows.append(self._row(cert))
                    if self.rng.random() < RENEW_EARLY:
                        cert.decided = True
                        early = expires - dt.timedelta(days=self.rng.uniform(35, 60))
                        if early > cert.issued_at:
                            self.scheduled.append((early, cert))
        return rows

    def _certification(
        self, mentor_id: uuid.UUID, kind: str, issued: dt.datetime, expires: dt.datetime
    ) -> _Certification:
        cert = _Certification(self.next_certification_id, mentor_id, kind, issued, expires)
        self.next_certification_id += 1
        self.certifications[cert.id] = cert
        return cert

    @staticmethod
    def _row(cert: _Certification) -> tuple[Any, ...]:
        return (cert.id, cert.mentor_id, cert.type, cert.issued_at, cert.expires_at)

    def preferences(self) -> list[tuple[Any, ...]]:
        return [(m.id, self.rng.choice(SCOPES), True) for m in self.mentors if self.rng.random() < OPTED_OUT]

    def live(self, lo: dt.datetime, hi: dt.datetime) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """What the platform records in (lo, hi]: activities, and renewals that fall due."""
        rng = self.rng
        activities = []
        for m in self.mentors:
            if m.paused:
                continue
            if m.quiet:
                nudged = m.nudged_until is not None and m.nudged_until > lo
                if rng.random() < (COME_BACK_NUDGED if nudged else COME_BACK):
                    m.quiet = False
                    activities.append(self._activity(m.id, self._at(lo, hi)))
            elif rng.random() < GO_QUIET:
                m.quiet = True
            elif rng.random() < m.rate:
                activities.append(self._activity(m.id, self._at(lo, hi)))
        return activities, self.renewals_until(hi)

    def renewals_until(self, until: dt.datetime) -> list[tuple[Any, ...]]:
        """The scheduled renewals dated up to ``until``: new certifications for a year."""
        due = [(at, cert) for at, cert in self.scheduled if at <= until]
        self.scheduled = [(at, cert) for at, cert in self.scheduled if at > until]
        return [
            self._row(self._certification(cert.mentor_id, cert.type, at, at + 365 * DAY)) for at, cert in due
        ]

    def react(self, outcomes: list[Any], as_of: dt.datetime) -> None:
        """Mentors respond to what the engine decided at ``as_of``."""
        for o in outcomes:
            if o.duplicate or o.decision.outcome not in ("sent", "holdout"):
                continue
            sent = o.decision.outcome == "sent"
            candidate = o.candidate
            if candidate.scenario_type == "inactivity" and sent:
                mentor = self.by_id.get(candidate.mentor_id)
                if mentor is not None:
                    mentor.nudged_until = as_of + NUDGE_DAYS * DAY
            elif candidate.scenario_type == "certification_expiry":
                cert = (
                    self.certifications.get(int(candidate.subject)) if candidate.subject.isdigit() else None
                )
                if cert is None or cert.decided:
                    continue
                cert.decided = True
                if self.rng.random() < (RENEW_AFTER_SENT if sent else RENEW_AFTER_HELD_OUT):
                    # Most renew within days of the reminder; always before the expiry.
                    hours = (cert.expires_at - as_of) / dt.timedelta(hours=1)
                    if hours > 2:
                        delay = min(self.rng.expovariate(1 / RENEWAL_DELAY_HOURS), hours - 1)
                        self.scheduled.append((as_of + dt.timedelta(hours=max(delay, 1)), cert))


ACTIVITY_COLUMNS = ("mentor_id", "kind", "occurred_at", "duration_minutes", "contacts")
CERTIFICATION_COLUMNS = ("id", "mentor_id", "type", "issued_at", "expires_at")


async def _copy(
    conn: asyncpg.Connection[Any], table: str, rows: list[tuple[Any, ...]], columns: tuple[str, ...]
) -> None:
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns), schema_name="public")


async def seed_history(
    url: str,
    conn: asyncpg.Connection[Any],
    rules: Rules,
    *,
    mentors: int,
    now: dt.datetime,
    days: int = HISTORY_DAYS,
) -> HistoryStats:
    """Seed the population as it was ``days`` ago, then live through each past day: the
    platform's rows of that day inserted, the engine's sweep at its end (on SWEEP_DAYS), the
    mentors reacting to what it decided.

    ``conn`` must be a superuser's: platform rows are written with triggers off
    (``session_replication_role = replica``), as a bulk load, so that the daemon does not start
    with twelve weeks of events to replay. The engine runs on a pool of its own, as in the daemon.
    """
    started = time.perf_counter()
    stats = HistoryStats()
    start = now - days * DAY
    world = _World(random.Random(SEED), start, now)
    await conn.execute("SET session_replication_role = replica")
    try:
        await execute(
            conn,
            "demo_insert_organizations",
            ids=[org_id for org_id, _, _ in ORGANISATIONS],
            names=[name for _, name, _ in ORGANISATIONS],
        )
        mentor_rows, activity_rows = world.population(mentors)
        await _copy(
            conn,
            "peer_mentor",
            mentor_rows,
            ("id", "organization_id", "display_name", "status", "timezone", "joined_at"),
        )
        cert_rows = world.initial_certifications()
        cert_rows += world.renewals_until(start)  # early renewals dated before the history: the past
        await _copy(conn, "activity", activity_rows, ACTIVITY_COLUMNS)
        await _copy(conn, "certification", cert_rows, CERTIFICATION_COLUMNS)
        await _copy(
            conn, "notification_preference", world.preferences(), ("mentor_id", "scenario_type", "opted_out")
        )
        await conn.execute(query("demo_analyze_platform"))
        stats.mentors = len(mentor_rows)
        stats.activities = len(activity_rows)
        stats.certifications = len(cert_rows)

        pool = await create_pool(url, min_size=1, max_size=2, application_name="scenario-engine-demo")
        try:
            engine = Engine(pool, rules)
            previous: dt.datetime | None = None
            for day in range(days):
                lo, hi = start + day * DAY, start + (day + 1) * DAY
                activities, renewals = world.live(lo, hi)
                await _copy(conn, "activity", activities, ACTIVITY_COLUMNS)
                await _copy(conn, "certification", renewals, CERTIFICATION_COLUMNS)
                stats.activities += len(activities)
                stats.renewals += len(renewals)
                if day == days - 1:
                    break  # the last day ends now: the daemon's first sweep evaluates it
                if (days - 2 - day) % 7 not in SWEEP_DAYS:
                    continue  # the last sweep of the history is at the end of the day before now
                # Incremental sweeps evaluate the mentors for whom something may have come due
                # since the previous one; a full one once a week (SWEEP_DAYS).
                full = previous is None or stats.sweeps % FULL_SWEEP_EVERY == 0
                result = await engine.run_scheduled_evaluation(
                    hi, collect=True, since=None if full else previous
                )
                previous = hi
                stats.sweeps += 1
                for counts in result.per_rule.values():
                    for outcome, n in counts.items():
                        stats.decisions[outcome] = stats.decisions.get(outcome, 0) + n
                world.react(result.outcomes, hi)
        finally:
            await pool.close()
        await conn.execute(query("demo_certification_sequence"))
        await execute(conn, "demo_deliver_history", until=now, undelivered_percent=UNDELIVERED * 100)
    finally:
        await conn.execute("RESET session_replication_role")
    stats.seconds = time.perf_counter() - started
    return stats
