"""A full sweep is shared by every running daemon (issue 18, item 5).

Before, one leader evaluated a whole full period and a second daemon added no throughput. The
period's owner now writes the period's mentor ranges (``scenario_sweep_range``), every daemon
claims ranges with ``SKIP LOCKED``, each range's decisions commit with its completion under
its own claim token, and the last completion closes the period. These tests read the
database itself: which instance evaluated which range, how many decisions and notifications
there are, and how many times the period was counted.
"""

from __future__ import annotations

import datetime as dt
import signal
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from scenario_engine.db.queries import fetch, fetchrow, fetchval
from tests.process.test_sweep_fencing import eventually
from tests.support.daemon import DaemonProcess

MENTORS = 120_000
RULES = '[[inactivity]]\nname = "inactive_21d"\nthreshold_days = 21\n'
DAEMON = {
    "sweep_interval_seconds": 86400,  # one period for the whole test
    "sweep_batch_size": 1000,  # 120 ranges: every daemon gets some
    "push_rate_per_second": 1,  # keep the dispatcher nearly idle: the cores are for the sweep
    "leader_retry_seconds": 0.2,
}


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


async def _population(pool: Any, n: int) -> None:
    """Every mentor joined 60 days ago with no activity: each is due one inactivity reminder."""
    await pool.execute(
        "INSERT INTO peer_mentor (organization_id, joined_at) "
        "SELECT gen_random_uuid(), now() - interval '60 days' FROM generate_series(1, $1::int)",
        n,
    )
    await pool.execute("ANALYZE peer_mentor")


def settled(*procs: DaemonProcess) -> Callable[[], Awaitable[bool]]:
    """Every sweep a daemon started has ended: finished (it closed the period), closed by
    another instance, fenced or interrupted."""

    async def check() -> bool:
        for d in procs:
            events = [e.get("event") for e in d.log_events()]
            ends = ("sweep_finished", "sweep_closed_elsewhere", "sweep_fenced", "sweep_interrupted")
            if events.count("sweep_started") > sum(events.count(e) for e in ends):
                return False
        return True

    return check


async def _assert_swept_once(pool: Any, procs: list[DaemonProcess]) -> dict[str, int]:
    """The period closed once, each mentor decided and notified once, the ranges all done and
    their ledger consistent; returns ranges per instance."""
    sweep = await pool.fetchrow("SELECT * FROM scenario_sweep")
    assert sweep["finished_at"] is not None
    assert await pool.fetchval("SELECT count(*) FROM scenario_sweep") == 1
    assert await pool.fetchval("SELECT count(*) FROM scenario_sweep_range WHERE state <> 'done'") == 0
    # Each mentor evaluated once: one decision row and one notification per mentor.
    decisions = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT mentor_id) AS mentors FROM scenario_decision"
    )
    assert decisions["n"] == decisions["mentors"] == MENTORS
    row = await pool.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT dedup_key) AS keys, count(DISTINCT mentor_id) AS mentors, "
        "min(as_of) AS first, max(as_of) AS last FROM scenario_notification"
    )
    assert row["n"] == row["keys"] == row["mentors"] == MENTORS
    assert row["first"] == row["last"] == sweep["as_of"]
    assert await pool.fetchval("SELECT count(*) FROM push_notification") == MENTORS
    # Counted once: the period's stats, the ranges' sum, the ledger and the metrics agree.
    assert sweep["stats"]["per_rule"]["inactive_21d"]["sent"] == MENTORS
    assert await pool.fetchval("SELECT sum(mentors) FROM scenario_sweep_range") == MENTORS
    assert await pool.fetchval("SELECT sum(mentors) FROM scenario_sweep_batch") == MENTORS
    completed = [await d.metric('scenario_sweeps_total{result="completed"}') for d in procs]
    assert sum(completed) == 1, completed
    decided = [await d.metric("scenario_sweep_decisions_total") for d in procs]
    assert sum(decided) == MENTORS, decided
    finished = [e for d in procs for e in d.log_events() if e.get("event") == "sweep_finished"]
    assert len(finished) == 1
    rows = await pool.fetch(
        "SELECT claimed_by, count(*) AS n FROM scenario_sweep_range GROUP BY claimed_by ORDER BY claimed_by"
    )
    return {r["claimed_by"]: r["n"] for r in rows}


