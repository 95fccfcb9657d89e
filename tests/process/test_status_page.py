"""The status page (GET / on the status port), rendered by a real headless Chromium.

The acceptance test starts the real daemon, lets its first sweep write decisions next to
older ones inserted with SQL, and checks what Chromium rendered against the database. A
screenshot is kept in ``test-artifacts/status-page.png`` for people to look at.
"""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.runtime.state import RuntimeState
from scenario_engine.web.server import StatusPageSource
from scenario_engine.web.status_chart import (
    nice_ceiling,
)
from scenario_engine.web.status_view import (
    DELIVERY_COLUMNS,
    deliveries_from_rows,
    describe_period,
    format_time,
)
from tests.support.factories import add_activity, add_mentor, opt_out
from tests.support.status_page import NOW, SCENARIOS, page_for, parse_dom

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-artifacts" / "status-page.png"
CHROMIUM_TIMEOUT = 90.0

RULES = """
daily_cap = 100
[[inactivity]]
name = "inactive_30d"
threshold_days = 30
cooldown_days = 7
max_reminders = 2
"""

# Decisions logged before the daemon starts: (scenario, days ago, outcome, how many).
HISTORY = [
    ("inactivity", 3, "sent", 4),
    ("inactivity", 3, "cooldown", 1),
    ("inactivity", 10, "sent", 2),
    ("inactivity", 17, "daily_cap", 3),
    ("milestone", 1, "sent", 5),
    ("milestone", 1, "baseline", 2),
    ("milestone", 12, "sent", 1),
    ("milestone", 29, "sent", 2),  # the oldest day shown
    ("certification_expiry", 5, "sent", 3),
    ("certification_expiry", 5, "opted_out", 1),
    ("certification_expiry", 20, "mentor_not_active", 1),
    ("inactivity", 31, "sent", 6),  # older than 30 days: not shown
]


# --- Chromium ------------------------------------------------------------------------------------


def chromium_binary() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found is None:
        pytest.fail(
            "Chromium is not installed, and this test needs a real browser: "
            "apt-get update && apt-get install -y chromium (make test does this as root: scripts/test-tools)",
            pytrace=False,
        )
    return found


async def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
        url,
    ]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    result = await anyio.to_thread.run_sync(run)
    assert result.returncode == 0, f"chromium exited with {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# --- data ----------------------------------------------------------------------------------------


async def seed_history(pool: Any, today: dt.date) -> None:
    rows = []
    for scenario, days_ago, outcome, n in HISTORY:
        at = dt.datetime.combine(today - dt.timedelta(days=days_ago), dt.time(12), tzinfo=dt.UTC)
        for i in range(n):
            key = f"history:{scenario}:{days_ago}:{outcome}:{i}"
            rows.append(
                (uuid.uuid4(), scenario, f"{scenario}_rule", key, outcome, "seeded by the test", at, at)
            )
    await pool.executemany(
        "INSERT INTO scenario_decision (mentor_id, scenario_type, rule_name, dedup_key, outcome, reason, "
        "as_of, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        rows,
    )


async def expected_counts(pool: Any, today: dt.date) -> dict[tuple[str, dt.date, str], int]:
    """(scenario, UTC day, 'sent'|'suppressed') -> count, straight from the raw rows."""
    first = today - dt.timedelta(days=29)
    counts: Counter[tuple[str, dt.date, str]] = Counter()
    for row in await pool.fetch("SELECT scenario_type, outcome, created_at FROM scenario_decision"):
        day = row["created_at"].astimezone(dt.UTC).date()
        if first <= day <= today:
            kind = "sent" if row["outcome"] == "sent" else "suppressed"
            counts[(row["scenario_type"], day, kind)] += 1
    return dict(counts)


# --- tests ---------------------------------------------------------------------------------------


