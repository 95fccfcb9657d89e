"""The programme-health page (GET /programme), from real rows in Postgres to what Chromium shows.

Rows are written to the tables the page reads (decisions, notifications, pushes, outcomes,
experiments, certifications); the expected figures are computed here in Python from the same
list of items, independently of the page's SQL. The status server is the real one
(``serve_status``, with a bearer token), and the browser a real headless Chromium driven over
the DevTools protocol: DOM checks at 1280 and 400 px, no horizontal scrolling on a phone, print
media, and screenshots and a PDF kept in ``test-artifacts/`` for people to look at.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType

from scenario_engine.outcomes.stats import newcombe_interval
from scenario_engine.web.programme_view import points, week_label, week_start
from tests.process.test_status_page import chromium_binary, png_size
from tests.support.programme_page import ORG_A, TOKEN, get, status_server
from tests.support.status_page import Node, parse_dom

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
STEP_TIMEOUT = 60.0
ORG_B = uuid.UUID("00000000-0000-0000-0000-00000000000b")
# Words that mean something to the engine's operators and nothing to programme staff.
JARGON = ("dedup", "rule", "experiment", "period key", "holdout", "treated", "scenario", "sweep")


# --- what is in the database ---------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One decision and what followed it."""

    org: uuid.UUID | None
    scenario: str
    rule: str
    experiment: str  # key into the experiments inserted
    at: dt.datetime
    outcome: str  # the decision: sent | holdout | cooldown
    push: str | None = None  # push_notification.status of a sent decision
    result: str | None = None  # scenario_outcome.status: pending | achieved | missed


class Clock:
    """Instants placed in the UTC weeks before the one holding ``now``."""

    def __init__(self, now: dt.datetime):
        self.now = now
        self.monday = dt.datetime.combine(week_start(now), dt.time(0), tzinfo=dt.UTC)

    def week(self, weeks_ago: int) -> dt.datetime:
        """A Wednesday noon, or in the current week a moment that has already passed."""
        start = self.monday - dt.timedelta(weeks=weeks_ago)
        if weeks_ago == 0:
            return start + (self.now - start) / 2
        return start + dt.timedelta(days=2, hours=12)

    def monday_of(self, weeks_ago: int) -> dt.datetime:
        return self.monday - dt.timedelta(weeks=weeks_ago)


def many(n: int, **fields: Any) -> list[Item]:
    return [Item(**fields) for _ in range(n)]


def sent(
    n: int, org: uuid.UUID | None, scenario: str, rule: str, exp: str, at: dt.datetime, **f: Any
) -> list[Item]:
    return many(n, org=org, scenario=scenario, rule=rule, experiment=exp, at=at, outcome="sent", **f)


def held(n: int, org: uuid.UUID | None, rule: str, exp: str, at: dt.datetime, result: str) -> list[Item]:
    return many(
        n, org=org, scenario="inactivity", rule=rule, experiment=exp, at=at, outcome="holdout", result=result
    )


