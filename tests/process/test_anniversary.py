"""The anniversary scenario: "N years as a peer mentor", on the local day of joining.

The pure rule on its own, then on a real Postgres through the sweep (full, incremental and
dry run), the single-mentor path, events, `explain` and the CLI, with policy (opt-out of its
own type and of all, cooldown, cap) and the no-flood baseline.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from scenario_engine.engine import Engine
from scenario_engine.events import ScenarioEvent
from scenario_engine.explain import explain_mentor
from scenario_engine.scenarios.anniversary import (
    AnniversaryRule,
)
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.rules import Rules
from tests.support.anniversary import AUCKLAND, RULE, UTC
from tests.support.cli import run_cli
from tests.support.factories import add_certification, add_mentor, opt_out

# --- on a real Postgres -----------------------------------------------------------------------

AS_OF = dt.datetime(2026, 6, 15, 12, tzinfo=UTC)
YEAR = dt.timedelta(days=365)  # 2026-06-15 → 2027-06-15 has no 29 February


def years_ago(n: int, at: dt.datetime = AS_OF) -> dt.datetime:
    return at.replace(year=at.year - n)


def rules(*anniversary: AnniversaryRule, daily_cap: int = 3, **extra: Any) -> Rules:
    return Rules(daily_cap=daily_cap, anniversary=list(anniversary), **extra)


async def pushes(pool: asyncpg.Pool[Any], mentor: uuid.UUID) -> list[str]:
    rows = await pool.fetch(
        "SELECT body FROM push_notification WHERE mentor_id = $1 AND scenario_type = 'anniversary' "
        "ORDER BY id",
        mentor,
    )
    return [r["body"] for r in rows]


async def decisions(pool: asyncpg.Pool[Any], mentor: uuid.UUID) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT dedup_key, outcome FROM scenario_decision "
        "WHERE mentor_id = $1 AND scenario_type = 'anniversary' ORDER BY id",
        mentor,
    )
    return [(r["dedup_key"].split(":")[3], r["outcome"]) for r in rows]


async def seen_before(engine: Engine, as_of: dt.datetime) -> None:
    """Let the rules be first seen (and baselined) well before the day under test."""
    async with engine.pool.acquire() as conn:
        await engine.see_rules(conn, as_of)


async def test_the_sweep_greets_once_per_year_number_and_again_next_year(pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=dt.datetime(2024, 6, 15, 9, tzinfo=UTC), name="Ada")
    other = await add_mentor(pool, joined_at=dt.datetime(2024, 6, 16, 9, tzinfo=UTC))
    engine = Engine(pool, rules(RULE))
    await seen_before(engine, AS_OF - 30 * dt.timedelta(days=1))
    first = await engine.run_scheduled_evaluation(AS_OF)
    assert first.per_rule["anniversary"]["sent"] == 1
    again = await engine.run_scheduled_evaluation(AS_OF + dt.timedelta(hours=6))  # same day
    assert "anniversary" not in again.per_rule
    await engine.run_scheduled_evaluation(AS_OF + YEAR)
    assert await pushes(pool, mentor) == [
        "2 years as a peer mentor, Ada. Thank you for everything you do!",
        "3 years as a peer mentor, Ada. Thank you for everything you do!",
    ]
    assert await pushes(pool, other) == []


async def test_opt_out_of_anniversaries_or_of_everything_suppresses_it(pool: Any) -> None:
    joined = years_ago(2)
    own, everything, neither = [await add_mentor(pool, joined_at=joined) for _ in range(3)]
    await opt_out(pool, own, "anniversary")
    await opt_out(pool, everything, "all")
    await opt_out(pool, neither, "inactivity")
    engine = Engine(pool, rules(RULE))
    await seen_before(engine, AS_OF - dt.timedelta(days=3))
    await engine.run_scheduled_evaluation(AS_OF)
    assert await decisions(pool, own) == [("2", "opted_out")]
    assert await decisions(pool, everything) == [("2", "opted_out")]
    assert await decisions(pool, neither) == [("2", "sent")]


async def test_cooldown_and_the_daily_cap_apply(pool: Any) -> None:
    yearly = AnniversaryRule(name="anniversary", cooldown_days=400)
    mentor = await add_mentor(pool, joined_at=years_ago(2))
    capped = await add_mentor(pool, joined_at=years_ago(2))
    await add_certification(pool, capped, expires_at=AS_OF + dt.timedelta(days=3))
    cert = CertificationExpiryRule(name="cert", tiers_days=[7])
    engine = Engine(pool, rules(yearly, daily_cap=1, certification_expiry=[cert]))
    await seen_before(engine, AS_OF - dt.timedelta(days=3))
    await engine.run_scheduled_evaluation(AS_OF)
    assert await decisions(pool, mentor) == [("2", "sent")]
    # the certification rule comes first in the registry and takes the one push of the day
    assert await decisions(pool, capped) == [("2", "daily_cap")]
    await engine.run_scheduled_evaluation(AS_OF + YEAR)  # 365 days later: within the 400-day cooldown
    assert await decisions(pool, mentor) == [("2", "sent"), ("3", "cooldown")]


async def test_a_rule_first_seen_on_the_day_records_a_baseline_and_sends_nothing(pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=years_ago(3))
    engine = Engine(pool, rules(RULE))
    await engine.run_scheduled_evaluation(AS_OF)  # first seen now
    await engine.run_scheduled_evaluation(AS_OF + dt.timedelta(hours=2))
    assert await pushes(pool, mentor) == []
    assert await decisions(pool, mentor) == [("3", "baseline")]
    # the single-mentor path reads the baseline too: nothing is due
    assert await engine.evaluate_mentor(mentor, as_of=AS_OF + dt.timedelta(hours=3)) == []


async def test_backfill_greets_on_the_day_the_rule_is_first_seen(pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=years_ago(3))
    engine = Engine(pool, rules(AnniversaryRule(name="anniversary", backfill=True)))
    await engine.run_scheduled_evaluation(AS_OF)
    assert len(await pushes(pool, mentor)) == 1


async def test_the_incremental_sweep_finds_the_mentors_whose_day_began_since_the_last_one(pool: Any) -> None:
    # Local midnight in Auckland on 2026-06-16 is 2026-06-15 12:00 UTC.
    nz_midnight = dt.datetime(2026, 6, 16, tzinfo=AUCKLAND)
    nz = await add_mentor(
        pool, joined_at=dt.datetime(2025, 6, 16, 10, tzinfo=AUCKLAND), timezone="Pacific/Auckland"
    )
    utc = await add_mentor(pool, joined_at=dt.datetime(2025, 6, 17, 10, tzinfo=UTC))
    engine = Engine(pool, rules(RULE))
    before = nz_midnight - dt.timedelta(minutes=15)
    await engine.run_scheduled_evaluation(before)  # first seen (nothing to baseline yet)
    step = await engine.run_scheduled_evaluation(nz_midnight + dt.timedelta(minutes=1), since=before)
    assert step.mentors == 1 and step.per_rule["anniversary"]["sent"] == 1
    assert len(await pushes(pool, nz)) == 1 and await pushes(pool, utc) == []
    later = nz_midnight + dt.timedelta(hours=3)
    assert (
        await engine.run_scheduled_evaluation(later, since=nz_midnight + dt.timedelta(minutes=1))
    ).mentors == 0


async def test_a_change_of_join_date_is_an_event_that_greets_at_once(pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=AS_OF - dt.timedelta(days=10))
    engine = Engine(pool, rules(RULE))
    await seen_before(engine, AS_OF - dt.timedelta(days=1))
    await pool.execute("DELETE FROM scenario_event")
    await pool.execute("UPDATE peer_mentor SET joined_at = $2 WHERE id = $1", mentor, years_ago(4))
    row = await pool.fetchrow("SELECT * FROM scenario_event WHERE table_name = 'peer_mentor'")
    assert row is not None
    outcomes = await engine.handle_database_event(ScenarioEvent.from_row(row), AS_OF)
    assert [(o.candidate.scenario_type, o.candidate.subject, o.decision.outcome) for o in outcomes] == [
        ("anniversary", "4", "sent")
    ]


async def test_explain_and_the_cli_show_the_anniversary(pool: Any, db_url: str, tmp_path: Path) -> None:
    mentor = await add_mentor(pool, joined_at=years_ago(5), timezone="Europe/Oslo")
    not_today = await add_mentor(pool, joined_at=years_ago(5) + dt.timedelta(days=2))
    engine = Engine(pool, rules(RULE))
    await seen_before(engine, AS_OF - dt.timedelta(days=1))
    explanation = await explain_mentor(engine, mentor, AS_OF)
    [trace] = [t for t in explanation.rules if t.scenario_type == "anniversary"]
    assert trace.verdict == "would send"
    assert trace.inputs["years"] == 5 and trace.inputs["anniversary_on"] == "2026-06-15"
    [quiet] = [
        t for t in (await explain_mentor(engine, not_today, AS_OF)).rules if t.scenario_type == "anniversary"
    ]
    assert (quiet.verdict, quiet.reason) == (
        "not due",
        "the mentor's anniversary is neither today nor in the last 1 day(s)",
    )

    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[[anniversary]]\nname = "anniversary"\n')
    env = {"SCENARIO_DATABASE_URL": db_url, "SCENARIO_RULES_FILE": str(rules_file)}
    dry = await run_cli("sweep", "--dry-run", "--as-of", AS_OF.isoformat(), "--output", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    [decision] = [d for d in json.loads(dry.stdout)["decisions"] if d["scenario_type"] == "anniversary"]
    assert decision["outcome"] == "sent" and decision["inputs"]["years"] == 5
    assert await pushes(pool, mentor) == []  # a dry run writes nothing
    shown = await run_cli("explain", str(mentor), "--as-of", AS_OF.isoformat(), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "[anniversary] (anniversary) → would send" in shown.stdout


POISON_JOINS = {
    # joined_at → (timezone, greeted today?, quarantined?)
    "-infinity": ("UTC", False, False),  # no calendar day: never celebrated, nothing to quarantine
    "4713-01-01 00:00:00+00 BC": ("UTC", False, False),
    "0001-01-01 12:00:00+00": ("UTC", False, False),  # before the evaluable range
    "9999-12-31 12:00:00+00": ("UTC", False, False),
    "infinity": ("UTC", False, False),
    "2025-06-15 00:00:00+00": ("utc", False, True),  # a zone Python cannot load
    "2024-06-15 10:00:00+00": ("XYZ-167", False, True),  # POSIX-style: PostgreSQL accepts, Python not
    # AS_OF (15 June 12:00 UTC) is 16 June 02:00 in Kiritimati (+14), 15 June 01:00 in Pago Pago (-11)
    "2024-06-15 11:00:00+00": ("Pacific/Kiritimati", True, False),  # joined 16 June 01:00 local
    "2024-06-15 12:00:00+00": ("Pacific/Pago_Pago", True, False),  # joined 15 June 01:00 local
    # joined 15 June: yesterday there, within the default one-day grace
    "2024-06-14 12:00:00+00": ("Pacific/Kiritimati", True, False),
    "2024-06-13 12:00:00+00": ("Pacific/Kiritimati", False, False),  # two days ago there: too late
}


async def test_every_join_instant_and_zone_the_schema_accepts_decides_alike_on_both_paths(pool: Any) -> None:
    await pool.execute("ALTER TABLE peer_mentor DROP CONSTRAINT IF EXISTS peer_mentor_timezone_valid")
    mentors: dict[uuid.UUID, str] = {}
    for joined, (zone, _, _) in POISON_JOINS.items():
        mentor = await pool.fetchval(
            "INSERT INTO peer_mentor (organization_id, timezone, joined_at) "
            "VALUES (gen_random_uuid(), $1, $2::text::timestamptz) RETURNING id",
            zone,
            joined,
        )
        mentors[mentor] = joined
    engine = Engine(pool, rules(RULE))
    await seen_before(engine, AS_OF - dt.timedelta(days=2))
    swept = await engine.run_scheduled_evaluation(AS_OF, dry_run=True, collect=True)
    greeted = {o.candidate.mentor_id for o in swept.outcomes if o.decision.allowed}
    for mentor, joined in mentors.items():
        zone, want_greeting, want_quarantine = POISON_JOINS[joined]
        single = await engine.evaluate_mentor(mentor, as_of=AS_OF, dry_run=True)
        assert (mentor in greeted) == want_greeting == any(o.decision.allowed for o in single), joined
        quarantined = {q.mentor_id for q in single.quarantined}
        assert (mentor in swept.quarantined) == want_quarantine == (mentor in quarantined), joined
