"""A full sweep shared by every running instance (issue 18, item 5; sql/0026).

One leader used to evaluate a whole full period, so a second daemon added no sweep
throughput. Now the instance that claims a full period (runtime/scheduler.py) writes the
period's *ranges* — consecutive keyset ranges of active mentor ids, ``sweep_batch_size``
mentors each when written — and every instance whose rules match the period's claims ranges
with ``FOR UPDATE SKIP LOCKED`` and evaluates them. The per-range evaluation is the sweep
batch's own (``Engine.evaluate_sweep_range``); what is shared is how batches are enumerated,
claimed and recorded:

* **exactly once** — a range's evaluation is one transaction that first locks the range row
  and checks its claim token (``lock_sweep_range``), then writes the decisions and marks the
  range done (``complete_sweep_range``). A claim taken over after its lease lapsed fails the
  check, so its owner commits nothing; the row lock keeps a running evaluation from being
  taken over at all (``claim_sweep_range`` skips locked rows), however long it runs. The
  notification ledger's dedup keys would stop a second notification anyway; this also stops
  a second count.
* **a dead instance's range** — killed between its claim and its commit, it leaves the range
  ``claimed``: its transaction died with its connection, and the range is claimed again once
  the lease (``SCENARIO_SWEEP_LEASE_SECONDS``) has lapsed.
* **ranges this instance lost to the database** — an evaluation's connection died (a
  restart, a terminated backend) or the server refused a statement: the range stays
  ``claimed`` under this instance's token, so the instance takes it back at once
  (``reclaim_sweep_range``) when it next works ranges, rather than waiting out its own lease
  (which kept a reconnected leader unready that long, its period held open by one range).
  An instance works up to ``SCENARIO_SWEEP_LANES`` ranges at once (runtime/scheduler.py), so
  it remembers every range it lost (``_lost``), and each is taken back first, by whichever
  lane asks next. Only the holder of that token can; any other claim still waits for the
  lease, and the fresh token fences the lost transaction as a takeover would. The lost ranges
  are *settled* once each has committed when taken back, or is definitely no longer ours
  (taken over, its period closed: ``reclaim_sweep_range`` returns nothing); the commit that
  settles the last of them is the scheduler's sign that the condition has cleared.
* **closed and counted once** — each completion then locks the period row
  (``lock_shared_sweep``) and reads what remains (``shared_sweep_totals``, a fresh snapshot
  after the lock): the completion that leaves nothing remaining closes the period with the
  summed counts (``close_shared_sweep``). The instance that closed it resolves outcomes,
  answers full-sweep requests and counts the sweep in its metrics; nobody else does.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from scenario_engine.db.queries import fetch, fetchrow, fetchval
from scenario_engine.engine import Engine
from scenario_engine.evaluate import SeenRules
from scenario_engine.logs import get_logger
from scenario_engine.runtime.fleet import rules_fingerprint
from scenario_engine.scenarios.rules import Rules
from scenario_engine.sweep import SweepResult

log = get_logger("scenario_engine.shared_sweep")


@dataclass(frozen=True)
class RangeClaim:
    """This instance's claim on one range of a shared period."""

    key: str
    batch_no: int
    lower: uuid.UUID | None
    upper: uuid.UUID | None
    token: uuid.UUID
    attempts: int
    as_of: dt.datetime
    plan: dict[str, Any]


@dataclass
class ClosedPeriod:
    """A shared period this instance closed: what the scheduler records and counts, once."""

    key: str
    as_of: dt.datetime
    seconds: float
    mentors: int
    plan: dict[str, Any]
    record: dict[str, Any]
    per_rule: dict[str, Counter[str]] = field(default_factory=dict)


class _TakenOver(Exception):
    """The range's claim is no longer ours: evaluate nothing, write nothing."""


def range_stats(part: SweepResult) -> dict[str, Any]:
    return {"per_rule": {r: dict(c) for r, c in part.per_rule.items()}, "quarantined": len(part.quarantined)}


