"""The mature cohort (docs/OUTCOMES.md): `report` and the programme page rate only decisions
whose outcome window has closed by the instant they are taken at, in both arms alike, and show
the others as "still being measured: N (M already achieved)".

A hand-computed dataset where nearly every window is still open. One organisation, one rule
(experiment with a 10 % holdout); each decision has a 14-day window.

    treated, mature   (decided 20 days ago):  3 achieved, 2 missed            → 3/5  = 60 %
    treated, mature but not resolved yet (decided 15 days ago, still pending): 1 → measured
    treated, open     (decided 3 days ago):  40 achieved already, 20 pending  → measured
    holdout, mature   (decided 20 days ago):  1 achieved, 3 missed            → 1/4  = 25 %
    holdout, open     (decided 3 days ago):  30 achieved already, 10 pending  → measured

The biased formula (achieved / (achieved + missed) over every resolved outcome) would say
treated 43/45 = 95.6 %, holdout 31/34 = 91.2 %, and, with 45 and 34 "final" outcomes, give a
lift; over the mature cohort both arms are below the minimum of 30: not enough data.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from scenario_engine.outcomes.model import Arm
from scenario_engine.outcomes.report import build_report
from scenario_engine.web.programme_view import load_programme_health, rate_detail, rate_text, week_start
from tests.db.test_report import ORG_A, Group, add_candidate, add_experiment
from tests.support.cli import run_cli

DAY = dt.timedelta(days=1)
WINDOW = 14 * DAY  # add_candidate's window


async def seed(conn: Any, now: dt.datetime) -> Group:
    experiment = await add_experiment(conn, "inactive_21d", "inactivity", "salt-m", 10)
    group = Group(ORG_A, "inactive_21d", "inactivity", experiment)
    plan = [
        ("sent", now - 20 * DAY, "achieved", 3),
        ("sent", now - 20 * DAY, "missed", 2),
        ("sent", now - 15 * DAY, "pending", 1),
        ("sent", now - 3 * DAY, "achieved", 40),
        ("sent", now - 3 * DAY, "pending", 20),
        ("holdout", now - 20 * DAY, "achieved", 1),
        ("holdout", now - 20 * DAY, "missed", 3),
        ("holdout", now - 3 * DAY, "achieved", 30),
        ("holdout", now - 3 * DAY, "pending", 10),
    ]
    for final, at, status, n in plan:
        for _ in range(n):
            await add_candidate(conn, group, final, outcome_status=status, at=at)
    return group


TREATED = {
    "final": 5,
    "achieved": 3,
    "missed": 2,
    "rate_percent": 60.0,
    "still_being_measured": 61,
    "already_achieved": 40,
}
HOLDOUT = {
    "final": 4,
    "achieved": 1,
    "missed": 3,
    "rate_percent": 25.0,
    "still_being_measured": 40,
    "already_achieved": 30,
}


async def test_report_json_and_the_page_rate_exactly_the_mature_decisions(db_url: str, conn: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    await seed(conn, now)
    out = await run_cli(
        "report",
        "--since",
        (now - 30 * DAY).isoformat(),
        "--until",
        (now + DAY).isoformat(),
        "--output",
        "json",
        env={"SCENARIO_DATABASE_URL": db_url},
    )
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)["rows"]
    assert (row["treated"], row["holdout"]) == (TREATED, HOLDOUT)
    # The biased formula would have given 95.5556 % and a lift; the minimum applies to mature ones.
    assert row["treated"]["rate_percent"] != pytest.approx(100 * 43 / 45)
    assert row["lift_points"] is None and row["lift_interval"] is None
    assert row["lift_note"] == (
        "not enough data: treated has 5 and holdout has 4 final outcomes; at least 30 needed in each group"
    )
    table = await run_cli(
        "report",
        "--since",
        (now - 30 * DAY).isoformat(),
        "--until",
        (now + DAY).isoformat(),
        env={"SCENARIO_DATABASE_URL": db_url},
    )
    assert "3/5" in table.stdout and "60.0 %" in table.stdout and "1/4" in table.stdout
    assert "101 (70 already achieved)" in table.stdout  # both arms, still being measured

    page = await load_programme_health(conn, now)
    (org,) = page.organisations
    (quiet,) = org.scenarios
    assert quiet.outcome == Arm(achieved=3, missed=2, measuring=61, measuring_achieved=40)
    assert rate_text(quiet.outcome) == "60\u00a0%"
    assert rate_detail(quiet.outcome) == "3 of 5; still being measured: 61 (40 already achieved)"
    (difference,) = quiet.lifts
    assert difference.treated == quiet.outcome
    assert difference.holdout == Arm(achieved=1, missed=3, measuring=40, measuring_achieved=30)
    assert difference.figure == "not enough data yet" and difference.verdict == "Not enough data yet."
    assert difference.interval.startswith("5 results known for mentors who got the message and 4 ")
    # Week by week (of the decision), the same split of the messaged decisions.
    want: dict[dt.date, Arm] = {}
    for at, arm in (
        (now - 20 * DAY, Arm(achieved=3, missed=2)),
        (now - 15 * DAY, Arm(measuring=1)),
        (now - 3 * DAY, Arm(measuring=60, measuring_achieved=40)),
    ):
        want[week_start(at)] = want.get(week_start(at), Arm()) + arm
    assert {w.week: w.outcome for w in quiet.weeks if w.outcome.decisions} == want
    assert [w.mature for w in quiet.weeks if w.outcome.decisions] == [
        want[w].measuring == 0 for w in sorted(want)
    ]
    assert rate_text(quiet.weeks[-1].outcome) == "—"  # this week's decisions: all still being measured


async def test_the_edge_of_maturity_is_the_instant_taken_at(conn: Any) -> None:
    """A window that ends at as_of has closed (its outcome is final); one that ends a microsecond
    later is still open. The same on the page, whose window includes as_of itself."""
    as_of = dt.datetime(2026, 3, 18, 12, tzinfo=dt.UTC)  # a Wednesday
    experiment = await add_experiment(conn, "inactive_21d", "inactivity", "salt-e", 10)
    group = Group(ORG_A, "inactive_21d", "inactivity", experiment)
    await add_candidate(conn, group, "sent", outcome_status="missed", at=as_of - WINDOW)
    await add_candidate(conn, group, "sent", outcome_status="achieved", at=as_of - WINDOW)
    early = as_of - WINDOW + dt.timedelta(microseconds=1)
    await add_candidate(conn, group, "sent", outcome_status="achieved", at=early)
    await add_candidate(conn, group, "sent", outcome_status="pending", at=early)
    await add_candidate(conn, group, "sent", outcome_status="pending", at=as_of)  # decided at as_of
    report = await build_report(conn, since=as_of - 30 * DAY, until=as_of + DAY, as_of=as_of)
    (row,) = report.rows
    assert row.treated == Arm(achieved=1, missed=1, measuring=3, measuring_achieved=1)
    page = await load_programme_health(conn, as_of)
    assert page.organisations[0].scenarios[0].outcome == row.treated
    # A microsecond later the two windows have closed too; with no resolution run since, the
    # pending one is still being measured (resolve.py would mark it missed on the next sweep).
    later = await build_report(
        conn, since=as_of - 30 * DAY, until=as_of + DAY, as_of=as_of + dt.timedelta(microseconds=1)
    )
    assert later.rows[0].treated == Arm(achieved=2, missed=1, measuring=2, measuring_achieved=0)
