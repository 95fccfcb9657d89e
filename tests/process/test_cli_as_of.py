"""Instants on the command line: a writing ``sweep --as-of`` away from now is refused unless
forced (a sweep in 2030 set cooldowns to 2030 and pushed "we miss you" today), the documented
repair of one forced by mistake works, and an instant outside what the engine can compute with
is a bad-input line (exit 2) naming the option, not "a bug" (exit 1)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from scenario_engine.exit_codes import EXIT_CONFIG
from tests.support.cli import run_cli
from tests.support.factories import add_activity, add_mentor

ROOT = Path(__file__).resolve().parents[2]
DAY = dt.timedelta(days=1)
FUTURE = "2030-01-01"
NOWHERE = {"SCENARIO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
WRITTEN = (
    "scenario_engine.scenario_notification",
    "scenario_engine.scenario_decision",
    "scenario_engine.scenario_cooldown",
    "scenario_engine.push_notification",
    "scenario_engine.scenario_outcome",
)
# Every instant column of the engine's tables a sweep writes at its as_of.
INSTANTS = (
    ("scenario_notification", "as_of"),
    ("scenario_decision", "as_of"),
    ("scenario_cooldown", "last_triggered_at"),
    ("push_notification", "decided_at"),
    ("scenario_outcome", "decided_at"),
    ("scenario_outcome", "resolved_at"),
    ("scenario_experiment", "started_at"),
    ("scenario_rule_state", "first_seen_at"),
    ("scenario_rule_state", "baseline_at"),
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _active_last_week(pool: Any, n: int = 6) -> list[Any]:
    """Mentors active ten days ago: nothing is due today; in 2030 all are "inactive"."""
    mentors = []
    for i in range(n):
        m = await add_mentor(pool, joined_at=now() - 100 * DAY, name=f"Mentor {i}")
        await add_activity(pool, m, now() - 10 * DAY)
        mentors.append(m)
    return mentors


async def _counts(pool: Any) -> dict[str, int]:
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in WRITTEN}


async def _future_rows(pool: Any) -> dict[str, int]:
    out = {}
    for table, column in INSTANTS:
        out[f"{table}.{column}"] = await pool.fetchval(
            f"SELECT count(*) FROM scenario_engine.{table} WHERE {column} > now() + interval '5 minutes'"
        )
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize(
    ("as_of", "where"),
    [(FUTURE, "in the future"), ((now() - 2 * DAY).isoformat(), "in the past")],
    ids=["future", "past"],
)
async def test_a_writing_sweep_away_from_now_is_refused(
    db_url: str, pool: Any, as_of: str, where: str
) -> None:
    await _active_last_week(pool)
    env = {"SCENARIO_DATABASE_URL": db_url}
    before = await _counts(pool)
    out = await run_cli("sweep", "--as-of", as_of, env=env)
    assert out.returncode == EXIT_CONFIG, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("sweep: refused: --as-of") and where in line
    assert "--force" in line and "--dry-run" in line
    assert await _counts(pool) == before, "a refused sweep wrote"
    # the dry run of the same instant is what --as-of is for
    dry = await run_cli("sweep", "--dry-run", "--as-of", as_of, env=env)
    assert dry.returncode == 0, dry.stderr
    assert await _counts(pool) == before


async def test_a_sweep_within_minutes_of_now_is_not_refused(db_url: str, pool: Any) -> None:
    await _active_last_week(pool, 1)
    for as_of in (now() + dt.timedelta(minutes=2), now() - dt.timedelta(minutes=2)):
        out = await run_cli("sweep", "--as-of", as_of.isoformat(), env={"SCENARIO_DATABASE_URL": db_url})
        assert out.returncode == 0, out.stderr


def _repair_script() -> str:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    block = text.split("<!-- repair-future-sweep:begin -->")[1].split("<!-- repair-future-sweep:end -->")[0]
    match = re.search(r"```sql\n(.*?)```", block, flags=re.S)
    assert match is not None
    return match.group(1)


async def test_a_forced_future_sweep_is_repaired_by_the_documented_script(db_url: str, pool: Any) -> None:
    mentors = await _active_last_week(pool)
    env = {"SCENARIO_DATABASE_URL": db_url}
    assert (await run_cli("sweep", env=env)).returncode == 0  # today: nothing is due
    assert await pool.fetchval("SELECT count(*) FROM scenario_engine.push_notification") == 0
    forced = await run_cli("sweep", "--as-of", FUTURE, "--force", env=env)
    assert forced.returncode == 0, forced.stderr
    # the defect, reproduced on purpose: cooldowns in 2030, pushes queued now
    assert await pool.fetchval(
        "SELECT count(*) FROM scenario_engine.scenario_cooldown WHERE last_triggered_at >= $1",
        dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    ) == len(mentors)
    pushes = [
        r["id"] for r in await pool.fetch("SELECT id FROM scenario_engine.push_notification ORDER BY id")
    ]
    assert len(pushes) >= len(mentors)
    # the dispatcher got half of them out before anyone noticed
    delivered = pushes[: len(pushes) // 2]
    await pool.execute(
        "UPDATE scenario_engine.push_notification SET status = 'sent', sent_at = now(), attempts = 1 "
        "WHERE id = ANY($1::bigint[])",
        delivered,
    )
    delivered_keys = {
        r["dedup_key"]
        for r in await pool.fetch(
            "SELECT n.dedup_key FROM scenario_engine.scenario_notification n "
            "JOIN scenario_engine.push_notification p ON p.notification_id = n.id "
            "WHERE p.id = ANY($1::bigint[])",
            delivered,
        )
    }

    await pool.execute(_repair_script())

    assert await _future_rows(pool) == {}, "rows still dated after now"
    kept = {
        r["dedup_key"]
        for r in await pool.fetch("SELECT dedup_key FROM scenario_engine.scenario_notification")
    }
    assert kept == delivered_keys, (
        "delivered decisions stay in the ledger (no repeat); the rest are forgotten"
    )
    assert (
        await pool.fetchval("SELECT count(*) FROM scenario_engine.push_notification WHERE status = 'pending'")
        == 0
    )
    assert sorted(
        r["id"] for r in await pool.fetch("SELECT id FROM scenario_engine.push_notification")
    ) == sorted(delivered)
    # a cooldown only for the mentors who were really notified, dated when it went out
    cooled = await pool.fetch("SELECT mentor_id, last_triggered_at FROM scenario_engine.scenario_cooldown")
    assert {r["mentor_id"] for r in cooled} == {
        r["mentor_id"]
        for r in await pool.fetch(
            "SELECT mentor_id FROM scenario_engine.push_notification WHERE id = ANY($1::bigint[])", delivered
        )
    }
    assert all(r["last_triggered_at"] <= now() for r in cooled)
    # the engine works on: a sweep now, and the undelivered ones are due again in 2030
    assert (await run_cli("sweep", env=env)).returncode == 0
    dry = await run_cli("sweep", "--dry-run", "--as-of", FUTURE, "--output", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert await _future_rows(pool) == {}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("sweep", "--dry-run", "--as-of", "0500-01-01"), "--as-of"),
        (("sweep", "--as-of", "9999-12-31", "--force"), "--as-of"),
        (("sweep", "--dry-run", "--as-of", "0001-01-01T00:00:00+05:00"), "--as-of"),
        (("sweep", "--dry-run", "--as-of", "9999-12-31T23:00:00-05:00"), "--as-of"),
        (("explain", "00000000-0000-0000-0000-000000000001", "--as-of", "0001-01-01"), "--as-of"),
        (("dispatch", "--retry-dead", "--since", "0001-01-01"), "--since"),
        (("report", "--since", "0001-01-01"), "--since"),
        (("report", "--until", "9999-12-31"), "--until"),
        (("report", "--since", "1000-01-02"), "--since"),
        (("report", "--since", "infinity"), "--since"),
        (("sweep", "--dry-run", "--as-of", "-infinity"), "--as-of"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
async def test_an_instant_the_engine_cannot_use_is_bad_input(args: tuple[str, ...], named: str) -> None:
    """Checked before any connection: the URL leads nowhere, and the answer is still exit 2."""
    out = await run_cli(*args, env=NOWHERE)
    assert out.returncode == EXIT_CONFIG, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert named in last, last
    assert "a bug" not in out.stderr and "Traceback" not in out.stderr


async def test_the_edges_of_the_range_work(db_url: str, pool: Any) -> None:
    await _active_last_week(pool, 1)
    env = {"SCENARIO_DATABASE_URL": db_url}
    for args in (
        ("sweep", "--dry-run", "--as-of", "1000-01-02"),
        ("sweep", "--dry-run", "--as-of", "9000-12-30"),
        ("report", "--since", "1600-01-01"),
        ("report", "--since", "9000-09-01", "--until", "9000-12-30"),
    ):
        out = await run_cli(*args, env=env)
        assert out.returncode == 0, (args, out.stderr)


# Debian puts it under the architecture's directory; scripts/test-tools installs it.
LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"), Path("/nonexistent"))


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime missing: apt-get install faketime")
async def test_a_sweep_on_a_host_a_day_ahead_decides_and_checks_by_the_database_clock(
    db_url: str, pool: Any
) -> None:
    """``sweep`` with no --as-of, and the --as-of guard, take "now" from the database: a host a
    day ahead neither reminds mentors 20.5 days inactive nor refuses an --as-of of true now."""
    ahead = {
        "SCENARIO_DATABASE_URL": db_url,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": "+1d",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    nearly = await add_mentor(pool, joined_at=now() - 100 * DAY)
    await add_activity(pool, nearly, now() - dt.timedelta(days=20.5))
    due = await add_mentor(pool, joined_at=now() - 100 * DAY)
    await add_activity(pool, due, now() - dt.timedelta(days=21.5))
    out = await run_cli("sweep", "--as-of", now().isoformat(), env=ahead)
    assert out.returncode == 0, out.stderr
    out = await run_cli("sweep", env=ahead)
    assert out.returncode == 0, out.stderr
    reminded = {
        r["mentor_id"]
        for r in await pool.fetch(
            "SELECT mentor_id FROM scenario_engine.scenario_notification WHERE scenario_type = 'inactivity'"
        )
    }
    assert reminded == {due}
    assert await _future_rows(pool) == {}
