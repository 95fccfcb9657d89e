"""policy_inputs (queries/evaluate.sql) under the plan asyncpg ends up running: a prepared
statement re-executed, which Postgres plans generically after five runs, while the sweep writes
pushes faster than autoanalyze describes them (docs/BENCHMARKS.md, Issue 18).

Every push of a sweep has the same decided_at (its as_of), so the "last 24 hours" range of
push_notification_decided_idx holds every push written so far. The sent_24h sub-query used to
be planned as a BitmapAnd of that range with the mentor's index: one scan of the whole range
per mentor, 1.2 ms each at 1M, 13–56 s of a first sweep. Two guards:

* the generic plan, with push_notification's statistics taken when it was nearly empty (as at
  the start of a first sweep), reads push_notification through the mentor's index only;
* the rows (sent_24h above all: digest pushes inside and outside the 24 hours, several per
  window, on either edge) are those of the statement before the rewrite.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import asyncpg

from scenario_engine.db.queries import bind

AS_OF = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
US = dt.timedelta(microseconds=1)
ORG = uuid.UUID(int=0xA1)

# policy_inputs before the rewrite (sent_24h's push sub-query filtered the range in the index).
PREVIOUS = """
SELECT p.id AS mentor_id, p.status, p.timezone, p.display_name, p.organization_id,
       to_jsonb(p) ->> 'locale' AS locale,
       (SELECT np.scenario_type FROM public.notification_preference np
        WHERE np.mentor_id = p.id AND np.opted_out AND np.scenario_type IN ('all', $2::text)
        ORDER BY np.scenario_type = 'all' DESC LIMIT 1) AS opted_out_scope,
       cd.last_triggered_at, cd.last_rule_name,
       (SELECT count(*) FROM scenario_engine.scenario_notification sn
        WHERE sn.mentor_id = p.id
          AND sn.as_of > $3::timestamptz - interval '24 hours' AND sn.as_of <= $3::timestamptz)::int
       - (SELECT count(*) - count(DISTINCT pn.digest_window)
          FROM scenario_engine.push_notification pn
          WHERE pn.mentor_id = p.id AND pn.digest_window IS NOT NULL
            AND pn.decided_at > $3::timestamptz - interval '24 hours'
            AND pn.decided_at <= $3::timestamptz)::int
       AS sent_24h
FROM public.peer_mentor p
LEFT JOIN scenario_engine.scenario_cooldown cd ON cd.mentor_id = p.id AND cd.scenario_type = $2::text
WHERE p.id = ANY($1::uuid[])
"""

PUSH = """
INSERT INTO scenario_engine.push_notification (mentor_id, scenario_type, title, body, idempotency_key,
                                               decided_at, digest, digest_window)
SELECT m, 'inactivity', 't', 'b', gen_random_uuid()::text, $2::timestamptz,
       $3::timestamptz IS NOT NULL, $3::timestamptz
FROM unnest($1::uuid[]) AS m
"""


async def _mentors(conn: asyncpg.Connection[Any], n: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    await conn.execute(
        "INSERT INTO public.peer_mentor (id, organization_id, joined_at)"
        " SELECT unnest($1::uuid[]), $2::uuid, $3::timestamptz",
        ids,
        ORG,
        AS_OF - 400 * 24 * HOUR,
    )
    return ids


async def test_the_generic_plan_reads_pushes_by_mentor_only(conn: asyncpg.Connection[Any]) -> None:
    mentors = await _mentors(conn, 3000)
    # the start of a first sweep: push_notification analysed empty (no column statistics, so
    # both "mentor_id = p.id" and the range get the planner's default selectivity)
    await conn.execute("ANALYZE scenario_engine.push_notification, public.peer_mentor")
    # the sweep so far: one push per mentor, all at its as_of, not yet analysed
    await conn.execute(PUSH, mentors, AS_OF, None)
    sql, args = bind(
        "policy_inputs", {"mentors": mentors[:500], "scenario_type": "inactivity", "as_of": AS_OF}
    )
    # EXPLAIN of a bound statement plans it for its values; EXECUTE of a prepared one shows
    # the plan the server caches (here forced generic, as after five executions).
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE policy_inputs_generic AS {sql}")
        mentor_list = "{" + ",".join(str(m) for m in args[0]) + "}"
        plan = "\n".join(
            r[0]
            for r in await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF)"
                f" EXECUTE policy_inputs_generic('{mentor_list}', '{args[1]}', '{args[2].isoformat()}')"
            )
        )
        await conn.execute("DEALLOCATE policy_inputs_generic")
    assert "$1" in plan, plan  # generic indeed: the parameters are not folded in
    assert "push_notification_decided_idx" not in plan, plan
    assert "push_notification_mentor_idx" in plan, plan  # an index scan or a bitmap of it alone


async def test_the_rows_are_those_of_the_previous_statement(conn: asyncpg.Connection[Any]) -> None:
    rng = random.Random(18)
    mentors = await _mentors(conn, 200)
    windows = [AS_OF + k * HOUR for k in (-30, -5, 1, 3)]
    decided = [
        AS_OF - 24 * HOUR,
        AS_OF - 24 * HOUR + US,
        AS_OF - 3 * HOUR,
        AS_OF,
        AS_OF + US,
        AS_OF - 40 * HOUR,
    ]
    for m in mentors:
        for _ in range(rng.choice((0, 1, 2, 4, 6))):
            window = rng.choice([None, *windows])
            await conn.execute(PUSH, [m], rng.choice(decided), window)
        for k in range(rng.choice((0, 1, 3))):
            await conn.execute(
                "INSERT INTO scenario_engine.scenario_notification"
                " (mentor_id, scenario_type, rule_name, subject, seq, dedup_key, as_of)"
                " VALUES ($1, 'inactivity', 'r', 's', $2, $3, $4)",
                m,
                k,
                f"{m}:{k}",
                rng.choice(decided),
            )
    await conn.execute("ANALYZE scenario_engine.push_notification, scenario_engine.scenario_notification")
    checked = 0
    for as_of in (AS_OF, AS_OF - 2 * HOUR, AS_OF + 23 * HOUR):
        sql, args = bind("policy_inputs", {"mentors": mentors, "scenario_type": "inactivity", "as_of": as_of})
        for mode in ("force_custom_plan", "force_generic_plan"):
            async with conn.transaction():
                await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
                got = sorted(tuple(r) for r in await (await conn.prepare(sql)).fetch(*args))
                want = sorted(tuple(r) for r in await (await conn.prepare(PREVIOUS)).fetch(*args))
            assert got == want, (as_of, mode)
            checked += sum(1 for r in want if r[-1] != 0)
    assert checked > 0  # the data reach the cap count, digests included