@pytest.mark.acceptance
async def test_status_page_in_headless_chromium(daemons: Any, pool: Any, tmp_path: Path) -> None:
    binary = chromium_binary()  # fail at once, before starting anything, if there is no browser
    today = dt.datetime.now(dt.UTC).date()
    await seed_history(pool, today)
    # The daemon's first sweep adds today's bars: three mentors inactive for 35 days, one opted out.
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=35)
    mentors = []
    for name in ("Ada", "Brook", "Cyd"):
        mentor = await add_mentor(pool, joined_at=long_ago - dt.timedelta(days=30), name=name)
        await add_activity(pool, mentor, long_ago)
        mentors.append(mentor)
    await opt_out(pool, mentors[2])

    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES)
    d = daemons(rules_file=rules_file)
    await d.wait_ready()
    midnight = dt.datetime.combine(today, dt.time(0), tzinfo=dt.UTC)

    async def today_outcomes() -> dict[str, int]:
        rows = await pool.fetch(
            "SELECT outcome, count(*) AS n FROM scenario_decision WHERE created_at >= $1 GROUP BY outcome",
            midnight,
        )
        return {r["outcome"]: r["n"] for r in rows}

    # Wait for a quiet daemon (sweep done, events drained, pushes sent) so the page is stable.
    seen: tuple[Any, ...] = ()
    deadline = anyio.current_time() + 30
    while anyio.current_time() < deadline:
        status = await d.status()
        seen = (status["last_sweep"], status["backlogs"], await today_outcomes())
        # The drain (the seeded rows' events) and the first sweep race for the two reminders:
        # whichever decides second logs cooldowns beside them; the page is checked against the
        # database's own counts below, whichever won.
        settled = seen[0] is not None and seen[2].get("sent") == 2 and seen[2].get("opted_out", 0) >= 1
        if settled and seen[1].get("events_pending") == 0 and seen[1].get("pushes_pending") == 0:
            break
        await anyio.sleep(0.1)
    else:
        raise AssertionError(f"the daemon did not settle: {seen}\n{d.logs()[-3000:]}")
    status = await d.status()
    expected = await expected_counts(pool, today)

    url = f"http://127.0.0.1:{d.port}/"
    code, body = await d.http("/")
    assert code == 200
    assert b'http-equiv="refresh"' in body
    assert b"<script" not in body.lower()

    dump = await chromium(url, tmp_path / "profile-dom", "--dump-dom")
    dom = parse_dom(dump.stdout)
    page_text = dom.text
    if "without a database pool" in page_text:
        pytest.fail(
            "the daemon serves the status page without a database pool: "
            "runtime/app.py must pass pool=pool to serve_status",
            pytrace=False,
        )

    # Who and how this instance is.
    assert status["role"] == "leader"
    assert dom.by_id("role").text == "Leader"
    assert dom.by_id("readiness").text == "Ready"
    assert dom.by_id("instance-id").text == status["instance_id"] == f"daemon-{d.port}"
    sweep = dom.by_id("last-sweep").text
    key = status["last_sweep"]["sweep_key"]
    period = describe_period(key)
    assert period is not None
    # The period in words (its start), not the raw key.
    assert dom.by_id("sweep-period").text.startswith(f"started {format_time(period.start)}")
    assert key not in sweep
    assert dom.by_id("last-sweep").iter("dl")[0].attrs["data-sweep-key"] == key
    # The sweep's per-rule counts depend on how far the event drain got first (it then counts
    # duplicates), so the page is compared with what the daemon itself reports.
    if not status["last_sweep"]["per_rule"]:
        assert "No rule produced a decision" in sweep
    else:
        per_rule = dom.by_id("per-rule")
        head = per_rule.iter("thead")[0].iter("th")[1:]
        header = [th.attrs["data-outcome"] for th in head]
        assert "sent" not in {th.text for th in head}  # 'sent' decisions were queued, not delivered
        for rule, counts in status["last_sweep"]["per_rule"].items():
            row = next(tr for tr in per_rule.iter("tr") if tr.iter("th")[0].text == rule)
            shown = dict(zip(header, [td.text for td in row.iter("td")], strict=True))
            assert set(counts) <= set(header)
            assert shown == {outcome: str(counts.get(outcome, 0)) for outcome in header}
    assert "Next sweep" in page_text and status["next_sweep_at"] is not None
    for key in ("events_pending", "events_dead", "pushes_pending", "pushes_dead"):
        card = dom.by_id(f"backlog-{key}")
        assert str(status["backlogs"][key]) in card.text, (key, card.text)

    # The chart: one bar per non-zero (scenario, day, sent|suppressed), sized and labelled; one
    # SVG per scenario (the CSS grid lays them out), an HTML legend.
    chart = dom.by_id("decision-chart")
    panels = [svg for svg in chart.iter("svg") if "chart-panel" in svg.classes]
    assert [p.attrs["data-scenario"] for p in panels] == list(SCENARIOS)
    legend = dom.by_id("chart-legend")
    assert {"Queued for delivery"} <= {li.text for li in legend.iter("li")}
    assert any(li.text.startswith("Suppressed") for li in legend.iter("li"))
    assert [r.attrs["fill"] for r in legend.iter("rect")] == ["#3b7ea1", "#e2b36b"]
    bars = [r for r in chart.iter("rect") if "bar" in r.classes]
    got: dict[tuple[str, dt.date, str], int] = {}
    for panel in panels:
        scenario = panel.attrs["data-scenario"]
        # Each panel has its own scale, fitted to its own busiest day.
        peak = max(
            (
                sum(n for (s, d, _), n in expected.items() if s == scenario and d == day)
                for day in {d for (s, d, _) in expected if s == scenario}
            ),
            default=0,
        )
        assert int(panel.attrs["data-axis-max"]) == nice_ceiling(peak)[0], scenario
        for rect in panel.iter("rect"):
            if "bar" not in rect.classes:
                continue
            assert float(rect.attrs["height"]) > 0 and float(rect.attrs["width"]) > 0
            kind = "sent" if "sent" in rect.classes else "suppressed"
            day = dt.date.fromisoformat(rect.attrs["data-day"])
            got[(scenario, day, kind)] = int(rect.attrs["data-count"])
            titles = rect.iter("title")
            words = "queued for delivery" if kind == "sent" else "suppressed"
            assert len(titles) == 1 and f"{rect.attrs['data-count']} {words}" in titles[0].text
    assert len(bars) == len(got) == len(expected) == 13
    assert got == expected
    axis_titles = {t.text for t in chart.iter("text") if "axis-title" in t.classes}
    assert axis_titles == {"Decisions per day", "Day (UTC)"}
    panel_titles = [t.text for t in chart.iter("text") if "panel-title" in t.classes]
    assert panel_titles == ["Inactivity", "Milestone", "Certification expiry", "Anniversary"]

    # The table beneath says the same, for screen readers and for copying.
    table = dom.by_id("decision-table")
    body_rows = table.iter("tbody")[0].iter("tr")
    assert len(body_rows) == len({day for (_, day, _) in expected})
    for tr in body_rows:
        day = dt.date.fromisoformat(tr.attrs["data-day"])
        cells = [int(td.text.replace("\u202f", "")) for td in tr.iter("td")]
        want = [expected.get((s, day, k), 0) for s in SCENARIOS for k in ("sent", "suppressed")]
        assert cells == want, (day, cells, want)
    totals = [int(td.text.replace("\u202f", "")) for td in table.iter("tfoot")[0].iter("td")]
    assert totals == [
        sum(n for (s, _, k), n in expected.items() if (s, k) == (scenario, kind))
        for scenario in SCENARIOS
        for kind in ("sent", "suppressed")
    ]
    # The seeded history within 30 days, plus today's bars: two reminders sent and the opted-out
    # mentor suppressed — and, when the drain and the first sweep both decide (either order),
    # the second one's cooldowns and opt-out beside them (counted above from the database).
    today_cells = [expected.get((s, today, k), 0) for s in SCENARIOS for k in ("sent", "suppressed")]
    assert [t - c for t, c in zip(totals, today_cells, strict=True)] == [6, 4, 8, 2, 3, 2, 0, 0]
    assert today_cells[0] == 2 and 1 <= today_cells[1] <= 4

    # What became of the pushes queued in these 30 days, per scenario, as push_notification says.
    first = dt.datetime.combine(today - dt.timedelta(days=29), dt.time(0), tzinfo=dt.UTC)
    pushes = await pool.fetch(
        "SELECT scenario_type, status, count(*) AS n FROM scenario_engine.push_notification "
        "WHERE created_at >= $1 GROUP BY 1, 2",
        first,
    )
    want_deliveries = deliveries_from_rows(pushes)
    assert want_deliveries.rows[0].counts[0] == 2  # today's two inactivity pushes were delivered
    deliveries = dom.by_id("delivery-table")
    columns = [th.attrs["data-status"] for th in deliveries.iter("thead")[0].iter("th")[1:]]
    assert columns == [key for key, _, _ in DELIVERY_COLUMNS]
    for want_row in want_deliveries.rows:
        tr = next(tr for tr in deliveries.iter("tr") if tr.attrs.get("data-scenario") == want_row.scenario)
        assert [int(td.text.replace("\u202f", "")) for td in tr.iter("td")] == list(want_row.counts)

    # A picture for people.
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    await chromium(url, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}", "--window-size=1280,1024")
    assert SCREENSHOT.exists(), f"chromium wrote no screenshot ({binary})"
    assert SCREENSHOT.stat().st_size > 10_000
    assert png_size(SCREENSHOT) == (1280, 1024)


