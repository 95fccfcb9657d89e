"""What a sweep wrote, compactly, so that two databases can be compared row for row.

The sweep benchmark checks that the hand-written baseline wrote what the engine's first
sweep wrote, and ``sweep_rewrites`` that an incremental sweep wrote what a full one did.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bench.harness.cluster import Conn


async def _grouped(conn: Conn, sql: str) -> dict[str, list[str]]:
    """group key → [count, hash]; the key is every column before the last two (n, h)."""
    return {
        ":".join(str(v) for v in list(r.values())[:-2]): [str(r["n"]), str(r["h"])]
        for r in await conn.fetch(sql)
    }


async def fingerprint(conn: Conn) -> dict[str, Any]:
    """Per table and group: the row count and an order-free hash of the keys and of the columns
    the reports read. Every table a sweep writes is here (scenario_outcome included)."""
    return {
        "scenario_notification": await _grouped(
            conn,
            "SELECT rule_name, count(*) AS n, coalesce(sum(hashtextextended(dedup_key, 0)), 0) AS h "
            "FROM scenario_engine.scenario_notification GROUP BY 1 ORDER BY 1",
        ),
        "scenario_decision": await _grouped(
            conn,
            "SELECT rule_name, outcome, final, experiment_id, count(*) AS n, "
            "coalesce(sum(hashtextextended(dedup_key || coalesce(organization_id::text, '-'), 0)), 0) AS h "
            "FROM scenario_engine.scenario_decision GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ),
        "push_notification": await _grouped(
            conn,
            "SELECT scenario_type, status, experiment_id, count(*) AS n, "
            # Not the title and body: the engine renders them in the mentor's language with
            # CLDR plurals and dates (messages.py, Babel), which hand-written SQL does not
            # reproduce; the yardstick writes English texts of its own, a cheaper stand-in, so
            # leaving them out of the check can only flatter the yardstick.
            "coalesce(sum(hashtextextended(idempotency_key"
            " || coalesce(organization_id::text, '-') || decided_at::text, 0)), 0) AS h "
            "FROM scenario_engine.push_notification GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ),
        "scenario_outcome": await _grouped(
            conn,
            "SELECT o.rule_name, o.arm, o.status, o.experiment_id, count(*) AS n, "
            "coalesce(sum(hashtextextended(d.dedup_key || o.subject || coalesce(o.organization_id::text, '-')"
            " || o.decided_at::text || o.window_ends_at::text"
            " || coalesce(o.resolved_at::text, '-'), 0)), 0) AS h "
            "FROM scenario_engine.scenario_outcome o "
            "JOIN scenario_engine.scenario_decision d ON d.id = o.decision_id "
            "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ),
        "achievement": await _grouped(
            conn,
            "SELECT milestone, awarded_by, count(*) AS n, "
            "coalesce(sum(hashtextextended(mentor_id::text || threshold::text || period, 0)), 0) AS h "
            "FROM achievement GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        "scenario_cooldown": await _grouped(
            conn,
            "SELECT scenario_type, count(*) AS n, "
            "coalesce(sum(hashtextextended(mentor_id::text || last_rule_name"
            " || last_triggered_at::text, 0)), 0) AS h "
            "FROM scenario_engine.scenario_cooldown GROUP BY 1 ORDER BY 1",
        ),
        # The report's daily roll-ups (sql/0032), kept by triggers on the three tables above: the
        # counts per group, zero groups left out (a group whose rows were deleted keeps n = 0).
        **{
            table: await _grouped(
                conn,
                f"SELECT {keys}, sum(n) AS n, 0 AS h FROM scenario_engine.{table} "
                f"GROUP BY {keys} HAVING sum(n) <> 0 ORDER BY {keys}",
            )
            for table, keys in ROLLUP_KEYS.items()
        },
    }


def for_the_record(fp: dict[str, Any]) -> dict[str, Any]:
    """``fp`` as a result file keeps it: the roll-ups' groups (one per day, organisation, rule,
    arm, …: 3 MB at 1M) become their number, their rows and a SHA-256 of the whole table's
    groups; the other tables stay as they are (a few groups each). The comparison itself is
    made on the whole fingerprint, before this."""
    out = dict(fp)
    for table in ROLLUP_KEYS:
        groups = fp.get(table)
        if isinstance(groups, dict):
            canonical = json.dumps(groups, sort_keys=True, separators=(",", ":"))
            out[table] = {
                "groups": len(groups),
                "rows": sum(int(v[0]) for v in groups.values()),
                "sha256": hashlib.sha256(canonical.encode()).hexdigest(),
            }
    return out


ROLLUP_KEYS = {
    "report_decision_day": "day, organization_id, rule_name, scenario_type, experiment_id, outcome, final",
    "report_push_day": "day, organization_id, experiment_id, scenario_type, rule_name, channel, status, "
    "fell_back, merged, notified",
    "report_outcome_day": "day, window_day, organization_id, rule_name, scenario_type, experiment_id, arm, "
    "timing_arm, digest_arm, status",
}


async def sample_keys(conn: Conn, size: int) -> list[str]:
    """A deterministic sample of notification dedup keys (the same on any copy)."""
    rows = await conn.fetch(
        "SELECT dedup_key FROM scenario_engine.scenario_notification ORDER BY hashtext(dedup_key) LIMIT $1",
        size,
    )
    return [r["dedup_key"] for r in rows]


async def sample_contents(conn: Conn, keys: list[str]) -> dict[str, Any]:
    """dedup key → (context, push data, whether the push has a title and a body, decision
    inputs), compared as values. The texts themselves are left out: the engine renders them
    per locale through Babel ("first aid", "June 19, 2025"), which hand-written SQL cannot; the
    yardstick still renders a text of its own, so it pays for writing one."""
    rows = await conn.fetch(
        """
        SELECT n.dedup_key, n.context, p.data - 'notification_id' AS data,
               p.title <> '' AS title, p.body <> '' AS body, d.inputs
        FROM scenario_engine.scenario_notification n
        LEFT JOIN scenario_engine.push_notification p ON p.idempotency_key = n.dedup_key
        LEFT JOIN scenario_engine.scenario_decision d ON d.dedup_key = n.dedup_key AND d.outcome = 'sent'
        WHERE n.dedup_key = ANY($1::text[])
        """,
        keys,
    )
    return {r["dedup_key"]: (r["context"], r["data"], r["title"], r["body"], r["inputs"]) for r in rows}


async def decisions_per_rule(conn: Conn) -> dict[str, dict[str, Any]]:
    """rule → {"sent": n, other outcome: n, …}."""
    rows = await conn.fetch(
        """
        SELECT rule_name, count(*) FILTER (WHERE outcome = 'sent') AS sent,
               coalesce(jsonb_object_agg(outcome, n) FILTER (WHERE outcome <> 'sent'), '{}') AS others
        FROM (SELECT rule_name, outcome, count(*) AS n FROM scenario_engine.scenario_decision GROUP BY 1, 2) d
        GROUP BY rule_name
        """
    )
    return {r["rule_name"]: {"sent": r["sent"], **dict(r["others"])} for r in rows}
