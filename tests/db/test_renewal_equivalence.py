"""One definition of "renewed in time" (certification_renewed_in_time, docs/OUTCOMES.md), three
readers: the certification scenario's outcome resolution, `report` and the programme page. Over
random certification histories — several issued at one instant, renewals issued at the expiry
instant or after as_of, revoked ones, expiries at the edges of the ranges — all three give the
same counts, and they match a plain reading of the definition in Python.

Each history: mentors of two organisations with certifications of two types, every instant
drawn from one short list (so instants coincide often). Every unrevoked certification expiring
in the checked range gets a pending outcome row, as if a reminder had been sent; resolve.py
resolves them as of AS_OF.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenario_engine.cli.output.report import report_json
from scenario_engine.db.connect import mark_engine_write
from scenario_engine.outcomes.model import Arm
from scenario_engine.outcomes.report import build_report
from scenario_engine.outcomes.resolve import resolve_outcomes
from scenario_engine.web.programme_view import load_programme_health, window_start, window_weeks

AS_OF = dt.datetime(2026, 6, 10, 12, tzinfo=dt.UTC)  # a Wednesday
SINCE = window_start(window_weeks(AS_OF))  # the page's first instant: Monday 12 weeks back
LATER = AS_OF + dt.timedelta(days=30)  # the end of the second report's range
US = dt.timedelta(microseconds=1)
DAY = dt.timedelta(days=1)
INSTANTS = (
    SINCE - 400 * DAY,
    SINCE - US,
    SINCE,
    SINCE + 3 * DAY,
    AS_OF - 10 * DAY,
    AS_OF - US,
    AS_OF,
    AS_OF + US,
    AS_OF + 2 * DAY,
    LATER - US,
    LATER,
)
ORGS = (uuid.UUID(int=0xA), uuid.UUID(int=0xB))


@dataclass(frozen=True)
class Cert:
    type: str
    issued: int  # index into INSTANTS
    expires: int  # a later index
    revoked: bool


@dataclass(frozen=True)
class Mentor:
    org: int
    certs: tuple[Cert, ...]


@st.composite
def certs(draw: st.DrawFn) -> Cert:
    issued, expires = sorted(draw(st.sets(st.integers(0, len(INSTANTS) - 1), min_size=2, max_size=2)))
    return Cert(draw(st.sampled_from(("first_aid", "safeguarding"))), issued, expires, draw(st.booleans()))


histories = st.lists(
    st.builds(Mentor, st.integers(0, 1), st.lists(certs(), min_size=1, max_size=4).map(tuple)),
    min_size=1,
    max_size=5,
)


@dataclass(frozen=True)
class Row:
    """A stored certification."""

    id: int
    mentor: int
    org: uuid.UUID
    type: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    revoked: bool


def renewed_in_time(c: Row, rows: list[Row]) -> bool:
    """The definition, read plainly (docs/OUTCOMES.md)."""
    return any(
        n.mentor == c.mentor
        and n.type == c.type
        and not n.revoked
        and (n.issued_at, n.id) > (c.issued_at, c.id)
        and n.issued_at < c.expires_at
        and n.issued_at <= AS_OF
        for n in rows
    )


async def store(conn: asyncpg.Connection[Any], history: list[Mentor]) -> list[Row]:
    await conn.execute(
        "TRUNCATE public.certification, public.peer_mentor, scenario_engine.scenario_decision,"
        " scenario_engine.scenario_experiment CASCADE"
    )
    rows: list[Row] = []
    for k, mentor in enumerate(history):
        mentor_id = await conn.fetchval(
            "INSERT INTO public.peer_mentor (organization_id, joined_at) VALUES ($1, $2) RETURNING id",
            ORGS[mentor.org],
            SINCE - 800 * DAY,
        )
        for c in mentor.certs:
            issued, expires = INSTANTS[c.issued], INSTANTS[c.expires]
            cert_id = await conn.fetchval(
                "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at, revoked_at)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                mentor_id,
                c.type,
                issued,
                expires,
                issued if c.revoked else None,
            )
            rows.append(Row(cert_id, k, ORGS[mentor.org], c.type, issued, expires, c.revoked))
    experiment = await conn.fetchval(
        "INSERT INTO scenario_engine.scenario_experiment (rule_name, scenario_type, holdout_salt,"
        " holdout_percent, global_holdout_salt, global_holdout_percent, started_at)"
        " VALUES ('cert_30d', 'certification_expiry', 's', 0, 'g', 0, $1) RETURNING id",
        SINCE - 800 * DAY,
    )
    async with conn.transaction():
        await mark_engine_write(conn)
        for r in rows:
            if r.revoked or not SINCE <= r.expires_at < LATER:
                continue
            decided = r.expires_at - DAY  # a reminder the day before
            key = f"certification_expiry:{r.id}"
            decision = await conn.fetchval(
                "INSERT INTO scenario_engine.scenario_decision (mentor_id, scenario_type, rule_name,"
                " dedup_key, outcome, reason, as_of, organization_id, experiment_id)"
                " SELECT mentor_id, 'certification_expiry', 'cert_30d', $2, 'sent', 'due', $3, $4, $5"
                " FROM public.certification WHERE id = $1 RETURNING id",
                r.id,
                key,
                decided,
                r.org,
                experiment,
            )
            await conn.execute(
                "INSERT INTO scenario_engine.scenario_outcome (decision_id, mentor_id, organization_id,"
                " scenario_type, rule_name, experiment_id, arm, subject, decided_at, window_ends_at)"
                " SELECT $1, mentor_id, $2, 'certification_expiry', 'cert_30d', $3, 'treated', $4,"
                " $5, expires_at FROM public.certification WHERE id = $6",
                decision,
                r.org,
                experiment,
                str(r.id),
                decided,
                r.id,
            )
    return rows


Counts = tuple[int, int, int, int]  # renewed in time, lapsed, still open, of those already renewed


def from_definition(rows: list[Row], org: uuid.UUID, until: dt.datetime) -> Counts:
    judged = [r for r in rows if r.org == org and not r.revoked and SINCE <= r.expires_at < until]
    mature = [r for r in judged if r.expires_at <= AS_OF]
    still_open = [r for r in judged if r.expires_at > AS_OF]
    return (
        sum(renewed_in_time(r, rows) for r in mature),
        sum(not renewed_in_time(r, rows) for r in mature),
        len(still_open),
        sum(renewed_in_time(r, rows) for r in still_open),
    )


async def from_outcomes(conn: asyncpg.Connection[Any], org: uuid.UUID, until: dt.datetime) -> Counts:
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE window_ends_at <= $3 AND status = 'achieved') AS renewed,"
        " count(*) FILTER (WHERE window_ends_at <= $3 AND status = 'missed') AS lapsed,"
        " count(*) FILTER (WHERE window_ends_at > $3) AS open,"
        " count(*) FILTER (WHERE window_ends_at > $3 AND status = 'achieved') AS open_renewed,"
        " count(*) FILTER (WHERE window_ends_at <= $3 AND status = 'pending') AS unresolved"
        " FROM scenario_engine.scenario_outcome"
        " WHERE organization_id = $1 AND window_ends_at >= $4 AND window_ends_at < $2",
        org,
        until,
        AS_OF,
        SINCE,
    )
    assert row is not None and row["unresolved"] == 0  # resolved as of AS_OF: every closed one is final
    return (row["renewed"], row["lapsed"], row["open"], row["open_renewed"])


def from_report(doc: dict[str, Any], org: uuid.UUID) -> Counts:
    found = [c["period"] for c in doc["certifications"] if c["organization_id"] == str(org)]
    if not found:
        return (0, 0, 0, 0)
    p = found[0]
    assert p["expiring"] == p["renewed_in_time"] + p["lapsed"] + p["still_open"]
    return (p["renewed_in_time"], p["lapsed"], p["still_open"], p["still_open_renewed"])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories)
async def test_outcome_rows_report_and_page_agree_on_renewals(
    conn: asyncpg.Connection[Any], history: list[Mentor]
) -> None:
    rows = await store(conn, history)
    await resolve_outcomes(conn, AS_OF)
    # [SINCE, AS_OF]: what the page covers (its window includes AS_OF), by the report too.
    up_to_now = report_json(await build_report(conn, since=SINCE, until=AS_OF + US, as_of=AS_OF))
    # [SINCE, LATER): the report alone, with certifications still open at AS_OF.
    ahead = report_json(await build_report(conn, since=SINCE, until=LATER, as_of=AS_OF))
    page = await load_programme_health(conn, AS_OF)
    for org in ORGS:
        want_now = from_definition(rows, org, AS_OF + US)
        assert await from_outcomes(conn, org, AS_OF + US) == want_now
        assert from_report(up_to_now, org) == want_now
        shown = [o for o in page.organisations if o.organization_id == org]
        reminders = [s for o in shown for s in o.scenarios if s.scenario_type == "certification_expiry"]
        page_counts = (sum(s.renewed for s in reminders), sum(s.lapsed for s in reminders), 0, 0)
        assert page_counts == want_now
        want_ahead = from_definition(rows, org, LATER)
        assert await from_outcomes(conn, org, LATER) == want_ahead
        assert from_report(ahead, org) == want_ahead
        # The reminders' own outcomes (by the decision's instant): the report's row and the
        # page's figure are one count.
        page_arm = sum((s.outcome for s in reminders), Arm())
        report_arm = Arm()
        for r in up_to_now["rows"]:
            if r["organization_id"] == str(org):
                t = r["treated"]
                report_arm += Arm(
                    t["achieved"], t["missed"], t["still_being_measured"], t["already_achieved"]
                )
        assert report_arm == page_arm
