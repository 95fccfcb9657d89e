"""Replicas with different rules files (issue 16, item 5): two real daemons, one database.

Before the fix both decided: an event claimed by either got that daemon's thresholds under the
same rule names. Here the leader celebrates 2 sessions and the follower, with another file,
3 sessions; every mentor logs 3 sessions, so a notification for the 3rd session can only come
from the follower. Each instance publishes its rules fingerprint (heartbeat row, /status,
/metrics, the status page); the follower reports the mismatch, is unready, and claims nothing
until a SIGHUP makes its rules agree (runtime/fleet.py).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.acceptance

LEADER_RULES = (
    'daily_cap = 100\n[[milestone]]\nname = "sessions_year"\nmetric = "sessions"\nthresholds = [2]\n'
)
FOLLOWER_RULES = LEADER_RULES.replace("thresholds = [2]", "thresholds = [3]")
MENTORS = 60
# Small batches so that both drains get a share of the events (SKIP LOCKED), not one the lot.
DAEMON: dict[str, Any] = {
    "poll_interval_seconds": 0.5,
    "sweep_interval_seconds": 86400,
    "drain_batch_size": 5,
}
THIRD_SESSION = (
    "SELECT count(*) FROM scenario_notification "
    "WHERE rule_name = 'sessions_year' AND (context->>'threshold')::float = 3"
)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await anyio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s")


def rules_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def start_pair(
    daemons: Any, pool: Any, tmp_path: Path, **follower: Any
) -> tuple[DaemonProcess, DaemonProcess]:
    """The leader (2 sessions) up and leading, then the follower (3 sessions) up and heard from."""
    a = daemons("a", rules_file=rules_file(tmp_path, "a.toml", LEADER_RULES), **DAEMON)
    await a.wait_ready()
    await eventually(
        lambda: pool.fetchval(
            "SELECT count(*) = 1 FROM scenario_engine_instance "
            "WHERE role = 'leader' AND rules_fingerprint IS NOT NULL"
        ),
        what="the leader's heartbeat",
    )
    b = daemons("b", rules_file=rules_file(tmp_path, "b.toml", FOLLOWER_RULES), **(DAEMON | follower))
    await b.wait_http("/healthz", 200)

    async def mismatch_seen() -> bool:
        return bool((await b.status())["rules"]["mismatch"])

    await eventually(mismatch_seen, what="the follower sees the mismatch")
    return a, b


async def three_sessions_each(pool: Any, n: int) -> list[Any]:
    """n new mentors, then three rounds of one session each: 3n events, in three statements."""
    mentors = [
        r["id"]
        for r in await pool.fetch(
            "INSERT INTO peer_mentor (organization_id, joined_at) "
            "SELECT gen_random_uuid(), now() - interval '30 days' FROM generate_series(1, $1) RETURNING id",
            n,
        )
    ]
    for hours_ago in (3, 2, 1):
        await pool.execute(
            "INSERT INTO activity (mentor_id, kind, occurred_at, duration_minutes) "
            "SELECT m, 'session', now() - make_interval(hours => $2), 60 FROM unnest($1::uuid[]) m",
            mentors,
            hours_ago,
        )
    return mentors


async def all_processed(pool: Any) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) = 0 FROM scenario_event WHERE processed_at IS NULL AND dead_at IS NULL"
        )
    )


async def test_a_follower_with_other_rules_evaluates_nothing_until_a_reload_makes_them_agree(
    daemons: Any, pool: Any, tmp_path: Path
) -> None:
    a, b = await start_pair(daemons, pool, tmp_path)
    # Published: heartbeat rows, /status, /readyz, /metrics, the status page.
    rows = {
        r["instance_id"]: r
        for r in await pool.fetch("SELECT instance_id, role, rules_fingerprint FROM scenario_engine_instance")
    }
    leader_fp, follower_fp = (
        rows[f"a-{a.port}"]["rules_fingerprint"],
        rows[f"b-{b.port}"]["rules_fingerprint"],
    )
    assert leader_fp != follower_fp
    rules = (await b.status())["rules"]
    assert rules == {
        "fingerprint": follower_fp,
        "leader_instance": f"a-{a.port}",
        "leader_fingerprint": leader_fp,
        "mismatch": True,
        "evaluation_paused": True,
        "grace_seconds": 0.0,
    }
    assert (await a.status())["rules"]["mismatch"] is False
    code, body = await b.http("/readyz")
    assert code == 503 and json.loads(body)["reasons"] == ["rules_mismatch"]
    assert await b.metric("scenario_rules_fingerprint_mismatch") == 1
    assert await b.metric("scenario_evaluation_paused") == 1
    assert await a.metric("scenario_rules_fingerprint_mismatch") == 0
    _, metrics = await b.http("/metrics")
    assert f'scenario_rules_info{{fingerprint="{follower_fp}"}} 1.0' in metrics.decode()
    _, page = await b.http("/")
    assert "Rules differ from the leader" in page.decode() and leader_fp in page.decode()

    # Events either could claim: only the leader's thresholds decide.
    await three_sessions_each(pool, MENTORS)
    await eventually(lambda: all_processed(pool), what="every event processed")
    assert await pool.fetchval(THIRD_SESSION) == 0, "the follower decided under its own rules"
    assert await pool.fetchval("SELECT count(*) FROM scenario_notification") == MENTORS
    mismatch_lines = [e for e in b.log_events() if e.get("event") == "rules_fingerprint_mismatch"]
    assert len(mismatch_lines) == 1 and mismatch_lines[0]["level"] == "error"

    # The operator installs the leader's file and reloads: the follower evaluates again.
    (tmp_path / "b.toml").write_text(LEADER_RULES)
    b.signal(signal.SIGHUP)
    await b.wait_ready()
    assert (await b.status())["rules"]["mismatch"] is False
    assert any(e.get("event") == "rules_mismatch_cleared" for e in b.log_events())
    a.signal(signal.SIGSTOP)  # the leader keeps its lock but claims nothing: only b can
    try:
        [mentor] = await three_sessions_each(pool, 1)
        await eventually(
            lambda: pool.fetchval(
                "SELECT count(*) = 1 FROM scenario_notification WHERE mentor_id = $1", mentor
            ),
            what="the reloaded follower handles a new event",
        )
    finally:
        a.signal(signal.SIGCONT)


async def test_within_the_grace_window_a_mismatched_follower_still_evaluates(
    daemons: Any, pool: Any, tmp_path: Path
) -> None:
    """SCENARIO_RULES_MISMATCH_GRACE_SECONDS (a rolling reload): reported, ready, still deciding.
    This is also what every follower did before the fix, and shows that the test above would
    see a follower's decisions."""
    _a, b = await start_pair(daemons, pool, tmp_path, rules_mismatch_grace_seconds=3600)
    status = await b.status()
    assert status["rules"]["mismatch"] is True and status["rules"]["evaluation_paused"] is False
    assert status["ready"] is True
    await three_sessions_each(pool, MENTORS)
    await eventually(lambda: all_processed(pool), what="every event processed")
    assert await pool.fetchval(THIRD_SESSION) > 0