@pytest.mark.acceptance
async def test_three_daemons_share_a_full_sweep_and_count_it_once(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    await _population(pool, MENTORS)
    procs = [daemons(name, rules_file=rules_file, **DAEMON) for name in ("a", "b", "c")]
    for d in procs:
        await d.wait_ready(timeout=30)
    await eventually(
        lambda: pool.fetchval("SELECT finished_at IS NOT NULL FROM scenario_sweep"), 240, "period done"
    )
    await eventually(settled(*procs), 60, "every sweep ended")
    per_instance = await _assert_swept_once(pool, procs)
    ranges = await pool.fetchval("SELECT count(*) FROM scenario_sweep_range")
    assert ranges == MENTORS // DAEMON["sweep_batch_size"]
    # Every daemon evaluated some ranges, and no range twice.
    assert set(per_instance) == {f"{n}-{d.port}" for n, d in zip("abc", procs, strict=True)}, per_instance
    assert await pool.fetchval("SELECT max(attempts) FROM scenario_sweep_range") == 1
    print(f"\nranges per instance: {per_instance}")


@pytest.mark.acceptance
async def test_sigkilled_replica_range_is_reclaimed_after_its_lease(
    daemons: Any, pool: Any, rules_file: Path
) -> None:
    await _population(pool, MENTORS)
    settings = {**DAEMON, "sweep_lease_seconds": 3}
    a = daemons("a", rules_file=rules_file, **settings)
    await a.wait_ready(timeout=30)
    b = daemons("b", rules_file=rules_file, **settings)
    c = daemons("c", rules_file=rules_file, **settings)
    await b.wait_ready(timeout=30)
    await c.wait_ready(timeout=30)
    victim = b if (await b.status())["role"] != "leader" else c
    victim_id = f"{'b' if victim is b else 'c'}-{victim.port}"

    async def victim_has_a_range() -> bool:
        """The follower is evaluating a range, after it committed a few."""
        return bool(
            await pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM scenario_sweep_range "
                "WHERE state = 'claimed' AND claimed_by = $1) "
                "AND (SELECT count(*) FROM scenario_sweep_range "
                "WHERE state = 'done' AND claimed_by = $1) >= 3",
                victim_id,
            )
        )

    held = (
        "SELECT batch_no, lease_until FROM scenario_sweep_range WHERE state = 'claimed' AND claimed_by = $1"
    )
    for _ in range(20):
        await eventually(victim_has_a_range, 120, "the follower evaluating a range")
        # Frozen first: a commit already on its way lands, and the ranges still claimed now are
        # the ones the kill takes with it (killed unfrozen, it might land between two ranges).
        victim.signal(signal.SIGSTOP)
        await anyio.sleep(0.3)
        if await pool.fetch(held, victim_id):
            break
        victim.signal(signal.SIGCONT)
    victim.kill()
    killed_at = await pool.fetchval("SELECT now()")
    await anyio.sleep(0.5)  # the killed backend's transaction is rolled back
    dead = await pool.fetch(held, victim_id)
    assert dead, "the victim was never frozen holding a range"
    assert await pool.fetchval("SELECT finished_at IS NULL FROM scenario_sweep"), "the kill landed mid-sweep"
    alive = [d for d in (a, b, c) if d is not victim]
    await eventually(
        lambda: pool.fetchval("SELECT finished_at IS NOT NULL FROM scenario_sweep"), 240, "period done"
    )
    await eventually(settled(*alive), 60, "every sweep ended")
    # The dead range was claimed again only after its lease, by a survivor, and completed.
    for r in dead:
        again = await pool.fetchrow(
            "SELECT state, claimed_by, claimed_at, attempts FROM scenario_sweep_range WHERE batch_no = $1",
            r["batch_no"],
        )
        assert again["state"] == "done" and again["claimed_by"] != victim_id
        assert again["attempts"] == 2
        assert again["claimed_at"] >= r["lease_until"]
    # The victim's committed ranges stay counted once; nothing of its dead range was written.
    await _assert_swept_once(pool, alive)
    committed_by_victim = await pool.fetchval(
        "SELECT count(*) FROM scenario_sweep_batch WHERE instance_id = $1", victim_id
    )
    print(
        f"\nkilled {victim_id} holding ranges {[r['batch_no'] for r in dead]} "
        f"({committed_by_victim} ranges committed before); lease ran out "
        f"{(dead[0]['lease_until'] - killed_at).total_seconds():.2f} s after the kill"
    )


