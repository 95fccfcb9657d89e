"""The demo's twelve weeks of history (demo_history.py), written by the engine's own sweeps.

One seeding of 1500 mentors (about half the default population, the same shares per
organisation) is checked for what the demo is meant to show: decisions over twelve weeks in
both arms of a 10 % holdout, a lift with its interval for a large organisation, "not enough
data" for the small one, renewals against lapses, weekly figures, organisation names — and that
it is the engine's record, consistent with the outcome definitions, not rows written by hand.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scenario_engine.cli.output.report import format_table, report_json
from scenario_engine.db.connect import connect
from scenario_engine.dev.demo import write_demo_rules
from scenario_engine.dev.demo_history import ORGANISATIONS, HistoryStats, seed_history
from scenario_engine.outcomes.report import Report, build_report
from scenario_engine.web.programme_view import load_programme_health, render_programme

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
WEEK = dt.timedelta(days=7)
BIG, SMALL = ORGANISATIONS[0], ORGANISATIONS[-1]


@pytest.fixture(scope="module")
async def seeded(
    pg_server: Any, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, HistoryStats, float]]:
    """One seeded database for the module (seeding is the slow part)."""
    from tests.conftest import _clone, _drop

    name = await _clone(pg_server, template_db)
    url = pg_server.url(name)
    _, rules = write_demo_rules(Path(tmp_path_factory.mktemp("demo")) / "pg")
    conn = await connect(url)
    try:
        started = time.perf_counter()
        stats = await seed_history(url, conn, rules, mentors=1500, now=NOW)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    yield url, stats, seconds
    await _drop(pg_server, name)


@pytest.fixture
async def db(seeded: tuple[str, HistoryStats, float]) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await connect(seeded[0])
    yield conn
    await conn.close()


async def _report(db: asyncpg.Connection[Any]) -> Report:
    return await build_report(db, since=NOW - 13 * WEEK, until=NOW, as_of=NOW)


async def test_history_spans_twelve_weeks_in_both_arms(
    seeded: tuple[str, HistoryStats, float], db: asyncpg.Connection[Any]
) -> None:
    _, stats, seconds = seeded
    print(f"seeded 1500 mentors and twelve weeks in {seconds:.1f} s: {stats}")
    span = await db.fetchrow(
        "SELECT min(as_of), max(as_of) FROM scenario_engine.scenario_decision WHERE outcome = 'sent'"
    )
    assert span is not None
    first, last = span
    assert first <= NOW - 11 * WEEK and last >= NOW - dt.timedelta(days=2)
    weeks = await db.fetchval(
        "SELECT count(DISTINCT date_trunc('week', as_of)) FROM scenario_engine.scenario_decision"
        " WHERE outcome = 'sent'"
    )
    assert weeks >= 12
    arms = {
        (r["rule_name"], r["outcome"]): r["n"]
        for r in await db.fetch(
            "SELECT rule_name, outcome, count(*) AS n FROM scenario_engine.scenario_decision"
            " WHERE outcome IN ('sent', 'holdout') GROUP BY 1, 2"
        )
    }
    for rule in ("inactive_21d", "certification_expiry", "sessions_year"):
        assert arms[(rule, "sent")] > 0 and arms[(rule, "holdout")] > 0, arms
    percents = {
        float(r["holdout_percent"])
        for r in await db.fetch("SELECT holdout_percent FROM scenario_engine.scenario_experiment")
    }
    assert percents == {10.0}


async def test_history_is_the_engines_record_and_outcomes_follow_their_definitions(
    db: asyncpg.Connection[Any],
) -> None:
    # Every sent or held-out decision has its ledger row and its outcome; every sent one a push,
    # and the history's pushes are delivered or rejected, none left for the dispatcher.
    assert (
        await db.fetchval(
            """SELECT count(*) FROM scenario_engine.scenario_decision d
           LEFT JOIN scenario_engine.scenario_notification n ON n.id = d.notification_id
           LEFT JOIN scenario_engine.scenario_outcome o ON o.decision_id = d.id
           WHERE d.outcome IN ('sent', 'holdout') AND (n.id IS NULL OR o.decision_id IS NULL)"""
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM scenario_engine.push_notification WHERE status NOT IN ('sent', 'dead')"
        )
        == 0
    )
    # Achieved inactivity outcomes have the activity that achieved them inside the window.
    assert (
        await db.fetchval(
            """SELECT count(*) FROM scenario_engine.scenario_outcome o
           WHERE o.scenario_type = 'inactivity' AND o.status = 'achieved' AND NOT EXISTS (
               SELECT 1 FROM public.activity a WHERE a.mentor_id = o.mentor_id
                 AND a.occurred_at > o.decided_at AND a.occurred_at <= o.window_ends_at)"""
        )
        == 0
    )
    # Missed ones have none; windows that closed before the last sweep are resolved.
    assert (
        await db.fetchval(
            """SELECT count(*) FROM scenario_engine.scenario_outcome o
           WHERE o.scenario_type = 'inactivity' AND o.status = 'missed' AND EXISTS (
               SELECT 1 FROM public.activity a WHERE a.mentor_id = o.mentor_id
                 AND a.occurred_at > o.decided_at AND a.occurred_at <= o.window_ends_at)"""
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM scenario_engine.scenario_outcome WHERE status = 'pending'"
            " AND window_ends_at < $1::timestamptz",
            NOW - dt.timedelta(days=2),
        )
        == 0
    )
    # Nothing is dated in the future of the history, and no event waits to be replayed.
    assert await db.fetchval("SELECT count(*) FROM public.activity WHERE occurred_at > $1", NOW) == 0
    assert await db.fetchval("SELECT count(*) FROM scenario_engine.scenario_event") == 0


async def test_report_shows_a_lift_for_a_large_organisation_and_not_enough_data_for_a_small_one(
    db: asyncpg.Connection[Any],
) -> None:
    report = await _report(db)
    doc = report_json(report)
    rows = {(r["organization_id"], r["rule"]): r for r in doc["rows"]}
    big = rows[(str(BIG[0]), "inactive_21d")]
    assert big["organization_name"] == BIG[1]
    assert big["lift_points"] is not None and big["lift_interval"] is not None, big
    assert big["treated"]["rate_percent"] > big["holdout"]["rate_percent"]  # the nudge helps
    small = rows[(str(SMALL[0]), "inactive_21d")]
    assert small["lift_points"] is None and "not enough data" in (small["lift_note"] or "")
    table = format_table(report)
    assert BIG[1] in table and SMALL[1] in table and "not enough data" in table
    assert str(BIG[0]) not in table  # names, not ids


async def test_most_certifications_are_renewed_and_some_lapse(db: asyncpg.Connection[Any]) -> None:
    report = await _report(db)
    for cert in report.certifications:
        if cert.organization_id == BIG[0]:
            period = cert.period
            assert period.renewed_in_time > period.lapsed > 0, period
            break
    else:
        raise AssertionError("no certifications for the large organisation")
    achieved = await db.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_outcome"
        " WHERE scenario_type = 'certification_expiry' AND status = 'achieved'"
    )
    assert achieved > 0


async def test_programme_page_shows_names_weekly_figures_and_a_measured_difference(
    db: asyncpg.Connection[Any],
) -> None:
    page = await load_programme_health(db, NOW)
    by_name = {o.name: o for o in page.organisations}
    assert {name for _, name, _ in ORGANISATIONS} <= set(by_name)
    big = by_name[BIG[1]]
    inactivity = next(s for s in big.scenarios if s.scenario_type == "inactivity")
    assert sum(1 for w in inactivity.weeks if w.sent) >= 11  # weekly figures, not one week
    assert any(lift.difference is not None and lift.low is not None for lift in inactivity.lifts)
    certification = next(s for s in big.scenarios if s.scenario_type == "certification_expiry")
    assert certification.certifications is not None
    assert sum(w.renewed for w in certification.certifications) > sum(
        w.lapsed for w in certification.certifications
    )
    html = render_programme(page)
    assert BIG[1].replace("'", "&#39;") in html or BIG[1] in html
    assert f"Organisation {BIG[0]}" not in html