def population(c: Clock) -> list[Item]:
    inact = ("inactivity", "inactive_30d")
    items: list[Item] = []
    # Organisation A, quiet mentors: the current set-up ("new", 20 % kept back) has 40 known
    # results for the messaged and 32 for the comparison group: enough for a number.
    items += sent(12, ORG_A, *inact, "new", c.week(1), push="sent", result="achieved")
    items += sent(8, ORG_A, *inact, "new", c.week(1), push="sent", result="missed")
    items += sent(9, ORG_A, *inact, "new", c.week(3), push="sent", result="achieved")
    items += sent(3, ORG_A, *inact, "new", c.week(3), push="failed", result="achieved")
    items += sent(6, ORG_A, *inact, "new", c.week(3), push="sent", result="missed")
    items += sent(2, ORG_A, *inact, "new", c.week(3), push="dead", result="missed")
    items += sent(2, ORG_A, *inact, "new", c.week(0), push="sent", result="pending")
    items += sent(1, ORG_A, *inact, "new", c.week(0), push="pending", result="pending")
    items += held(4, ORG_A, "inactive_30d", "new", c.week(1), "achieved")
    items += held(12, ORG_A, "inactive_30d", "new", c.week(1), "missed")
    items += held(4, ORG_A, "inactive_30d", "new", c.week(3), "achieved")
    items += held(12, ORG_A, "inactive_30d", "new", c.week(3), "missed")
    items += held(1, ORG_A, "inactive_30d", "new", c.week(0), "pending")
    # The previous set-up of the same messages: in the weekly figures, never in the difference.
    items += sent(2, ORG_A, *inact, "old", c.week(8), push="sent", result="achieved")
    items += sent(8, ORG_A, *inact, "old", c.week(8), push="sent", result="missed")
    items += held(30, ORG_A, "inactive_30d", "old", c.week(8), "achieved")
    # Older than the 12 weeks: counted nowhere (if it were, the difference would change).
    items += held(5, ORG_A, "inactive_30d", "new", c.monday_of(11) - dt.timedelta(seconds=1), "achieved")
    items += sent(6, ORG_A, *inact, "new", c.week(12), push="sent")
    # Week boundaries: Monday 00:00 UTC opens a week; the second before belongs to the one before.
    items += sent(1, ORG_A, *inact, "new", c.monday_of(2), push="sent")
    items += sent(1, ORG_A, *inact, "new", c.monday_of(2) - dt.timedelta(seconds=1), push="sent")
    items += sent(1, ORG_A, *inact, "new", c.monday_of(11), push="sent")  # the first instant shown
    # Suppressed decisions send nothing.
    items += many(
        7,
        org=ORG_A,
        scenario="inactivity",
        rule="inactive_30d",
        experiment="new",
        at=c.week(1),
        outcome="cooldown",
    )
    # Organisation A, certification reminders: nobody is kept back, so no difference can be measured.
    cert = ("certification_expiry", "cert_30d", "cert")
    items += sent(3, ORG_A, *cert, c.week(2), push="sent", result="achieved")
    items += sent(1, ORG_A, *cert, c.week(2), push="sent", result="missed")
    # Organisation B: too few results to compare; and a milestone celebration.
    items += sent(6, ORG_B, *inact, "new", c.week(1), push="sent", result="achieved")
    items += sent(4, ORG_B, *inact, "new", c.week(1), push="sent", result="missed")
    items += held(5, ORG_B, "inactive_30d", "new", c.week(1), "achieved")
    items += held(5, ORG_B, "inactive_30d", "new", c.week(1), "missed")
    items += sent(2, ORG_B, "milestone", "sessions_year", "milestone", c.week(6), push="sent")
    # Decisions taken before organisations were recorded.
    items += sent(2, None, *inact, "new", c.week(5), push="sent")
    return items


EXPERIMENTS = {  # key: (rule, scenario, rule holdout %, started weeks ago)
    "old": ("inactive_30d", "inactivity", 10, 30),
    "new": ("inactive_30d", "inactivity", 20, 20),
    "cert": ("cert_30d", "certification_expiry", 0, 40),
    "milestone": ("sessions_year", "milestone", 5, 40),
}