async def test_range_claims_are_fenced_and_the_last_completion_closes_the_period(pool: Any) -> None:
    """The SQL protocol: a lapsed claim is taken over and can no longer lock or complete its
    range; a range being evaluated is skipped however late; two last completions close once."""
    await _population(pool, 10)
    plan = {"rules": "r1", "full_as_of": "2026-01-01T00:00:00+00:00", "requested": []}
    async with pool.acquire() as c:
        period = await fetchrow(
            c, "claim_sweep", sweep_key="p", as_of=dt.datetime.now(dt.UTC), instance_id="o", lease_secs=30
        )
        assert period is not None
        opened = await fetchrow(
            c, "open_shared_sweep", sweep_key="p", claim_token=period["claim_token"], batch_size=4, plan=plan
        )
        assert opened is not None and (opened["written"], opened["ranges"]) == (3, 3)
        again = await fetchrow(
            c, "open_shared_sweep", sweep_key="p", claim_token=period["claim_token"], batch_size=4, plan=plan
        )
        assert again is not None and (again["written"], again["ranges"]) == (0, 3)
        # The ranges cover every active mentor exactly once.
        covered = 0
        for r in await c.fetch("SELECT * FROM scenario_sweep_range ORDER BY batch_no"):
            mentors = await fetch(
                c, "active_mentor_range", lower_mentor=r["lower_mentor"], upper_mentor=r["upper_mentor"]
            )
            covered += len(mentors)
        assert covered == 10

        async def claim(who: str, rules: str = "r1") -> Any:
            return await fetchrow(
                c, "claim_sweep_range", instance_id=who, lease_secs=30, rules_fingerprint=rules
            )

        assert await claim("x", rules="other") is None, "an instance with other rules does not help"
        x = await claim("x")
        assert x["batch_no"] == 0 and x["attempts"] == 1
        await c.execute("UPDATE scenario_sweep_range SET lease_until = now() WHERE batch_no = 0")
        y = await claim("y")
        assert y["batch_no"] == 0 and y["attempts"] == 2 and y["claim_token"] != x["claim_token"]

        async def complete(cl: Any, conn: Any, who: str) -> bool:
            return bool(
                await fetchval(
                    conn,
                    "complete_sweep_range",
                    sweep_key="p",
                    batch_no=cl["batch_no"],
                    claim_token=cl["claim_token"],
                    mentors=1,
                    stats={"per_rule": {"r": {"sent": 1}}},
                    instance_id=who,
                    first_mentor=cl["lower_mentor"] or uuid.UUID(int=1),
                    last_mentor=uuid.UUID(int=2),
                )
            )

        async with c.transaction():  # x lost its range: it can neither lock nor complete it
            assert (
                await fetchval(c, "lock_sweep_range", sweep_key="p", batch_no=0, claim_token=x["claim_token"])
                is None
            )
            assert not await complete(x, c, "x")

    async with pool.acquire() as c1, pool.acquire() as c2, pool.acquire() as c3:
        # y evaluates its range: the row is locked, and even with its lease lapsed nobody takes it.
        await c3.execute("UPDATE scenario_sweep_range SET lease_until = now() WHERE batch_no = 0")
        t1 = c1.transaction()
        await t1.start()
        assert (
            await fetchval(c1, "lock_sweep_range", sweep_key="p", batch_no=0, claim_token=y["claim_token"])
            == 0
        )
        z = await fetchrow(c3, "claim_sweep_range", instance_id="z", lease_secs=30, rules_fingerprint="r1")
        w = await fetchrow(c3, "claim_sweep_range", instance_id="w", lease_secs=30, rules_fingerprint="r1")
        assert z is not None and w is not None and {z["batch_no"], w["batch_no"]} == {1, 2}
        assert (
            await fetchrow(c3, "claim_sweep_range", instance_id="v", lease_secs=30, rules_fingerprint="r1")
            is None
        )
        # z completes range 1 and commits; then y and w complete the last two at once.
        assert await complete(z, c3, "z")
        t2 = c2.transaction()
        await t2.start()
        assert await complete(y, c1, "y")
        assert await complete(w, c2, "w")
        assert await fetchval(c1, "lock_shared_sweep", sweep_key="p")
        closes: list[str] = []

        async def last(conn: Any, who: str, tx: Any) -> None:
            if not await fetchval(conn, "lock_shared_sweep", sweep_key="p"):
                await tx.commit()
                return
            totals = await fetchrow(conn, "shared_sweep_totals", sweep_key="p")
            assert totals is not None
            if totals["remaining"] == 0:
                closed = await fetchrow(
                    conn,
                    "close_shared_sweep",
                    sweep_key="p",
                    stats={"n": totals["mentors"]},
                    retention_secs=86400,
                )
                if closed is not None:
                    closes.append(who)
            await tx.commit()

        async with anyio.create_task_group() as tg:
            tg.start_soon(last, c2, "w", t2)  # waits for y's lock on the period row
            await anyio.sleep(0.3)
            totals = await fetchrow(c1, "shared_sweep_totals", sweep_key="p")
            assert totals is not None and totals["remaining"] == 1  # w's completion is not committed yet
            await t1.commit()
        assert closes == ["w"]
    sweep = await pool.fetchrow("SELECT * FROM scenario_sweep WHERE sweep_key = 'p'")
    assert sweep["finished_at"] is not None and sweep["stats"] == {"n": 3}
    assert await pool.fetchval("SELECT count(*) FROM scenario_sweep_range WHERE state = 'done'") == 3


