"""certification_renewals (queries/outcomes.sql) judges with the one definition of "renewed in
time" only the certifications that a later unrevoked certification of the same mentor could
renew, read from the engine's covering indexes (docs/BENCHMARKS.md, report). Two guards:

* its rows are those of the statement it replaced, which judged every certification of the
  period, over a seeded population built to reach the pre-filter's edges: later certifications
  of another type (pass the pre-filter, fail the definition), several issued at one instant
  (the id order), renewals issued at the expiry instant or after as_of, revoked ones on either
  side, expiries at the edges of the period, mentors of several organisations, and either
  organisation filter;
* the part that reads every certification of the period (`judged`) stays answerable from
  certification_mentor_expiring_v2_idx and peer_mentor_organization_idx alone (index-only):
  a column added there that the indexes lack would bring back a heap fetch per certification.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import asyncpg

from scenario_engine.db.queries import bind, fetch

SINCE = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
SPLIT = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
UNTIL = dt.datetime(2026, 4, 27, tzinfo=dt.UTC)
AS_OF = dt.datetime(2026, 4, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
US = dt.timedelta(microseconds=1)
ORGS = [uuid.UUID(int=0xA0 + k) for k in range(3)]

# The statement before the pre-filter: every certification of the period judged by the
# definition (a hash join with all certifications), the organisation by a join with all mentors.
PREVIOUS = """
WITH expiring AS (
    SELECT c.id, c.mentor_id, c.type, c.issued_at, c.expires_at, $4::timestamptz AS as_of, m.organization_id
    FROM public.certification c
    JOIN public.peer_mentor m ON m.id = c.mentor_id
    WHERE c.revoked_at IS NULL AND c.expires_at >= $1::timestamptz AND c.expires_at < $2::timestamptz
      AND ($5::uuid IS NULL OR m.organization_id = $5::uuid)
), renewed AS (
    SELECT DISTINCT e.id
    FROM expiring e
    JOIN public.certification n ON n.mentor_id = e.mentor_id AND n.type = e.type
    WHERE n.revoked_at IS NULL
      AND (n.issued_at, n.id) > (e.issued_at, e.id)
      AND n.issued_at < e.expires_at
      AND n.issued_at <= e.as_of
)
SELECT e.organization_id,
       date_trunc('week', e.expires_at AT TIME ZONE 'UTC')::date AS week,
       e.expires_at >= $3::timestamptz AS after_split,
       count(*)::bigint AS expiring,
       count(*) FILTER (WHERE e.expires_at <= $4::timestamptz AND r.id IS NOT NULL)::bigint,
       count(*) FILTER (WHERE e.expires_at <= $4::timestamptz AND r.id IS NULL)::bigint,
       count(*) FILTER (WHERE e.expires_at > $4::timestamptz)::bigint,
       count(*) FILTER (WHERE e.expires_at > $4::timestamptz AND r.id IS NOT NULL)::bigint
FROM expiring e
LEFT JOIN renewed r ON r.id = e.id
GROUP BY e.organization_id, week, after_split
"""


def _instants(rng: random.Random) -> list[dt.datetime]:
    """Instants that coincide often and sit on every edge the statement tests."""
    edges = [SINCE, SPLIT, UNTIL, AS_OF]
    near = [t + d for t in edges for d in (-DAY, -US, dt.timedelta(0), US, DAY)]
    spread = [SINCE - 400 * DAY + rng.randrange(600) * DAY for _ in range(12)]
    return sorted(set(near + spread))


async def _populate(conn: asyncpg.Connection[Any], seed: int, mentors: int) -> int:
    rng = random.Random(seed)
    instants = _instants(rng)
    mentor_rows = [(uuid.UUID(int=rng.getrandbits(128)), rng.choice(ORGS)) for _ in range(mentors)]
    await conn.executemany(
        "INSERT INTO public.peer_mentor (id, organization_id, joined_at) VALUES ($1, $2, $3)",
        [(m, org, SINCE - 900 * DAY) for m, org in mentor_rows],
    )
    certs = []
    for mentor_id, _ in mentor_rows:
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            issued, expires = sorted(rng.sample(instants, 2))
            kind = rng.choice(("first_aid", "first_aid", "safeguarding"))
            revoked = issued if rng.random() < 0.15 else None
            certs.append((mentor_id, kind, issued, expires, revoked))
    # several rows per instant, in an order unrelated to the instants: ids break the ties
    rng.shuffle(certs)
    await conn.executemany(
        "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at, revoked_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        certs,
    )
    await conn.execute("ANALYZE public.certification, public.peer_mentor")
    return len(certs)


def _rows(records: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in records)


async def test_the_rows_are_those_of_judging_every_certification(conn: asyncpg.Connection[Any]) -> None:
    for seed in range(3):
        await conn.execute("TRUNCATE public.certification, public.peer_mentor CASCADE")
        assert await _populate(conn, seed, mentors=400) > 400
        cases = [
            (SINCE, UNTIL, SPLIT, AS_OF),  # `report`: this period against the one before
            (SPLIT, UNTIL, SPLIT, AS_OF),  # the programme page: split at the start
            (SINCE, UNTIL, SPLIT, UNTIL + DAY),  # everything mature
            (SINCE, UNTIL, SPLIT, SINCE - DAY),  # nothing mature, no renewal known yet
        ]
        renewed = 0
        for since, until, split, as_of in cases:
            for org in (None, ORGS[1]):
                params: dict[str, Any] = {"since": since, "until": until, "split": split, "as_of": as_of}
                params["organization_id"] = org
                got = _rows(await fetch(conn, "certification_renewals", **params))
                want = _rows(await conn.fetch(PREVIOUS, since, until, split, as_of, org))
                assert got == want, (seed, params)
                renewed += sum(r[4] + r[7] for r in want)
        assert renewed > 0  # the data reach the renewal branch, not only lapses


async def test_the_period_is_read_from_the_covering_indexes_only(conn: asyncpg.Connection[Any]) -> None:
    await _populate(conn, seed=7, mentors=300)
    await conn.execute("VACUUM (ANALYZE) public.certification, public.peer_mentor")  # all-visible
    sql, args = bind(
        "certification_renewals",
        {"since": SINCE, "until": UNTIL, "split": SPLIT, "as_of": AS_OF, "organization_id": None},
    )
    async with conn.transaction():
        # at this size the planner would rather read the tables; forbid that, so the plan shows
        # whether the indexes hold every column `judged` reads
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN (COSTS OFF) " + sql, *args))
    judged = plan.split("CTE judged", 1)[1].split("InitPlan", 1)[0]
    assert "Index Only Scan using certification_mentor_expiring_v2_idx on certification" in judged, plan
    assert "Index Only Scan using peer_mentor_organization_idx on peer_mentor" in judged, plan
    # the look-up per certification may take either (mentor, …) index: it finds few entries
    scans = [line for line in judged.splitlines() if " on certification" in line or " on peer_mentor" in line]
    assert len(scans) == 3, plan