async def insert(pool: asyncpg.Pool[Any], c: Clock, items: Iterable[Item]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        experiment_ids = {}
        for key, (rule, scenario, percent, weeks_ago) in EXPERIMENTS.items():  # "old" first: a lower id
            experiment_ids[key] = await conn.fetchval(
                "INSERT INTO scenario_engine.scenario_experiment (rule_name, scenario_type, holdout_salt,"
                " holdout_percent, global_holdout_salt, global_holdout_percent, started_at)"
                " VALUES ($1, $2, $3, $4, 'global', 0, $5) RETURNING id",
                rule,
                scenario,
                f"salt-{key}",
                percent,
                c.monday_of(weeks_ago),
            )
        for n, item in enumerate(items):
            mentor = uuid.uuid4()
            key = f"{item.scenario}:{mentor}:{n}"
            notification_id = None
            if item.outcome in ("sent", "holdout"):
                notification_id = await conn.fetchval(
                    "INSERT INTO scenario_engine.scenario_notification (mentor_id, scenario_type, rule_name,"
                    " subject, seq, dedup_key, as_of, held_out) VALUES ($1, $2, $3, 'subject', 1, $4, $5, $6)"
                    " RETURNING id",
                    mentor,
                    item.scenario,
                    item.rule,
                    key,
                    item.at,
                    item.outcome == "holdout",
                )
            if item.push is not None:
                await conn.execute(  # as enqueue_batch writes it: the decision's organisation and experiment
                    "INSERT INTO scenario_engine.push_notification (notification_id, mentor_id,"
                    " scenario_type, title, body, idempotency_key, status, created_at, organization_id,"
                    " experiment_id, decided_at)"
                    " VALUES ($1, $2, $3, 't', 'b', $4, $5, $6, $7, $8, $6)",
                    notification_id,
                    mentor,
                    item.scenario,
                    key,
                    item.push,
                    item.at,
                    item.org,
                    experiment_ids[item.experiment],
                )
            decision_id = await conn.fetchval(
                "INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name,"
                " dedup_key, outcome, reason, as_of, created_at, notification_id, organization_id,"
                " experiment_id)"
                " VALUES ($1, $2, $3, $4, $5, 'seeded', $6, $6, $7, $8, $9) RETURNING id",
                mentor,
                item.scenario,
                item.rule,
                key,
                item.outcome,
                item.at,
                notification_id,
                item.org,
                experiment_ids[item.experiment],
            )
            if item.result is not None:
                # A known result's window has closed (3 days, all before now); a pending one's
                # is open (14 days from this week): the mature cohort is exactly the known ones.
                window = dt.timedelta(days=14 if item.result == "pending" else 3)
                await conn.execute(
                    "INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id,"
                    " scenario_type, rule_name, experiment_id, arm, subject, decided_at, window_ends_at,"
                    " status)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, 'subject', $8::timestamptz,"
                    " $8::timestamptz + $10::interval, $9)",
                    decision_id,
                    mentor,
                    item.org,
                    item.scenario,
                    item.rule,
                    experiment_ids[item.experiment],
                    "treated" if item.outcome == "sent" else "holdout",
                    item.at,
                    item.result,
                    window,
                )


@dataclass(frozen=True)
class Cert:
    org: uuid.UUID
    expires_at: dt.datetime
    renewal_issued: dt.datetime | None = None  # a newer certification of the same type
    revoked: bool = False
    renewal_revoked: bool = False


def certifications(c: Clock) -> list[Cert]:
    k5 = c.week(5)
    return [
        Cert(ORG_A, k5, renewal_issued=k5 - dt.timedelta(days=10)),  # renewed in time
        Cert(ORG_A, k5, renewal_issued=k5 - dt.timedelta(hours=1)),  # renewed in time
        Cert(ORG_A, k5, renewal_issued=k5 + dt.timedelta(days=3)),  # renewed late: lapsed
        Cert(ORG_A, k5, renewal_issued=k5 - dt.timedelta(days=3), renewal_revoked=True),  # lapsed
        Cert(ORG_A, k5, revoked=True),  # withdrawn, not lapsed: not counted
        Cert(ORG_A, c.week(0)),  # lapsed this week
        Cert(ORG_A, c.now + dt.timedelta(days=9)),  # not expired yet: not counted
        Cert(ORG_A, c.week(12)),  # before the 12 weeks
    ]


async def insert_certifications(pool: asyncpg.Pool[Any], certs: Iterable[Cert]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for cert in certs:
            mentor = await conn.fetchval(
                "INSERT INTO public.peer_mentor (organization_id, status, timezone, joined_at)"
                " VALUES ($1, 'active', 'Europe/Berlin', now() - interval '3 years') RETURNING id",
                cert.org,
            )
            issued = cert.expires_at - dt.timedelta(days=365)
            revoked = issued + dt.timedelta(days=1) if cert.revoked else None
            await conn.execute(
                "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at, revoked_at)"
                " VALUES ($1, 'first_aid', $2, $3, $4)",
                mentor,
                issued,
                cert.expires_at,
                revoked,
            )
            if cert.renewal_issued is not None:
                renewal_revoked = (
                    cert.renewal_issued + dt.timedelta(hours=1) if cert.renewal_revoked else None
                )
                await conn.execute(
                    "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at, revoked_at)"
                    " VALUES ($1, 'first_aid', $2, $3, $4)",
                    mentor,
                    cert.renewal_issued,
                    cert.renewal_issued + dt.timedelta(days=730),
                    renewal_revoked,
                )


# --- what the page should say, computed from the items -------------------------------------------


def weeks_shown(c: Clock) -> list[dt.date]:
    return [week_start(c.monday_of(k)) for k in range(11, -1, -1)]


def in_window(c: Clock, at: dt.datetime) -> bool:
    return c.monday_of(11) <= at <= c.now


def expected_weeks(
    c: Clock, items: list[Item], org: uuid.UUID | None, scenario: str
) -> dict[dt.date, tuple[int, int, int, int]]:
    """week → (sent, delivered, achieved, final) for the messaged."""
    out = {w: [0, 0, 0, 0] for w in weeks_shown(c)}
    for i in items:
        if i.org == org and i.scenario == scenario and i.outcome == "sent" and in_window(c, i.at):
            row = out[week_start(i.at)]
            row[0] += 1
            row[1] += i.push == "sent"
            row[2] += i.result == "achieved"
            row[3] += i.result in ("achieved", "missed")
    return {w: (a, b, x, n) for w, (a, b, x, n) in out.items()}


def expected_lift(c: Clock, items: list[Item], org: uuid.UUID, experiment: str) -> tuple[int, int, int, int]:
    """(messaged achieved, messaged known, comparison achieved, comparison known) of one set-up."""
    chosen = [i for i in items if i.org == org and i.experiment == experiment and in_window(c, i.at)]

    def count(outcome: str, results: tuple[str, ...]) -> int:
        return sum(1 for i in chosen if i.outcome == outcome and i.result in results)

    final = ("achieved", "missed")
    return (
        count("sent", ("achieved",)),
        count("sent", final),
        count("holdout", ("achieved",)),
        count("holdout", final),
    )


def number_in(text: str) -> int:
    return int(text.replace("\u202f", "").split()[0])


# --- the browser, over the DevTools protocol -----------------------------------------------------


class DevTools:
    """A minimal DevTools-protocol client: one browser, one page (flattened session)."""

    def __init__(self, ws: ClientWebSocketResponse):
        self.ws = ws
        self.ids = iter(range(1, 1_000_000))
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    async def _read(self) -> dict[str, Any]:
        msg = await self.ws.receive()
        if msg.type != WSMsgType.TEXT:
            raise AssertionError(f"the browser closed the DevTools connection: {msg!r}")
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        await self.ws.send_str(json.dumps(message))
        with anyio.fail_after(STEP_TIMEOUT):
            while True:
                data = await self._read()
                if data.get("id") == ident:
                    if "error" in data:
                        raise AssertionError(f"{method} failed: {data['error']}")
                    result: dict[str, Any] = data.get("result", {})
                    return result
                self.events.append(data)

    async def wait_for(self, method: str) -> dict[str, Any]:
        with anyio.fail_after(STEP_TIMEOUT):
            while True:
                for n, event in enumerate(self.events):
                    if event.get("method") == method:
                        del self.events[: n + 1]
                        return event
                self.events.append(await self._read())

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def open(self, url: str, width: int, *, mobile: bool = False) -> Node:
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=mobile
        )
        self.events.clear()
        await self.call("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")
        return parse_dom(await self.evaluate("document.documentElement.outerHTML"))

    async def screenshot_of(self, selector: str, path: Path) -> None:
        """One element (its first match) of the page, at its laid-out size."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + window.scrollX, r.y + window.scrollY, r.width, r.height]; })()"
        )
        clip = {"x": box[0], "y": box[1], "width": box[2], "height": box[3], "scale": 1}
        shot = await self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def screenshot(self, path: Path) -> None:
        """The whole page, not only the viewport."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = await self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def browser(profile: Path) -> AsyncIterator[DevTools]:
    command = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        port_file = profile / "DevToolsActivePort"
        with anyio.fail_after(STEP_TIMEOUT):
            while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
                if proc.poll() is not None:
                    raise AssertionError(f"chromium exited with {proc.returncode}")
                await anyio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        async with (
            ClientSession() as http,
            http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as ws,
        ):
            tools = DevTools(ws)
            target = await tools.call("Target.createTarget", url="about:blank")
            attached = await tools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
            tools.session = attached["sessionId"]
            await tools.call("Page.enable")
            await tools.call("Network.enable")
            await tools.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Bearer {TOKEN}"})
            yield tools
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


# --- tests ---------------------------------------------------------------------------------------


def section(dom: Node, org: uuid.UUID | None) -> Node:
    value = str(org) if org else ""
    found = [s for s in dom.iter("section") if "org" in s.classes and s.attrs.get("data-org") == value]
    assert len(found) == 1, f"expected one section for organisation {org}, found {len(found)}"
    return found[0]


def article(org_section: Node, scenario: str) -> Node:
    found = [a for a in org_section.iter("article") if a.attrs.get("data-scenario") == scenario]
    assert len(found) == 1, scenario
    return found[0]


def figure(node: Node, name: str) -> Node:
    found = [d for d in node.iter("div") if d.attrs.get("data-figure") == name]
    assert len(found) == 1, name
    return found[0]


def check_weeks(node: Node, want: dict[dt.date, tuple[int, int, int, int]]) -> None:
    (table,) = [t for t in node.iter("table") if t.attrs.get("data-table") == "weeks"]
    assert [th.text for th in table.iter("thead")[0].iter("th")][:3] == ["Week", "Sent", "Delivered"]
    rows = table.iter("tbody")[0].iter("tr")
    assert [dt.date.fromisoformat(tr.attrs["data-week"]) for tr in rows] == list(want)
    for tr in rows:
        week = dt.date.fromisoformat(tr.attrs["data-week"])
        sent_, delivered, achieved, final = want[week]
        cells = {td.attrs["data-field"]: td for td in tr.iter("td")}
        assert tr.iter("th")[0].text.startswith(week_label(week)), tr.iter("th")[0].text
        assert (number_in(cells["sent"].text), number_in(cells["delivered"].text)) == (sent_, delivered), week
        if final:
            assert cells["outcome"].text == f"{round(100 * achieved / final)} % {achieved} of {final}", week
        else:
            assert cells["outcome"].text == "—", week
    totals = {td.attrs["data-field"]: td.text for td in table.iter("tfoot")[0].iter("td")}
    assert number_in(totals["sent"]) == sum(v[0] for v in want.values())
    assert number_in(totals["delivered"]) == sum(v[1] for v in want.values())


# What Chromium laid out: where the forest plot stands, and the size SVG text is shown at.
FOREST_LAYOUT = """(() => {
  const table = document.getElementById('summary-table').getBoundingClientRect();
  const plot = document.getElementById('forest-plot').getBoundingClientRect();
  return {besideTable: plot.left >= table.right - 1, plotWidth: plot.width, tableRight: table.right};
})()"""
SVG_TEXT_SIZES = """Array.from(document.querySelectorAll('svg.forest text, svg.weekly-chart text')).map(t => {
  const svg = t.ownerSVGElement;
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return parseFloat(getComputedStyle(t).fontSize) * scale;
})"""


def check_weekly_chart(svg: Node, want: dict[dt.date, tuple[int, int, int, int]]) -> None:
    """Axes with ticks and unit, week labels, a legend, a bar per week with a message; the weeks
    with results still being measured (here: only the current one) hatched."""
    texts = list(svg.iter("text"))
    classes = [t.classes for t in texts]
    ticks = [t.text for t, cls in zip(texts, classes, strict=True) if "tick" in cls and "x-tick" not in cls]
    assert ticks[0] == "0" and len(ticks) >= 3, ticks
    assert (
        int(ticks[-1].replace("\u202f", ""))
        == int(svg.attrs["data-axis-max"])
        >= max(v[0] for v in want.values())
    )
    week_ticks = [t.text for t, cls in zip(texts, classes, strict=True) if "x-tick" in cls]
    last = list(want)[-1]
    assert week_ticks[0] == f"{last.day} {last:%b}" and len(week_ticks) == 4, week_ticks
    by_text = {t.text for t in texts}
    assert {"Messages sent per week", "Week starting on Monday (UTC)"} <= by_text
    assert {"Messages sent", "Sent, results still being measured"} <= by_text
    bars = [r for r in svg.iter("rect") if "bar" in r.classes]
    assert [int(r.attrs["data-count"]) for r in bars] == [v[0] for v in want.values() if v[0]]
    assert [r.attrs["data-mature"] for r in bars] == ["yes"] * (len(bars) - 1) + ["no"]
    assert bars[-1].attrs["fill"].startswith("url(#") and svg.iter("pattern")


def check_summary(dom: Node, c: Clock, items: list[Item]) -> None:
    table = dom.by_id("summary-table")
    groups = list(table.iter("tbody"))
    assert [tb.attrs["data-org"] for tb in groups] == [str(ORG_A), str(ORG_B), ""]
    got = {}
    for tb in groups:
        for tr in tb.iter("tr"):
            if "data-row" in tr.attrs:
                cells = {td.attrs["data-field"]: td.text for td in tr.iter("td")}
                got[(tb.attrs["data-org"], tr.attrs["data-scenario"])] = (
                    tr.attrs["data-row"],
                    tr.attrs["data-measured"],
                    cells,
                )
    assert set(got) == {
        (str(ORG_A), "inactivity"),
        (str(ORG_A), "certification_expiry"),
        (str(ORG_B), "inactivity"),
        (str(ORG_B), "milestone"),
        ("", "inactivity"),
    }
    # Organisation A's check-ins: sent over the 12 weeks, the mature rate, the difference and range.
    key, measured, cells = got[(str(ORG_A), "inactivity")]
    assert measured == "yes" and number_in(cells["sent"]) == 56
    assert cells["outcome"].startswith("52 %") and "26 of 50 came back" in cells["outcome"]
    assert "3 still being measured" in cells["outcome"]
    x1, n1, x2, n2 = expected_lift(c, items, ORG_A, "new")
    interval = newcombe_interval(x1, n1, x2, n2)
    assert cells["difference"] == (
        f"+35.0 points {points(100 * interval.low)} to {points(100 * interval.high)}"
    )
    assert got[(str(ORG_A), "certification_expiry")][2]["difference"] == "not measured"
    for where in ((str(ORG_B), "inactivity"), (str(ORG_B), "milestone"), ("", "inactivity")):
        assert got[where][1] == "no" and got[where][2]["difference"] == "not enough data yet", where

    # The forest plot: the same rows in the same order; a point and its range per measured row,
    # none for the others, which say why; one zero line; an axis with ticks and its title.
    plot = dom.by_id("forest-plot")
    rows = [g for g in plot.iter("g") if "row" in g.classes]
    table_keys = [tr.attrs["data-row"] for tr in table.iter("tr") if "data-row" in tr.attrs]
    assert [g.attrs["data-row"] for g in rows] == table_keys
    for g in rows:
        circles, intervals = g.iter("circle"), [ln for ln in g.iter("line") if "interval" in ln.classes]
        if g.attrs["data-row"] == key:
            assert g.attrs["data-measured"] == "yes" and len(circles) == 1 and len(intervals) == 1
            assert "good" in g.classes  # the whole range is above zero
            cx = float(circles[0].attrs["cx"])
            x1_, x2_ = sorted(float(intervals[0].attrs[k]) for k in ("x1", "x2"))
            assert x1_ < cx < x2_
            zero_x = float(next(ln for ln in plot.iter("line") if "zero" in ln.classes).attrs["x1"])
            assert zero_x < x1_  # right of the zero line: the message helps
        else:
            assert g.attrs["data-measured"] == "no" and not circles and not intervals
            assert g.text.endswith(("not enough data yet", "not measured")), g.text
    assert len([ln for ln in plot.iter("line") if "zero" in ln.classes]) == 1
    ticks = [t.text for t in plot.iter("text") if t.classes == {"tick"}]
    assert "0" in ticks and len(ticks) >= 3
    assert "Difference, percentage points (95 % range)" in {t.text for t in plot.iter("text")}
    groups_shown = [t.text for t in plot.iter("text") if "group" in t.classes]
    assert len(groups_shown) == 3 and groups_shown[-1] == "Organisation not recorded"
    assert all(str(ORG_A)[:8] in g for g in groups_shown[:1])


@pytest.mark.acceptance
async def test_programme_page_in_headless_chromium(pool: asyncpg.Pool[Any], tmp_path: Path) -> None:
    chromium_binary()  # fail at once without a browser
    now = dt.datetime.now(dt.UTC)
    c = Clock(now)
    items = population(c)
    await insert(pool, c, items)
    certs = certifications(c)
    await insert_certifications(pool, certs)
    ARTIFACTS.mkdir(exist_ok=True)

    async with status_server(pool) as base:
        # Behind the status token like /, and strict about its one parameter.
        assert (await get(f"{base}/programme", token=None))[0] == 401
        for bad in ("not-a-uuid", f"{ORG_A}&organization={ORG_B}", ""):
            code, kind, text = await get(f"{base}/programme?organization={bad}")
            assert (code, kind) == (400, "text/plain"), bad
            assert "organization" in text and "Traceback" not in text
        # Script-free: the charts are inline SVG drawn by the server; nothing is loaded from elsewhere.
        code, _, whole = await get(f"{base}/programme")
        assert code == 200 and "<svg" in whole and 'id="forest-plot"' in whole
        assert "<script" not in whole.lower() and not re.search(r"\son[a-z]+\s*=", whole)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", whole)
        code, _, only_b = await get(f"{base}/programme?organization={ORG_B}")
        assert code == 200
        dom_b = parse_dom(only_b)
        assert [s.attrs["data-org"] for s in dom_b.iter("section") if "org" in s.classes] == [str(ORG_B)]
        assert any(a.attrs.get("href") == "/programme" for a in dom_b.iter("a"))

        async with browser(tmp_path / "profile") as tools:
            dom = await tools.open(f"{base}/programme", 1280)
            await tools.screenshot(ARTIFACTS / "programme-page-1280.png")
            await tools.screenshot_of("#summary", ARTIFACTS / "programme-summary-1280.png")
            await tools.screenshot_of("article.scenario", ARTIFACTS / "programme-weekly-1280.png")
            wide_overflow = await tools.evaluate("document.documentElement.scrollWidth - window.innerWidth")

            text = dom.iter("main")[0].text
            assert "Monday at 00:00 UTC" in dom.by_id("window").text
            assert f"from Monday {c.monday_of(11).day} {c.monday_of(11):%b %Y}" in dom.by_id("window").text
            for word in JARGON:
                assert word not in text.lower(), f"the page says {word!r} to programme staff"
            orgs = [s.attrs["data-org"] for s in dom.iter("section") if "org" in s.classes]
            assert orgs == [str(ORG_A), str(ORG_B), ""]

            # Organisation A, check-ins with quiet mentors: the numbers, week by week.
            a = section(dom, ORG_A)
            quiet = article(a, "inactivity")
            assert quiet.iter("h3")[0].text == "Check-ins with quiet mentors"
            want = expected_weeks(c, items, ORG_A, "inactivity")
            check_weeks(quiet, want)
            assert sum(v[0] for v in want.values()) == 56  # 43 now, 10 before, the 3 boundary instants
            assert number_in(figure(quiet, "sent").iter("span")[0].text) == 56
            weeks = weeks_shown(c)
            assert want[weeks[-3]][0] == 1 and want[weeks[-4]][0] == 21  # Monday 00:00 vs the second before
            assert want[weeks[0]][0] == 1  # the first instant of the window counts, the one before does not
            outcome = figure(quiet, "outcome")
            assert outcome.iter("dt")[0].text == "Mentors who came back"
            achieved = sum(v[2] for v in want.values())
            final = sum(v[3] for v in want.values())
            assert (achieved, final) == (26, 50)  # both set-ups: 24 of 40 now, 2 of 10 before
            assert (
                f"{round(100 * achieved / final)} %" in outcome.text
                and "still being measured: 3 (0 already achieved)" in outcome.text
            )

            # The difference: the current set-up only, as a number with its interval.
            x1, n1, x2, n2 = expected_lift(c, items, ORG_A, "new")
            assert (x1, n1, x2, n2) == (24, 40, 8, 32)
            interval = newcombe_interval(x1, n1, x2, n2)
            lift = figure(quiet, "lift")
            assert (
                lift.iter("span")[0].text == f"{points(100 * (x1 / n1 - x2 / n2))} points" == "+35.0 points"
            )
            assert f"{points(100 * interval.low)} to {points(100 * interval.high)} points" in lift.text
            assert "came back more often" in lift.text and "good" in lift.classes

            # Organisation A, certification reminders: nobody kept back; expiries renewed or lapsed.
            reminders = article(a, "certification_expiry")
            assert reminders.iter("h3")[0].text == "Certification reminders"
            check_weeks(reminders, expected_weeks(c, items, ORG_A, "certification_expiry"))
            assert figure(reminders, "outcome").iter("dt")[0].text == "Mentors who renewed in time"
            assert figure(reminders, "lift").iter("span")[0].text == "not measured"
            assert "No comparison group" in figure(reminders, "lift").text
            (cert_table,) = [
                t for t in reminders.iter("table") if t.attrs.get("data-table") == "certifications"
            ]
            got = {
                tr.attrs["data-week"]: tuple(number_in(td.text) for td in tr.iter("td"))
                for tr in cert_table.iter("tbody")[0].iter("tr")
            }
            want_certs = {w.isoformat(): (0, 0) for w in weeks}
            want_certs[week_start(c.week(5)).isoformat()] = (2, 2)
            want_certs[weeks[-1].isoformat()] = (0, 1)
            assert got == want_certs
            assert number_in(figure(reminders, "renewed").iter("span")[0].text) == 2
            assert number_in(figure(reminders, "lapsed").iter("span")[0].text) == 3

            # Organisation B: too few results for a number; milestone celebrations in plain words.
            b = section(dom, ORG_B)
            check_weeks(article(b, "inactivity"), expected_weeks(c, items, ORG_B, "inactivity"))
            b_lift = figure(article(b, "inactivity"), "lift")
            assert b_lift.iter("span")[0].text == "not enough data yet"
            assert "points" not in b_lift.iter("span")[0].text
            assert "at least 30 of each" in b_lift.text
            milestone = article(b, "milestone")
            assert milestone.iter("h3")[0].text == "Milestone celebrations"
            assert figure(milestone, "outcome").iter("dt")[0].text == "Mentors who kept going"
            assert "certification_expiry" not in {x.attrs.get("data-scenario") for x in b.iter("article")}
            check_weeks(
                article(section(dom, None), "inactivity"), expected_weeks(c, items, None, "inactivity")
            )

            # Charts have a text alternative that carries the same numbers.
            svg = quiet.iter("svg")[0]
            assert svg.attrs["role"] == "img" and "weekly-chart" in svg.classes
            title = svg.iter("title")[0].text
            assert title.startswith("Messages sent per week") and f"{week_label(weeks[-4])}: 21" in title
            check_weekly_chart(svg, want)

            # The summary at the top: a row per organisation and kind of message, with a point
            # and its range in the forest plot where a difference is measured.
            check_summary(dom, c, items)
            layout = await tools.evaluate(FOREST_LAYOUT)
            assert layout["besideTable"], f"at 1280 px the forest plot stands beside the table: {layout}"

            # A phone: 400 px wide, nothing wider than the screen.
            await tools.open(f"{base}/programme", 400, mobile=True)
            assert await tools.evaluate("window.innerWidth") == 400
            overflow = await tools.evaluate(
                "[document.documentElement.scrollWidth, document.body.scrollWidth, Array.from("
                "document.querySelectorAll('main *')).filter(e => e.getBoundingClientRect().right > "
                "window.innerWidth + 0.5).map(e => e.tagName + '.' + e.className).slice(0, 5)]"
            )
            assert overflow == [400, 400, []], f"horizontal overflow at 400 px: {overflow}"
            font = await tools.evaluate("parseFloat(getComputedStyle(document.querySelector('td')).fontSize)")
            assert font >= 14, "table text too small to read on a phone"
            layout = await tools.evaluate(FOREST_LAYOUT)
            assert not layout["besideTable"], f"on a phone the forest plot comes under the table: {layout}"
            # SVG text shown at a readable size: its font size times the SVG's scale on screen.
            sizes = await tools.evaluate(SVG_TEXT_SIZES)
            assert sizes and min(sizes) >= 10, f"chart text too small on a phone: {sorted(sizes)[:5]}"
            await tools.screenshot(ARTIFACTS / "programme-page-400.png")
            await tools.screenshot_of("#summary", ARTIFACTS / "programme-summary-400.png")
            await tools.screenshot_of("article.scenario", ARTIFACTS / "programme-weekly-400.png")

            # Print: links for the screen go, every table stays, the PDF renders.
            await tools.call("Emulation.setEmulatedMedia", media="print")
            hidden = await tools.evaluate(
                "Array.from(document.querySelectorAll('nav, .only-this'))"
                ".map(e => getComputedStyle(e).display)"
            )
            assert hidden and set(hidden) == {"none"}
            background = await tools.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == "rgb(255, 255, 255)"
            await tools.open(f"{base}/programme", 800)
            await tools.screenshot(ARTIFACTS / "programme-page-print.png")
            await tools.screenshot_of("#summary", ARTIFACTS / "programme-summary-print.png")
            pdf = await tools.call("Page.printToPDF", printBackground=False, preferCSSPageSize=True)
            data = base64.b64decode(pdf["data"])
            (ARTIFACTS / "programme-page.pdf").write_bytes(data)
            assert data.startswith(b"%PDF") and data.count(b"/Type /Page") >= 2

    assert wide_overflow == 0
    for name, width in (("programme-page-1280.png", 1280), ("programme-page-400.png", 400)):
        shot = ARTIFACTS / name
        assert shot.stat().st_size > 10_000
        assert png_size(shot)[0] == width