async def test_an_unfinished_period_is_abandoned_once_a_newer_one_begins(pool: Any) -> None:
    """One catch-up, not one per missed period: ranges of a period that a newer period followed
    (its daemons died, the fleet was down) are no longer claimed, as a leader-only sweep
    never resumes such a period either."""
    await _population(pool, 10)
    plan = {"rules": "r1", "full_as_of": "2026-01-01T00:00:00+00:00", "requested": []}
    now = dt.datetime.now(dt.UTC)
    async with pool.acquire() as c:
        old = await fetchrow(c, "claim_sweep", sweep_key="old", as_of=now, instance_id="o", lease_secs=30)
        assert old is not None
        await fetchrow(
            c, "open_shared_sweep", sweep_key="old", claim_token=old["claim_token"], batch_size=4, plan=plan
        )
        claimed = await fetchrow(
            c, "claim_sweep_range", instance_id="x", lease_secs=30, rules_fingerprint="r1"
        )
        assert claimed is not None and claimed["sweep_key"] == "old"
        later = now + dt.timedelta(hours=1)
        assert await fetchrow(c, "claim_sweep", sweep_key="new", as_of=later, instance_id="o", lease_secs=30)
        assert (
            await fetchrow(c, "claim_sweep_range", instance_id="x", lease_secs=30, rules_fingerprint="r1")
            is None
        )


async def test_only_the_holder_of_a_lost_range_takes_it_back_before_its_lease(pool: Any) -> None:
    """An instance whose range evaluation died with its connection takes the range back at once
    by its claim token (reclaim_sweep_range): nobody else may before the lease lapses, not even
    a claim under the same instance id; not while the lost transaction still holds the row; and
    the old token is fenced afterwards. A range taken over is no longer the holder's to take."""
    await _population(pool, 10)
    plan = {"rules": "r1", "full_as_of": "2026-01-01T00:00:00+00:00", "requested": []}
    async with pool.acquire() as c:
        period = await fetchrow(
            c, "claim_sweep", sweep_key="p", as_of=dt.datetime.now(dt.UTC), instance_id="o", lease_secs=30
        )
        assert period is not None
        await fetchrow(
            c, "open_shared_sweep", sweep_key="p", claim_token=period["claim_token"], batch_size=4, plan=plan
        )

        async def claim(who: str) -> Any:
            return await fetchrow(
                c, "claim_sweep_range", instance_id=who, lease_secs=30, rules_fingerprint="r1"
            )

        async def reclaim(cl: Any, conn: Any = c, rules: str = "r1") -> Any:
            return await fetchrow(
                conn,
                "reclaim_sweep_range",
                sweep_key="p",
                batch_no=cl["batch_no"],
                claim_token=cl["claim_token"],
                lease_secs=30,
                rules_fingerprint=rules,
            )

        x = await claim("x")
        assert x["batch_no"] == 0
        # x's evaluation died: its lease runs for 30 s, and no other claim gets range 0 meanwhile,
        # whoever asks (the same instance id included: only the token is the holder's).
        assert (await claim("y"))["batch_no"] == 1
        assert (await claim("x"))["batch_no"] == 2
        assert await claim("z") is None
        forged = {"batch_no": 0, "claim_token": uuid.uuid4()}
        assert await reclaim(forged) is None, "a token that is not the claim's takes nothing"
        assert await reclaim(x, rules="other") is None, "nor does the holder under other rules"
        # The holder takes it back at once, under a fresh token that fences the lost attempt.
        x2 = await reclaim(x)
        assert x2 is not None and x2["batch_no"] == 0 and x2["attempts"] == 2
        assert (
            x2["claim_token"] != x["claim_token"] and x2["sweep_key"] == "p" and x2["shared"]["rules"] == "r1"
        )
        async with c.transaction():
            assert (
                await fetchval(c, "lock_sweep_range", sweep_key="p", batch_no=0, claim_token=x["claim_token"])
                is None
            )
        assert await reclaim(x) is None, "the old token is spent"

    async with pool.acquire() as c1, pool.acquire() as c2:
        # An evaluation under x2 is running (it holds the row): not taken back from under it.
        t1 = c1.transaction()
        await t1.start()
        assert (
            await fetchval(c1, "lock_sweep_range", sweep_key="p", batch_no=0, claim_token=x2["claim_token"])
            == 0
        )
        assert await reclaim(x2, c2) is None
        await t1.rollback()  # ... and it dies: the row is free, the claim still x2's
        x3 = await reclaim(x2, c2)
        assert x3 is not None and x3["attempts"] == 3
        # Once the lease lapses another instance takes the range over: then it is no longer x's.
        await c2.execute("UPDATE scenario_sweep_range SET lease_until = now() WHERE batch_no = 0")
        w = await fetchrow(c2, "claim_sweep_range", instance_id="w", lease_secs=30, rules_fingerprint="r1")
        assert w is not None and w["batch_no"] == 0 and w["attempts"] == 4
        assert await reclaim(x3, c2) is None
