"""A reload during a full sweep must not cost the new rule its first sweep (issue 16, item 7).

The sweep runs with the rules it started with; it used to record the fingerprint of the rules
loaded meanwhile, so the next sweep compared equal, went incremental, and a rule the reload
added was never fully evaluated (its mentors were not "due" in the incremental window). The
race is reproduced deterministically: the reload happens inside the sweep, between batches,
through the scheduler's own per-batch hook — for a shared full sweep (runtime/shared_sweep.py),
its per-range one: the ranges the leader evaluates run under the rules the period started with.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from scenario_engine.config import Settings
from scenario_engine.db.connect import connect
from scenario_engine.engine import Engine
from scenario_engine.runtime.fleet import rules_fingerprint
from scenario_engine.runtime.scheduler import LEADER_LOCK_KEY, Scheduler, _Claim
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.scenarios.certification import CertificationExpiryRule
from scenario_engine.scenarios.inactivity import InactivityRule
from scenario_engine.scenarios.rules import Rules
from tests.support.factories import add_certification, add_mentor

MENTORS = 30
BATCH = 10
BEFORE = Rules(daily_cap=10, inactivity=[InactivityRule(name="inactive_21d", threshold_days=21)])
AFTER = Rules(
    daily_cap=10,
    inactivity=BEFORE.inactivity,
    certification_expiry=[CertificationExpiryRule(name="cert_90", tiers_days=[90])],
)


class ReloadingScheduler(Scheduler):
    """Replaces the engine's rules (as SIGHUP does) right before the sweep's second batch."""

    async def _before_batch(
        self, claim: _Claim, lock_conn: asyncpg.Connection[Any], mentors: list[uuid.UUID]
    ) -> bool:
        if claim.batches == 1 and self.engine.rules is BEFORE:
            self.engine.replace_rules(AFTER)
        return await super()._before_batch(claim, lock_conn, mentors)

    async def _work_shared(self, rules: Rules) -> bool:
        """The same reload in a shared full sweep: before its second range."""
        self.ranges_started = getattr(self, "ranges_started", 0) + 1
        if self.ranges_started == 2 and self.engine.rules is BEFORE:
            self.engine.replace_rules(AFTER)
        return await super()._work_shared(rules)


@pytest.mark.parametrize("shared", [False, True], ids=["leader-only", "shared"])
async def test_a_reload_mid_sweep_leaves_the_next_sweep_full_for_the_new_rule(
    db_url: str, pool: asyncpg.Pool[Any], shared: bool
) -> None:
    now = dt.datetime.now(dt.UTC)
    for _ in range(MENTORS):  # each certified until 60 days from now: inside cert_90's first tier
        mentor = await add_mentor(pool, joined_at=now - dt.timedelta(days=10))
        await add_certification(pool, mentor, expires_at=now + dt.timedelta(days=60))
    engine = Engine(pool, BEFORE, sweep_batch=BATCH)
    scheduler = ReloadingScheduler(
        db_url,
        pool,
        engine,
        RuntimeState(instance_id="reloader"),
        Settings(full_sweep_interval_hours=24, sweep_batch_size=BATCH, sweep_shared=shared),
    )
    lock_conn = await connect(db_url)
    try:
        assert await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK_KEY)
        await scheduler._sweep_period("first", lock_conn, now)
        assert engine.rules is AFTER, "the reload happened during the sweep"
        first: Any = await pool.fetchrow(
            "SELECT stats, finished_at FROM scenario_sweep WHERE sweep_key = 'first'"
        )
        assert first["finished_at"] is not None
        # What the sweep ran (BEFORE, for all three batches), not what was loaded at its end.
        assert first["stats"]["rules"] == rules_fingerprint(BEFORE)
        assert first["stats"]["mode"] == "full"
        assert "cert_90" not in first["stats"]["per_rule"]

        await scheduler._sweep_period("second", lock_conn, now + dt.timedelta(hours=1))
    finally:
        await lock_conn.close()
    second: Any = await pool.fetchrow("SELECT stats FROM scenario_sweep WHERE sweep_key = 'second'")
    assert second["stats"]["mode"] == "full", "the rules changed since the last sweep: a full one"
    assert second["stats"]["rules"] == rules_fingerprint(AFTER)
    assert second["stats"]["per_rule"]["cert_90"]["sent"] == MENTORS
    written = "SELECT count(*) FROM scenario_notification WHERE rule_name = 'cert_90'"
    assert await pool.fetchval(written) == MENTORS