async def test_last_sweep_is_read_from_the_database_when_the_process_has_none(pool: Any) -> None:
    """After a restart (or on a follower) the page shows the last finished sweep on record."""
    token = uuid.uuid4()
    started = NOW - dt.timedelta(seconds=90)
    await pool.execute(
        "INSERT INTO scenario_engine.scenario_sweep (sweep_key, as_of, instance_id, started_at, finished_at,"
        " stats, claim_token) VALUES ($1, $2, 'other-host:1', $3, $4, $5, $6)",
        "every60s:29935153",
        started,
        started,
        started + dt.timedelta(seconds=75),
        {"mode": "full", "per_rule": {"inactive_30d": {"sent": 4, "cooldown": 1}}},
        token,
    )
    await pool.executemany(
        "INSERT INTO scenario_engine.scenario_sweep_batch (sweep_key, claim_token, batch_no, instance_id,"
        " first_mentor, last_mentor, mentors, started_at)"
        " VALUES ($1, $2, $3, 'other-host:1', $4, $4, $5, $6)",
        [("every60s:29935153", token, n, uuid.uuid4(), 500, started) for n in (1, 2)],
    )
    stored = await StatusPageSource(pool).get()
    assert stored.last_sweep is not None
    state = RuntimeState(instance_id="restarted")
    state.set_database(True)
    view, dom = page_for(state, stored)
    assert view.last_sweep == stored.last_sweep
    assert view.last_sweep.source == "database" and view.last_sweep.seconds == 75.0
    text = dom.by_id("last-sweep").text
    assert "1 000" in text and "1 min 15 s" in text  # mentors from the batch ledger; duration
    assert "other-host:1" in dom.by_id("sweep-source").text
    assert dom.by_id("per-rule").iter("td")[0].text == "4"
    # The process's own sweep wins once it has one, unless the database holds a later one.
    state.last_sweep = {"sweep_key": "every60s:29935154", "finished_at": NOW.isoformat(), "per_rule": {}}
    own = page_for(state, stored)[0].last_sweep
    assert own is not None and own.source == "process" and own.key == "every60s:29935154"
