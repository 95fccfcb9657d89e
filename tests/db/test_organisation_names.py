"""Organisation names in the report and on the programme page, from the optional platform
table public.organization: the name where the table has one, the id otherwise — without the
table, without the right to read it, or with a table of another shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from scenario_engine.cli.output.report import format_table, report_json
from scenario_engine.engine import Engine
from scenario_engine.outcomes.organisations import organisation_names
from scenario_engine.outcomes.report import build_report
from scenario_engine.web.programme_view import load_programme_health, render_programme
from tests.support.factories import ORG, add_activity, add_certification, add_mentor

AS_OF = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
NAME = "Fjord & Fell Mentors"


async def _decisions(pool: asyncpg.Pool[Any], engine: Engine) -> None:
    """A few decisions of ORG's mentors (inactivity and a certification reminder)."""
    for i in range(3):
        mentor = await add_mentor(pool, joined_at=AS_OF - 200 * DAY, name=f"Mentor {i}")
        await add_activity(pool, mentor, AS_OF - 30 * DAY)
        await add_certification(pool, mentor, expires_at=AS_OF + 5 * DAY)
    await engine.run_scheduled_evaluation(AS_OF)


async def _labels(pool: asyncpg.Pool[Any]) -> tuple[str, dict[str, Any], str]:
    async with pool.acquire() as conn:
        report = await build_report(conn, since=AS_OF - 7 * DAY, until=AS_OF + DAY, as_of=AS_OF + DAY)
        page = await load_programme_health(conn, AS_OF + DAY)
    return format_table(report), report_json(report), render_programme(page)


async def test_report_and_page_show_the_organisations_name(pool: asyncpg.Pool[Any], engine: Engine) -> None:
    await _decisions(pool, engine)
    await pool.execute("INSERT INTO public.organization (id, name) VALUES ($1, $2)", ORG, NAME)
    table, doc, html = await _labels(pool)
    assert NAME in table and str(ORG) not in table
    assert {r["organization_name"] for r in doc["rows"]} == {NAME}
    assert "Fjord &amp; Fell Mentors" in html and f"Organisation {ORG}" not in html
    async with pool.acquire() as conn:
        one = await load_programme_health(conn, AS_OF + DAY, organization_id=ORG)
    assert one.title == f"Programme health · {NAME}"


async def test_without_the_table_the_id_is_shown(pool: asyncpg.Pool[Any], engine: Engine) -> None:
    await _decisions(pool, engine)
    await pool.execute("DROP TABLE public.organization")
    table, doc, html = await _labels(pool)
    assert str(ORG) in table
    assert {r["organization_name"] for r in doc["rows"]} == {None}
    assert f"Organisation {ORG}" in html
    async with pool.acquire() as conn:
        one = await load_programme_health(conn, AS_OF + DAY, organization_id=ORG)
    assert one.title == f"Programme health · organisation {ORG}"


async def test_a_table_of_another_shape_or_a_blank_name_is_not_used(
    pool: asyncpg.Pool[Any], engine: Engine
) -> None:
    await _decisions(pool, engine)
    await pool.execute("INSERT INTO public.organization (id, name) VALUES ($1, '  ')", ORG)
    assert await organisation_names(pool, [ORG]) == {}  # blank: the id is more use
    await pool.execute("DROP TABLE public.organization")
    await pool.execute("CREATE TABLE public.organization (id bigint PRIMARY KEY, title text)")
    assert await organisation_names(pool, [ORG]) == {}
    table, _, html = await _labels(pool)
    assert str(ORG) in table and f"Organisation {ORG}" in html


async def test_a_name_is_one_line(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(
        "INSERT INTO public.organization (id, name) VALUES ($1, $2)", ORG, "North\n  side\tPeers"
    )
    assert await organisation_names(pool, [ORG, None]) == {ORG: "North side Peers"}


async def test_the_runtime_role_may_read_the_names(db_url: str, pool: asyncpg.Pool[Any]) -> None:
    """migrate grants the runtime role SELECT on the table it created (sql/roles.sql), with the
    row-level-security policy the other reference tables have."""
    assert await pool.fetchval(
        "SELECT has_table_privilege('scenario_engine_runtime', 'public.organization', 'SELECT')"
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pg_policy WHERE polrelid = 'public.organization'::regclass"
            " AND polname = 'scenario_engine_runtime'"
        )
        == 1
    )