def summed(stats: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """The period's per-rule counts: the sum of its ranges' (each counted once, when done)."""
    out: dict[str, Counter[str]] = {}
    for one in stats:
        for rule, counts in (one or {}).get("per_rule", {}).items():
            out.setdefault(rule, Counter()).update({k: int(v) for k, v in counts.items()})
    return out


def period_rules(plan: dict[str, Any]) -> str:
    """The fingerprint a period records: its plan's, unless a later owner adopted it under other
    rules (then no single rule set ran it, and the next sweep must be a full one)."""
    return str(plan["rules"]) if "adopted_from" not in plan else f"mixed:{plan['rules']}"


@dataclass(frozen=True)
class Worked:
    """What one ``work_one`` did: whether it had a range, the period its completion closed, and
    whether it settled the last of the ranges this instance had lost to database errors, at
    least one of which it took back and committed (that commit is the scheduler's sign that
    the condition which failed them has cleared)."""

    worked: bool
    closed: ClosedPeriod | None = None
    recovered: bool = False


class SharedSweeper:
    """Claims, evaluates and completes ranges of shared periods for one instance."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        engine: Engine,
        instance_id: str,
        lease_seconds: float,
        retention: dt.timedelta,
    ):
        self.pool = pool
        self.engine = engine
        self.instance_id = instance_id
        self.lease_seconds = lease_seconds
        self.retention = retention
        # Claims whose evaluation failed with an error (not a takeover), by range: each range
        # stays claimed under that token, and this instance takes it back first, at once.
        self._lost: dict[tuple[str, int], RangeClaim] = {}
        # Ranges lost and not yet settled: in ``_lost``, or taken back and not yet committed.
        self._unsettled: set[tuple[str, int]] = set()
        # Whether a range taken back has committed since the last settlement.
        self._recommitted = False

    @property
    def lost(self) -> list[RangeClaim]:
        """The ranges lost to database errors and not yet taken back (oldest first)."""
        return list(self._lost.values())

    @property
    def unsettled(self) -> int:
        """How many lost ranges are neither committed since nor definitely not ours."""
        return len(self._unsettled)

    @contextlib.asynccontextmanager
    async def _conn(self, conn: Any | None) -> AsyncIterator[Any]:
        """``conn`` (a lane's own connection), or one from the pool for the statement."""
        if conn is not None:
            yield conn
            return
        async with self.pool.acquire() as acquired:
            yield acquired

    def _settled(self) -> bool:
        """True once, when no lost range is left unsettled and one of them was committed."""
        if self._unsettled or not self._recommitted:
            return False
        self._recommitted = False
        return True

    async def open(
        self, key: str, claim_token: uuid.UUID, batch_size: int, plan: dict[str, Any]
    ) -> dict[str, Any]:
        """Writes the period's ranges unless they exist; returns the period's plan as stored.
        A plan written under other rules (its opener died, the rules changed since) is adopted:
        its remaining ranges are evaluated under this instance's rules."""
        async with self.pool.acquire() as conn:
            row = await fetchrow(
                conn,
                "open_shared_sweep",
                sweep_key=key,
                claim_token=claim_token,
                batch_size=batch_size,
                plan=plan,
            )
            assert row is not None
            stored: dict[str, Any] = await fetchval(conn, "shared_sweep_plan", sweep_key=key) or {}
            if stored and stored.get("rules") != plan["rules"]:
                stored = (
                    await fetchval(
                        conn,
                        "adopt_shared_sweep",
                        sweep_key=key,
                        claim_token=claim_token,
                        rules=plan["rules"],
                    )
                    or stored
                )
        log.info(
            "sweep_shared",
            sweep_key=key,
            ranges=int(row["ranges"]),
            opened=bool(row["written"]),
            adopted=stored.get("adopted_from") is not None,
        )
        return stored

    async def claim(self, rules: Rules, conn: Any | None = None) -> RangeClaim | None:
        async with self._conn(conn) as conn:
            row = await fetchrow(
                conn,
                "claim_sweep_range",
                instance_id=self.instance_id,
                lease_secs=self.lease_seconds,
                rules_fingerprint=rules_fingerprint(rules),
            )
        return None if row is None else _range_claim(row)

    async def reclaim(self, rules: Rules, conn: Any | None = None) -> RangeClaim | None:
        """A range this instance lost to a database error (the oldest first), claimed again under
        a fresh token if it still holds that claim (nobody took it over, the period is open and
        the latest, the rules are the same). A lost range that is no longer ours is settled
        and left to its lease, and the next one asked for; None when none is left to take."""
        while self._lost:
            ident, lost = next(iter(self._lost.items()))
            del self._lost[ident]  # asked once: taken back now, or no longer ours to take back early
            try:
                async with self._conn(conn) as c:
                    row = await fetchrow(
                        c,
                        "reclaim_sweep_range",
                        sweep_key=lost.key,
                        batch_no=lost.batch_no,
                        claim_token=lost.token,
                        lease_secs=self.lease_seconds,
                        rules_fingerprint=rules_fingerprint(rules),
                    )
            except BaseException:
                self._lost[ident] = lost  # not asked after all: still ours to take back
                raise
            if row is None:
                self._unsettled.discard(ident)
                log.info("sweep_range_not_reclaimed", sweep_key=lost.key, batch_no=lost.batch_no)
                continue
            claim = _range_claim(row)
            log.info(
                "sweep_range_reclaimed",
                sweep_key=claim.key,
                batch_no=claim.batch_no,
                attempts=claim.attempts,
                lost=len(self._lost),
            )
            return claim
        return None

    async def work_one(
        self, rules: Rules, conn: Any | None = None, claimed: asyncio.Event | None = None
    ) -> Worked:
        """Claims and evaluates one range under ``rules`` — first one this instance lost to a
        database error, if it can still take one back. ``conn``: the lane's own connection
        (else the pool's, statement by statement); ``claimed`` is set once there is a range."""
        recovered = await self.reclaim(rules, conn)
        claim = recovered or await self.claim(rules, conn)
        if claim is None:
            return Worked(False, recovered=self._settled())
        if claimed is not None:
            claimed.set()
        ident = (claim.key, claim.batch_no)
        try:
            closed = await self.evaluate(claim, rules, conn)
        except _TakenOver:
            log.warning("sweep_range_taken_over", sweep_key=claim.key, batch_no=claim.batch_no)
            self._unsettled.discard(ident)  # definitely not ours
            return Worked(True, recovered=self._settled())
        except BaseException as exc:
            # The transaction rolled back (or died with its connection): nothing was written and
            # the range is still claimed under this token. Ours to take back at the next try.
            # (A cancelled evaluation — the daemon stopping — is left to its lease, as before.)
            if isinstance(exc, Exception):
                self._lost[ident] = claim
                self._unsettled.add(ident)
            raise
        if recovered is not None and ident in self._unsettled:
            self._unsettled.discard(ident)
            self._recommitted = True
        return Worked(True, closed, self._settled())

    async def evaluate(self, claim: RangeClaim, rules: Rules, lane: Any | None = None) -> ClosedPeriod | None:
        """The range in one transaction (on ``lane``, else a pool connection): lock and check
        the claim, evaluate, complete; and, if it was the last one, close the period. What the
        range records of the rules (a first sighting, an experiment) the engine remembers only
        once it has committed (``Engine.provisional_seen``)."""
        seen = self.engine.provisional_seen()
        async with self._conn(lane) as conn:
            async with conn.transaction():
                closed = await self._evaluate_in(conn, claim, rules, seen)
            self.engine.adopt_seen(seen)
            return closed

    async def _evaluate_in(
        self, conn: Any, claim: RangeClaim, rules: Rules, seen: SeenRules
    ) -> ClosedPeriod | None:
        if (
            await fetchval(
                conn,
                "lock_sweep_range",
                sweep_key=claim.key,
                batch_no=claim.batch_no,
                claim_token=claim.token,
            )
            is None
        ):
            raise _TakenOver
        rows = await fetch(conn, "active_mentor_range", lower_mentor=claim.lower, upper_mentor=claim.upper)
        mentors = [r["id"] for r in rows]
        part = SweepResult(as_of=claim.as_of, dry_run=False, mentors=len(mentors))
        if mentors:
            part.count(await self.engine.evaluate_sweep_range(conn, rules, claim.as_of, mentors, seen))
        done = await fetchval(
            conn,
            "complete_sweep_range",
            sweep_key=claim.key,
            batch_no=claim.batch_no,
            claim_token=claim.token,
            mentors=len(mentors),
            stats=range_stats(part),
            instance_id=self.instance_id,
            first_mentor=mentors[0] if mentors else None,
            last_mentor=mentors[-1] if mentors else None,
        )
        if not done:  # cannot happen while lock_sweep_range's row lock holds; never commit then
            raise _TakenOver
        log.debug("sweep_range_done", sweep_key=claim.key, batch_no=claim.batch_no, mentors=len(mentors))
        if not await fetchval(conn, "lock_shared_sweep", sweep_key=claim.key):
            return None  # closed already (cannot happen while a range was not done)
        totals = await fetchrow(conn, "shared_sweep_totals", sweep_key=claim.key)
        assert totals is not None
        if totals["remaining"]:
            return None
        plan = await fetchval(conn, "shared_sweep_plan", sweep_key=claim.key) or claim.plan
        per_rule = summed(list(totals["stats"]))
        record = {
            "mode": "full",
            "rules": period_rules(plan),
            "full_as_of": plan.get("full_as_of", claim.as_of.isoformat()),
            "per_rule": {r: dict(c) for r, c in per_rule.items()},
            "shared": {"instances": int(totals["instances"]), "mentors": int(totals["mentors"])},
        }
        closed = await fetchrow(
            conn,
            "close_shared_sweep",
            sweep_key=claim.key,
            stats=record,
            retention_secs=self.retention.total_seconds(),
        )
        if closed is None:
            return None
        return ClosedPeriod(
            key=claim.key,
            as_of=closed["as_of"],
            seconds=float(closed["seconds"]),
            mentors=int(totals["mentors"]),
            plan=plan,
            record=record,
            per_rule=per_rule,
        )


def _range_claim(row: Any) -> RangeClaim:
    return RangeClaim(
        key=row["sweep_key"],
        batch_no=row["batch_no"],
        lower=row["lower_mentor"],
        upper=row["upper_mentor"],
        token=row["claim_token"],
        attempts=row["attempts"],
        as_of=row["as_of"],
        plan=row["shared"],
    )
