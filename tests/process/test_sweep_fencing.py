"""One period is swept by one instance at a time (issue 9, defect 3).

A leader learns that its advisory lock is gone only when it asks; before the fix, a leader
whose lock connection was killed kept sweeping its period through pool connections while
the new leader re-claimed the same period. A sweep claim now has an owner, a claim token
and a lease renewed before every batch, and every batch is recorded in
``scenario_sweep_batch`` — the ledger these tests read to prove that no mentor range was
evaluated by two instances at once.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.queries import execute, fetchrow, fetchval
from scenario_engine.runtime.scheduler import LEADER_LOCK_KEY
from tests.support.daemon import DaemonProcess

# Enough mentors that the sweep is far from done when the fault is injected (it hits once
# KILL_AFTER are notified: 5 of 25 batches), few enough that each test sweeps its period twice
# (the original claim, then the take-over) in seconds rather than a minute.
MENTORS = 50_000
KILL_AFTER = 10_000
RULES = '[[inactivity]]\nname = "inactive_21d"\nthreshold_days = 21\n'
# One period for the whole test, small batches (many chances to be fenced), and pushes kept
# nearly idle so the dispatcher does not compete with the sweep for the two cores.
# These tests pin the leader-only sweep (SCENARIO_SWEEP_SHARED=false), which incremental
# periods always use: its claim, lease and takeover are what they assert. A shared full sweep
# (runtime/shared_sweep.py) fences each range on its own claim instead: tests/process/test_sweep_shared.py.
DAEMON = {
    "sweep_interval_seconds": 86400,
    "sweep_batch_size": 2000,
    "push_rate_per_second": 1,
    "sweep_shared": False,
}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return time.monotonic() - start
        await anyio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


async def _population(pool: Any) -> None:
    """Every mentor joined 60 days ago with no activity: each is due one inactivity reminder."""
    await pool.execute(
        "INSERT INTO peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - interval '60 days' FROM generate_series(1, $1::int)",
        MENTORS,
    )
    await pool.execute("ANALYZE peer_mentor")


def _events(d: DaemonProcess, name: str, key: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in d.log_events()
        if e.get("event") == name and (key is None or e.get("sweep_key") in (None, key))
    ]


def _at(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(event["timestamp"])


def _settled(*procs: DaemonProcess) -> bool:
    """Every sweep a daemon started has ended (finished, fenced or interrupted)."""
    for d in procs:
        started = len(_events(d, "sweep_started"))
        ended = sum(len(_events(d, e)) for e in ("sweep_finished", "sweep_fenced", "sweep_interrupted"))
        if ended < started:
            return False
    return True


def leads(d: DaemonProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool((await d.status())["role"] == "leader")

    return check


def settled(*procs: DaemonProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _settled(*procs)

    return check


async def _assert_ledger_consistent(pool: Any, key: str, dead_until: dt.datetime | None = None) -> None:
    """The claims each user cares about, read from the database itself. An unfinished batch
    counts as running until ``dead_until`` (the lease end of a killed owner) or for ever."""
    sweep = await pool.fetchrow("SELECT * FROM scenario_sweep WHERE sweep_key = $1", key)
    assert sweep["finished_at"] is not None, "the period was completed"
    assert await pool.fetchval("SELECT count(*) FROM scenario_sweep") == 1
    # No mentor range evaluated by two instances at once.
    overlaps = await pool.fetch(
        """
        SELECT a.instance_id AS a, a.batch_no AS a_no, b.instance_id AS b, b.batch_no AS b_no
        FROM scenario_sweep_batch a JOIN scenario_sweep_batch b
          ON a.sweep_key = $1 AND b.sweep_key = $1 AND a.instance_id < b.instance_id
         AND a.first_mentor <= b.last_mentor AND b.first_mentor <= a.last_mentor
         AND a.started_at < coalesce(b.finished_at, $2, 'infinity')
         AND b.started_at < coalesce(a.finished_at, $2, 'infinity')
        """,
        key,
        dead_until,
    )
    assert overlaps == [], f"batches evaluated concurrently by two instances: {overlaps}"
    # The claim that finished the period evaluated the whole population.
    assert (
        await pool.fetchval(
            "SELECT sum(mentors) FROM scenario_sweep_batch WHERE sweep_key = $1 AND claim_token = $2",
            key,
            sweep["claim_token"],
        )
        == MENTORS
    )
    # Every mentor notified exactly once, at the period's original instant; no key twice.
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT dedup_key) AS keys, count(DISTINCT mentor_id) AS mentors, "
        "min(as_of) AS first, max(as_of) AS last FROM scenario_notification"
    )
    assert row["n"] == row["keys"] == row["mentors"] == MENTORS
    assert row["first"] == row["last"] == sweep["as_of"]
    assert await pool.fetchval("SELECT count(DISTINCT notification_id) FROM push_notification") == MENTORS
    assert await pool.fetchval("SELECT count(*) FROM push_notification") == MENTORS


@pytest.mark.acceptance
async def test_leader_whose_lock_connection_dies_stops_before_its_next_batch(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    await _population(pool)
    a = daemons("a", rules_file=rules_file, **DAEMON)
    await a.wait_ready()
    await eventually(leads(a), 20, "a leads")
    # b polls for the lock often, so it is usually the one that takes over; a re-acquiring
    # the lock first is legitimate too (its new claim fences its old one), and asserted alike.
    b = daemons("b", rules_file=rules_file, **{**DAEMON, "leader_retry_seconds": 0.1})
    await b.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) >= $1 FROM scenario_notification", KILL_AFTER),
        60,
        "a sweeping",
    )
    # The backend that holds the leader lock is a's lock connection: terminate it.
    lock_pid = await pool.fetchval(
        """
        SELECT l.pid FROM pg_locks l JOIN pg_stat_activity s USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND s.datname = current_database()
          AND s.application_name = 'scenario-engine leader'
          AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
        """,
        LEADER_LOCK_KEY,
    )
    assert lock_pid is not None, "a held the leader lock"
    killed_at = await pool.fetchval("SELECT now() WHERE pg_terminate_backend($1)", lock_pid)
    assert killed_at is not None
    killed = time.monotonic()
    done_before_kill = await pool.fetchval("SELECT count(*) FROM scenario_notification")
    assert done_before_kill < MENTORS, "the kill landed mid-sweep"
    key = await pool.fetchval("SELECT sweep_key FROM scenario_sweep")

    await eventually(
        lambda: pool.fetchval("SELECT finished_at IS NOT NULL FROM scenario_sweep"), 240, "period done"
    )
    await eventually(settled(a, b), 240, "every sweep ended")

    finished = [e for d in (a, b) for e in _events(d, "sweep_finished", key)]
    assert len(finished) == 1, "the period was completed exactly once"
    # The old leader noticed before its next batch, while the sweep was still running, and
    # never completed the period.
    fenced = _events(a, "sweep_fenced", key)
    assert [e["reason"] for e in fenced] == ["leadership_lost"], a.logs()[-3000:]
    lost = _events(a, "leadership_lost")
    assert lost and _at(lost[0]) >= _at(fenced[0])
    finished_at = await pool.fetchval("SELECT finished_at FROM scenario_sweep")
    assert _at(fenced[0]) < finished_at
    claims = await pool.fetch(
        "SELECT claim_token, min(instance_id) AS instance_id FROM scenario_sweep_batch "
        "GROUP BY claim_token ORDER BY min(started_at)"
    )
    fenced_claim = claims[0]["claim_token"]
    assert claims[0]["instance_id"] == f"a-{a.port}"
    final = await pool.fetchrow("SELECT claim_token, instance_id FROM scenario_sweep")
    assert final["claim_token"] != fenced_claim, "the fenced sweep did not complete the period"
    # It began at most the batch it had already passed its checks for when the kill landed.
    late = await pool.fetchval(
        "SELECT count(*) FROM scenario_sweep_batch WHERE claim_token = $1 AND started_at > $2",
        fenced_claim,
        killed_at,
    )
    assert late <= 1
    await _assert_ledger_consistent(pool, key)

    taker = b if final["instance_id"] == f"b-{b.port}" else a
    resumed = [e for e in _events(taker, "sweep_started", key) if _at(e) > killed_at]
    print(
        f"\nold leader stopped {(_at(fenced[0]) - killed_at).total_seconds():.2f} s after the kill; "
        f"{final['instance_id']} took over after {(_at(resumed[0]) - killed_at).total_seconds():.2f} s; "
        f"period done {(finished_at - killed_at).total_seconds():.1f} s after the kill "
        f"({time.monotonic() - killed:.1f} s wall); {done_before_kill} mentors done before the kill"
    )


@pytest.mark.acceptance
async def test_sigkilled_leader_period_is_taken_over_after_its_lease_at_its_as_of(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    await _population(pool)
    settings = {**DAEMON, "sweep_lease_seconds": 4}
    a = daemons("a", rules_file=rules_file, **settings)
    await a.wait_ready()
    await eventually(leads(a), 20, "a leads")
    b = daemons("b", rules_file=rules_file, **settings)
    await b.wait_ready()
    await eventually(
        lambda: pool.fetchval("SELECT count(*) >= $1 FROM scenario_notification", KILL_AFTER),
        60,
        "a sweeping",
    )
    a.kill()
    killed_at = await pool.fetchval("SELECT now()")
    original = await pool.fetchrow("SELECT * FROM scenario_sweep")
    assert original["finished_at"] is None, "the kill landed mid-sweep"
    assert original["instance_id"] == f"a-{a.port}"
    key = original["sweep_key"]

    await eventually(
        lambda: pool.fetchval("SELECT finished_at IS NOT NULL FROM scenario_sweep"), 240, "period done"
    )
    await eventually(settled(b), 240, "b's sweep ended")

    # b led at once but waited the dead owner's lease out before taking the period over.
    assert _events(b, "sweep_owned_elsewhere", key), b.logs()[-3000:]
    first_b = await pool.fetchval(
        "SELECT min(started_at) FROM scenario_sweep_batch WHERE instance_id = $1", f"b-{b.port}"
    )
    assert first_b >= original["lease_until"]
    final = await pool.fetchrow("SELECT * FROM scenario_sweep")
    assert final["instance_id"] == f"b-{b.port}" and final["as_of"] == original["as_of"]
    assert len(_events(b, "sweep_finished", key)) == 1
    await _assert_ledger_consistent(pool, key, dead_until=original["lease_until"])
    print(
        f"\nlease ran out {(original['lease_until'] - killed_at).total_seconds():.2f} s after the kill; "
        f"b's first batch {(first_b - killed_at).total_seconds():.2f} s after it"
    )


async def test_claims_are_fenced_by_owner_and_lease(pool: Any) -> None:
    """The bookkeeping rules on their own: a live lease is never taken, a lapsed one is, and a
    fenced claim can neither renew nor finish the period."""
    at = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    async def claim(key: str, as_of: dt.datetime, who: str) -> Any:
        return await fetchrow(
            pool, "claim_sweep", sweep_key=key, as_of=as_of, instance_id=who, lease_secs=30.0
        )

    ids = sorted(uuid.uuid4() for _ in range(2))

    async def renew(token: uuid.UUID, batch_no: int) -> Any:
        return await fetchval(
            pool,
            "renew_sweep_lease",
            sweep_key="p",
            claim_token=token,
            lease_secs=30.0,
            batch_no=batch_no,
            instance_id="a",
            first_mentor=ids[0],
            last_mentor=ids[1],
            mentor_count=2,
        )

    async def finish(token: uuid.UUID) -> Any:
        return await fetchval(
            pool, "finish_sweep", sweep_key="p", stats={}, claim_token=token, retention_secs=3600.0
        )

    a = await claim("p", at, "a")
    assert a is not None and a["as_of"] == at
    assert await claim("p", at + dt.timedelta(hours=1), "b") is None
    assert await renew(a["claim_token"], 0)

    # a restarting under the same instance id resumes its own period (with a new token) ...
    again = await claim("p", at + dt.timedelta(hours=1), "a")
    assert again is not None and again["as_of"] == at and again["claim_token"] != a["claim_token"]
    # ... which fences the old token: no renewal, no finish.
    assert not await renew(a["claim_token"], 1)
    assert await finish(a["claim_token"]) is None

    # Once the lease lapses, another instance takes the period over at its original as_of.
    await pool.execute("UPDATE scenario_sweep SET lease_until = now() - interval '1 second'")
    assert not await renew(again["claim_token"], 0), "a lapsed lease is not renewed"
    b = await claim("p", at + dt.timedelta(hours=2), "b")
    assert b is not None and b["as_of"] == at
    assert await finish(b["claim_token"]) == "p"
    # A finished period is never claimed again, by anyone.
    for who in ("a", "b"):
        assert await claim("p", at, who) is None
    # The ledger closed a's batch and kept who did what.
    rows = await pool.fetch("SELECT instance_id, finished_at FROM scenario_sweep_batch")
    assert [(r["instance_id"], r["finished_at"] is not None) for r in rows] == [("a", True)]

    # Giving a period up lets the lease lapse at once, so the next leader need not wait.
    c = await claim("q", at, "c")
    await execute(pool, "release_sweep_lease", sweep_key="q", claim_token=c["claim_token"])
    assert await claim("q", at, "d") is not None
