"""The programme-health page (GET /programme), from real rows in Postgres to what Chromium shows.

Rows are written to the tables the page reads (decisions, notifications, pushes, outcomes,
experiments, certifications); the expected figures are computed here in Python from the same
list of items, independently of the page's SQL. The status server is the real one
(``serve_status``, with a bearer token), and the browser a real headless Chromium driven over
the DevTools protocol: DOM checks at 1280 and 400 px, no horizontal scrolling on a phone, print
media, and screenshots and a PDF kept in ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import asyncpg

from scenario_engine.dev.embedded import free_port
from tests.support.programme_page import ORG_A, get, status_server
from tests.support.status_page import parse_dom


async def test_programme_page_says_the_figures_are_unavailable_while_the_database_is_down() -> None:
    dead_port = free_port()
    pool = await asyncpg.create_pool(
        f"postgresql://nobody@127.0.0.1:{dead_port}/nothing", min_size=0, max_size=1
    )
    assert pool is not None
    try:
        async with status_server(pool) as base:
            code, kind, page = await get(f"{base}/programme?organization={ORG_A}")
            no_pool_code, _, _ = await get(f"{base}/programme", token="wrong")
    finally:
        await pool.close()
    assert (code, kind, no_pool_code) == (200, "text/html", 401)
    dom = parse_dom(page)
    assert "The figures are unavailable right now" in dom.by_id("unavailable").text
    assert "could not be reached" in dom.by_id("unavailable").text
    assert "Traceback" not in page and "Error" not in page
    assert not dom.iter("table")
