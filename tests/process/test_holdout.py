"""Holdout groups: deterministic, stable, the configured share, and never a push.

The assignment is pure (outcomes/holdout.py); these tests show that it holds where it matters:
on 100k mentors, in another process, through the sweep and the single-mentor path on a real
Postgres, across a rules reload, and that a held-out mentor follows the reminder schedule
without ever being sent a push by that rule.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from typing import Any

import asyncpg

from scenario_engine.engine import Engine
from scenario_engine.outcomes.holdout import bucket, in_group
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules, load_rules
from tests.support.factories import add_mentor
from tests.support.holdout import mentor_ids

AS_OF = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def test_another_process_assigns_exactly_the_same_buckets() -> None:
    ids = mentor_ids(2_000, seed=9)
    script = (
        "import json, sys, uuid\n"
        "from scenario_engine.outcomes.holdout import bucket\n"
        "ids = json.load(sys.stdin)\n"
        "print(json.dumps([bucket('inactive_21d', uuid.UUID(i)) for i in ids]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([str(m) for m in ids]),
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert json.loads(done.stdout) == [bucket("inactive_21d", m) for m in ids]


RULES_TOML = """
daily_cap = 5
[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
max_reminders = 3
holdout_percent = 30
"""


async def arms(pool: asyncpg.Pool[Any]) -> dict[uuid.UUID, set[str]]:
    out: dict[uuid.UUID, set[str]] = {}
    for r in await pool.fetch(
        "SELECT mentor_id, outcome FROM scenario_decision WHERE outcome IN ('sent', 'holdout')"
    ):
        out.setdefault(r["mentor_id"], set()).add(r["outcome"])
    return out


async def test_sweep_single_path_and_reload_agree_and_held_out_mentors_get_no_push(
    pool: asyncpg.Pool[Any], tmp_path: Any
) -> None:
    mentors = [await add_mentor(pool, joined_at=AS_OF - 30 * DAY) for _ in range(200)]
    path = tmp_path / "rules.toml"
    path.write_text(RULES_TOML)
    engine = Engine(pool, load_rules(path))
    rule = engine.rules.by_name("inactive_21d")
    expected = {m for m in mentors if in_group(30.0, rule.salt, m)}
    assert 40 < len(expected) < 80  # about 30 % of 200

    # The single-mentor path (a dry run) predicts each mentor's arm...
    for m in mentors[:40]:
        [o] = await engine.evaluate_mentor(m, as_of=AS_OF, dry_run=True)
        assert o.decision.outcome == ("holdout" if m in expected else "sent"), m
    # ...and the sweep assigns exactly those.
    first = await engine.run_scheduled_evaluation(AS_OF)
    assert first.per_rule["inactive_21d"]["holdout"] == len(expected)
    got = await arms(pool)
    assert {m for m, a in got.items() if a == {"holdout"}} == expected
    assert {m for m, a in got.items() if a == {"sent"}} == set(mentors) - expected

    # A reload (the file read again, a new engine) keeps every assignment; the held-out follow
    # the same reminder schedule (the 2nd reminder after the 7-day cooldown), still without a push.
    reloaded = Engine(pool, load_rules(path))
    second = await reloaded.run_scheduled_evaluation(AS_OF + 8 * DAY)
    assert second.per_rule["inactive_21d"]["holdout"] == len(expected)
    assert {m for m, a in (await arms(pool)).items() if a == {"holdout"}} == expected
    ledger = await pool.fetch(
        "SELECT mentor_id, count(*) AS n, bool_and(held_out) AS held FROM scenario_notification GROUP BY 1"
    )
    assert {r["mentor_id"] for r in ledger if r["n"] == 2 and r["held"]} == expected
    pushed = {r["mentor_id"] for r in await pool.fetch("SELECT mentor_id FROM push_notification")}
    assert pushed == set(mentors) - expected
    # one experiment for both runs: nothing changed that defines it
    assert await pool.fetchval("SELECT count(DISTINCT experiment_id) FROM scenario_decision") == 1


async def test_changing_the_salt_or_the_share_starts_a_new_experiment(pool: asyncpg.Pool[Any]) -> None:
    mentors = [await add_mentor(pool, joined_at=AS_OF - 30 * DAY) for _ in range(30)]
    for n, (salt, percent) in enumerate([("", 30.0), ("spring", 30.0), ("spring", 10.0)]):
        rule = InactivityRule(
            name="inactive_21d",
            threshold_days=21,
            cooldown_days=1,
            holdout_salt=salt,
            holdout_percent=percent,
        )
        await Engine(pool, Rules(inactivity=[rule])).run_scheduled_evaluation(AS_OF + 2 * n * DAY)
    rows = await pool.fetch(
        "SELECT e.holdout_salt, e.holdout_percent::float8 AS p, count(d.id) AS n FROM scenario_experiment e "
        "JOIN scenario_decision d ON d.experiment_id = e.id GROUP BY e.id ORDER BY e.id"
    )
    assert [(r["holdout_salt"], r["p"], r["n"]) for r in rows] == [
        ("inactive_21d", 30.0, 30),
        ("spring", 30.0, 30),
        ("spring", 10.0, 30),
    ]
    assert len(mentors) == 30
