"""Leader election and the scheduled sweep.

Leadership is a session advisory lock on a dedicated connection. The lock vanishes
silently with its connection, so the leader asks the server before each sweep *and before
each batch* whether it still holds it, and treats any error on that connection as lost
leadership. Each period has a sweep key recorded in ``scenario_sweep``: a finished period
is never swept again. After downtime only the current period is swept: one catch-up, not
one per missed period.

Leadership alone cannot keep two processes off one period: a leader whose lock connection
died keeps sweeping through pool connections until it next asks. So a claim is fenced: it
has an owner, a claim token and a lease (``SCENARIO_SWEEP_LEASE_SECONDS``) that the owner
renews before every batch with a conditional UPDATE; when the renewal or the lock check
fails, the owner stops before that batch and gives the period up. Another instance takes
an unfinished period over only when its lease has lapsed, and completes it at its
original ``as_of``. Each batch is recorded in ``scenario_sweep_batch`` (who, which mentor
range, when), so "no batch evaluated by two instances at once" can be checked afterwards.
The lease must stay well above one batch's duration: renewal happens between batches.

A *full* period is shared (``SCENARIO_SWEEP_SHARED``, runtime/shared_sweep.py): its owner
writes the period's mentor ranges and then works them like every other instance — followers
claim ranges between their tries for the lock — while it keeps its period lease renewed.
Each range is fenced on its own claim token, so losing leadership or the period lease only
stops the owner from watching the period; the completion of the last range closes it.
Incremental periods (small due sets) stay with the leader. An instance works up to
``SCENARIO_SWEEP_LANES`` ranges at once (``_work_shared_lanes``), each lane on its own pool
connection — taken only if the pool can spare it (``Engine.spare_connections``) — and each
range its own transaction under its own claim, so one range's Python runs while another's
statements do. Before each range a lane asks the same gate the one-range loop asked: the
stop flag, and for the period's owner its leader lock and period lease.

The scheduler's database condition (on /readyz) clears when a round succeeds: a period swept
or closed, a follower's lock try, or the commit that settles the ranges this instance had
lost to the database and took back at once (runtime/shared_sweep.py: every one of them
committed, or definitely no longer ours) — so a restart in the middle of a long shared sweep
does not keep a reconnected daemon unready until the sweep ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import asyncpg

from scenario_engine.config.settings import Settings
from scenario_engine.db.clock import database_now
from scenario_engine.db.connect import connect
from scenario_engine.db.errors import DB_ERRORS, condition_of, first_leaf
from scenario_engine.db.queries import bind, execute, fetchrow, fetchval, query
from scenario_engine.engine import Engine, SweepResult
from scenario_engine.logs import get_logger
from scenario_engine.runtime.backoff import Backoff
from scenario_engine.runtime.fleet import rules_fingerprint
from scenario_engine.runtime.shared_sweep import ClosedPeriod, SharedSweeper
from scenario_engine.runtime.state import RuntimeState
from scenario_engine.runtime.worker import sleep_or_stop
from scenario_engine.scenarios.rules import Rules
from scenario_engine.sweep import settle_lanes

LEADER_LOCK_KEY = 0x5CE7_1EAD  # any fixed positive bigint shared by all engines
# How long the per-batch sweep ledger is kept: long enough to investigate an incident.
BATCH_LEDGER_RETENTION = dt.timedelta(days=7)
log = get_logger("scenario_engine.scheduler")

LEASE_HINT = "a batch outlasted SCENARIO_SWEEP_LEASE_SECONDS: raise it or lower SCENARIO_SWEEP_BATCH_SIZE"
StopReason = Literal["stopping", "leadership_lost", "lease_lost"]
# A shared-sweep lane's own connection and its "has a range" event, seen by ``_work_shared`` in
# that lane's task (each task runs in its own copy of the context).
_LANE: contextvars.ContextVar[tuple[Any, asyncio.Event] | None] = contextvars.ContextVar(
    "shared_sweep_lane", default=None
)


class LeadershipLost(Exception):
    """The leader lock is gone (its connection died or the server no longer lists it)."""


@dataclass
class _Claim:
    """This instance's claim on one period, as renewed before each batch."""

    key: str
    token: uuid.UUID
    batches: int = 0
    stopped: StopReason | None = None


def current_period(settings: Settings, now: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    """(sweep key, period start, next period start) for the configured schedule."""
    if settings.sweep_daily_at is not None:
        at = settings.sweep_daily_at
        today = dt.datetime.combine(now.date(), at, tzinfo=dt.UTC)
        start = today if now >= today else today - dt.timedelta(days=1)
        return f"daily@{at.strftime('%H:%M')}:{start.date().isoformat()}", start, start + dt.timedelta(days=1)
    interval = settings.sweep_interval_seconds
    index = math.floor(now.timestamp() / interval)
    start = dt.datetime.fromtimestamp(index * interval, dt.UTC)
    return f"every{interval:g}s:{index}", start, start + dt.timedelta(seconds=interval)


class Scheduler:
    def __init__(
        self, dsn: str, pool: asyncpg.Pool[Any], engine: Engine, state: RuntimeState, settings: Settings
    ):
        self.dsn = dsn
        self.pool = pool
        self.engine = engine
        self.state = state
        self.settings = settings
        self._waiting_for: str | None = None  # refused period already looked at (finished or owned)
        # Reset only once a round succeeds, so that a lasting condition (a read-only server
        # accepts the connection, then refuses the claim) is retried ever more slowly.
        self._backoff = Backoff(maximum=settings.leader_retry_seconds)
        self._closed_here: str | None = None  # the last shared period this instance closed
        self.shared = SharedSweeper(
            pool, engine, state.instance_id, settings.sweep_lease_seconds, BATCH_LEDGER_RETENTION
        )

    def _succeeded(self) -> None:
        """A round of following or leading went through: any condition has cleared."""
        self._backoff.reset()
        self.state.set_condition("scheduler", None)

    async def run(self) -> None:
        """Lead or follow until stopped. A lost database is retried; so is a sweep that fails
        for any other reason (logged as sweep_failed, counted, retried with a growing pause):
        restarting the process could not fix a sweep that fails deterministically, and the
        event path must keep working meanwhile — a crash loop would stop both."""
        backoff = self._backoff
        failures = Backoff(initial=5.0, maximum=300.0)
        while not self.state.stopping.is_set():
            conn: asyncpg.Connection[Any] | None = None
            pause: float | None = None
            try:
                conn = await connect(self.dsn, application_name="scenario-engine leader")
                await self._follow_or_lead(conn)
                failures.reset()
            except LeadershipLost as exc:
                log.warning("leadership_lost", reason=str(exc))
            except Exception as exc:
                condition = condition_of(exc)
                if condition is None:
                    log.error("sweep_failed", error=repr(first_leaf(exc)), exc_info=exc)
                    self.state.metrics.sweeps.labels("failed").inc()
                    pause = failures.next_delay()
                else:  # a condition of the database: backed off, named on /readyz until it clears
                    self.state.set_condition("scheduler", condition)
                    log.warning(
                        "leadership_lost" if self.state.leader else "leader_connection_failed",
                        condition=condition.name,
                        error=repr(first_leaf(exc)),
                    )
            finally:
                self.state.set_leader(False)
                if conn is not None:
                    await self._release(conn)
            if not self.state.stopping.is_set():
                await sleep_or_stop(self.state.stopping, pause if pause is not None else backoff.next_delay())

    async def _release(self, conn: asyncpg.Connection[Any]) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            try:
                if not conn.is_closed():
                    await conn.close()  # closing the session releases the lock
            except Exception:
                conn.terminate()

    async def _follow_or_lead(self, conn: asyncpg.Connection[Any]) -> None:
        while not self.state.stopping.is_set():
            if not self.state.leader:
                if await fetchval(conn, "try_leader_lock", lock_key=LEADER_LOCK_KEY):
                    self.state.set_leader(True)
                    log.info("leadership_acquired", instance=self.state.instance_id)
                else:
                    self.state.next_sweep_at = None
                    self._succeeded()
                    await self._help(self.settings.leader_retry_seconds)
                    continue
            if not await fetchval(conn, "holds_leader_lock", lock_key=LEADER_LOCK_KEY):
                log.warning("leadership_lost", reason="lock no longer held")
                self.state.set_leader(False)
                continue
            # The period and the sweep's as_of by the database's clock (runtime/clock.py).
            now = await database_now(conn)
            key, _start, next_start = current_period(self.settings, now)
            await self._sweep_period(key, conn, now)
            self._succeeded()
            self.state.next_sweep_at = next_start
            # Wake at the next period, but re-check leadership regularly meanwhile.
            wait = (next_start - self.state.clock.server_now()).total_seconds()
            # (working ranges of shared periods meanwhile: one whose owner died waits for its lease)
            await self._help(max(0.05, min(wait, self.settings.leader_retry_seconds)))

    async def _sweep_period(self, key: str, lock_conn: asyncpg.Connection[Any], as_of: dt.datetime) -> None:
        """Claim and sweep one period at ``as_of`` (the server's clock), under the rules loaded
        now: a SIGHUP during the sweep changes neither what it runs nor what it records, so a
        rule the reload added gets the full sweep that a rules change calls for."""
        rules = self.engine.rules
        lease = self.settings.sweep_lease_seconds
        async with self.pool.acquire() as conn:
            claimed = await fetchrow(
                conn,
                "claim_sweep",
                sweep_key=key,
                as_of=as_of,
                instance_id=self.state.instance_id,
                lease_secs=lease,
            )
            if claimed is None:
                await self._claim_refused(conn, key)
                return
        self._waiting_for = None
        claim = _Claim(key=key, token=claimed["claim_token"])
        as_of = claimed["as_of"]  # an unfinished period is completed at its original instant
        since, full_as_of = await self._incremental_start(as_of, rules)
        requested = await self._full_sweep_requests()
        if requested:  # a watched table was truncated: everyone is due (sql/0023)
            since, full_as_of = None, None
        mode = "full" if since is None else "incremental"
        log.info(
            "sweep_started",
            sweep_key=key,
            as_of=as_of.isoformat(),
            mode=mode,
            **({"full_sweep_requested_by": sorted(set(requested.values()))} if requested else {}),
        )

        if self.settings.sweep_shared and (mode == "full" or await self._opened_shared(key)):
            await self._sweep_shared(claim, lock_conn, as_of, rules, full_as_of, requested)
            return

        async def before_batch(mentors: list[uuid.UUID]) -> bool:
            return await self._before_batch(claim, lock_conn, mentors)

        try:
            result = await self.engine.run_scheduled_evaluation(
                as_of, rules=rules, before_batch=before_batch, since=since
            )
        except BaseException:
            if claim.stopped is not None:  # refused a batch, then a lane failed: give up all the same
                await self._give_up(claim)
            raise
        if result.interrupted:
            # The lease is let go only now that no lane has a batch in hand (a refused batch
            # stops the lanes after theirs): the next owner never overlaps this one's batches.
            await self._give_up(claim)
            if claim.stopped == "stopping":
                self.state.metrics.sweeps.labels("interrupted").inc()
                log.info("sweep_interrupted", sweep_key=key, mentors=result.mentors)
                return
            self.state.metrics.sweeps.labels("fenced").inc()
            log.warning(
                "sweep_fenced",
                sweep_key=key,
                reason=claim.stopped,
                mentors=result.mentors,
                batches=claim.batches,
                hint=None if claim.stopped == "leadership_lost" else LEASE_HINT,
            )
            if claim.stopped == "leadership_lost":
                raise LeadershipLost("leader lock lost mid-sweep")
            return
        stats = {rule: dict(c) for rule, c in result.per_rule.items()}
        record = {
            "mode": mode,
            "rules": rules_fingerprint(rules),  # what this sweep ran, not what is loaded now
            "full_as_of": (full_as_of or as_of).isoformat(),
            "per_rule": stats,
        }
        async with self.pool.acquire() as conn:
            finished = await fetchval(
                conn,
                "finish_sweep",
                sweep_key=key,
                stats=record,
                claim_token=claim.token,
                retention_secs=BATCH_LEDGER_RETENTION.total_seconds(),
            )
        if finished is None:  # another instance took the period over after our last batch
            self.state.metrics.sweeps.labels("fenced").inc()
            log.warning(
                "sweep_fenced", sweep_key=key, reason="lease_lost", mentors=result.mentors, hint=LEASE_HINT
            )
            return
        if requested:
            async with self.pool.acquire() as conn:
                await execute(conn, "full_sweep_requests_answered", ids=sorted(requested))
        self._record(key, result, stats, mode, rules)

    async def _opened_shared(self, key: str) -> bool:
        """Whether a previous owner opened this period as a shared one (then it stays shared)."""
        async with self.pool.acquire() as conn:
            return await fetchval(conn, "shared_sweep_plan", sweep_key=key) is not None

    async def _sweep_shared(
        self,
        claim: _Claim,
        lock_conn: asyncpg.Connection[Any],
        as_of: dt.datetime,
        rules: Rules,
        full_as_of: dt.datetime | None,
        requested: dict[int, str],
    ) -> None:
        """Opens the period's ranges and works them alongside every other instance, renewing the
        period lease, until the period is closed (by whichever instance completes its last range).
        Stopping, a lost lock or a lost period lease end the watch, as before a batch of a
        leader-only sweep; ranges in flight are fenced by their own claims either way."""
        plan = {
            "rules": rules_fingerprint(rules),
            "full_as_of": (full_as_of or as_of).isoformat(),
            "requested": sorted(requested),
            "batch_size": self.settings.sweep_batch_size,
        }
        await self.shared.open(claim.key, claim.token, self.settings.sweep_batch_size, plan)
        idle = min(0.5, self.settings.sweep_lease_seconds / 4)
        closed = False

        async def before_range(lane: Any) -> bool:
            """Whether a lane may take another range: as before each range of the one-range
            loop — not stopping, the leader lock held, the period open and its lease renewed
            (asked on the lane's own connection)."""
            nonlocal closed
            if claim.stopped is not None or closed:
                return False
            if self.state.stopping.is_set():
                claim.stopped = "stopping"
                return False
            if not await self._holds_lock(lock_conn):
                claim.stopped = "leadership_lost"
                return False
            guard = await fetchrow(
                lane,
                "guard_shared_sweep",
                sweep_key=claim.key,
                claim_token=claim.token,
                lease_secs=self.settings.sweep_lease_seconds,
            )
            if guard is None or guard["finished"]:
                closed = True
                return False
            if not guard["renewed"]:
                claim.stopped = "lease_lost"
                return False
            return True

        while True:
            worked = await self._work_shared_lanes(rules, before_range)
            if closed and claim.stopped is None:
                if claim.key != self._closed_here:  # the instance that closed it recorded it
                    log.info("sweep_closed_elsewhere", sweep_key=claim.key)
                return
            if claim.stopped is not None:
                break
            if not worked:
                await sleep_or_stop(self.state.stopping, idle)  # ranges in flight elsewhere
        await self._give_up(claim)
        if claim.stopped == "stopping":
            self.state.metrics.sweeps.labels("interrupted").inc()
            log.info("sweep_interrupted", sweep_key=claim.key, shared=True)
            return
        self.state.metrics.sweeps.labels("fenced").inc()
        log.warning("sweep_fenced", sweep_key=claim.key, reason=claim.stopped, shared=True)
        if claim.stopped == "leadership_lost":
            raise LeadershipLost("leader lock lost mid-sweep")

    async def _help(self, seconds: float) -> None:
        """A follower's wait for the lock: works ranges of shared periods meanwhile (under the
        rules loaded now), looking for one at least every second."""
        if not self.settings.sweep_shared:
            await sleep_or_stop(self.state.stopping, seconds)
            return
        deadline = time.monotonic() + seconds

        async def before_range(_lane: Any) -> bool:
            return not self.state.stopping.is_set() and time.monotonic() < deadline

        while not self.state.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if not await self._work_shared_lanes(self.engine.rules, before_range):
                await sleep_or_stop(self.state.stopping, min(1.0, deadline - time.monotonic()))

    async def _work_shared_lanes(self, rules: Rules, before_range: Callable[[Any], Awaitable[bool]]) -> bool:
        """Ranges of shared periods until none is left to claim or ``before_range`` refuses, up
        to ``sweep_lanes`` at once: each lane on its own connection, the extra ones only if the
        pool can spare them now and still keep one free (``Engine.spare_connections``; else
        fewer lanes, one at least). Each lane asks ``before_range`` (one lane at a time) before
        each range it takes. An error in a lane stops the others from taking another range; they
        finish (commit or roll back) the range in hand — each is its own transaction under its
        own claim — and the first error is then raised. Cancelled (the daemon stopping hard),
        the lanes are cancelled and waited for, so no connection goes back to the pool still
        running a statement. True if any range was worked."""
        gate = asyncio.Lock()
        failed = False
        worked = False
        # A lane has a range: the others may be worth their connections. (Not "has committed
        # one": after a restart the first range taken back may be one that hangs, and the other
        # lost ranges must not wait for it. What a range records of the rules — a first sighting,
        # an experiment — another lane sees only once it has committed: shared_sweep.py.)
        claimed = asyncio.Event()

        async def lane(conn: Any) -> None:
            nonlocal failed, worked
            _LANE.set((conn, claimed))
            try:
                while True:
                    async with gate:
                        if failed or not await before_range(conn):
                            return
                    if not await self._work_shared(rules):
                        return
                    worked = True
            except BaseException:
                failed = True
                raise

        async def more_lanes() -> None:
            """The extra lanes, once the first has a range (an idle poll takes no more)."""
            got = asyncio.ensure_future(claimed.wait())
            try:  # (asyncio.wait never cancels what it waits for)
                await asyncio.wait([first_lane, got], return_when=asyncio.FIRST_COMPLETED)
            finally:
                got.cancel()
            if first_lane.done() or failed:
                return
            async with self.engine.spare_lanes(self.settings.sweep_lanes - 1) as more:
                extra = [
                    asyncio.create_task(lane(c), name=f"shared-sweep-lane-{i}")
                    for i, c in enumerate(more, start=1)
                ]
                lanes.extend(extra)
                if not extra:
                    return
                try:
                    await asyncio.wait(extra)
                except asyncio.CancelledError:
                    await settle_lanes(extra)
                    raise

        async with self.pool.acquire() as first:
            first_lane = asyncio.create_task(lane(first), name="shared-sweep-lane-0")
            lanes: list[asyncio.Task[None]] = [first_lane]
            tasks = [first_lane]
            if self.settings.sweep_lanes > 1:
                tasks.append(asyncio.create_task(more_lanes(), name="shared-sweep-lanes"))
            try:
                await asyncio.wait(tasks)
            except asyncio.CancelledError:
                await settle_lanes(tasks)
                raise
        failures = [t.exception() for t in [*lanes, *tasks[1:]] if not t.cancelled()]
        for error in failures:  # the first lane (in lane order) that failed; else the extras' start
            if error is not None:
                raise error
        return worked

    async def _work_shared(self, rules: Rules) -> bool:
        """One range, if there is one (in a lane: on the lane's own connection, telling the lane
        once it has a range); records the period if this range closed it."""
        if self.state.stopping.is_set():
            return False
        conn, claimed = _LANE.get() or (None, None)
        work = await self.shared.work_one(rules, conn, claimed)
        if work.recovered:
            # The ranges this instance lost to the database are settled, at least one of them
            # committed when taken back: the condition that failed them has cleared, though the
            # period may run on for a while. (Not merely reconnecting or leading again: under a
            # lasting lock or statement timeout those go through between failures, and /readyz
            # must not flicker to 200.)
            self._succeeded()
        if work.closed is not None:
            await self._record_shared(work.closed, rules)
        return work.worked

    async def _record_shared(self, closed: ClosedPeriod, rules: Rules) -> None:
        """What follows a period's completion, done once by the instance that closed it: outcome
        resolution, the full-sweep requests the period answered, the metrics and the log."""
        self._closed_here = closed.key
        resolved = await self.engine.resolve_after_sweep(closed.as_of)
        requested = [int(i) for i in closed.plan.get("requested", [])]
        if requested:
            async with self.pool.acquire() as conn:
                await execute(conn, "full_sweep_requests_answered", ids=requested)
        result = SweepResult(
            as_of=closed.as_of,
            dry_run=False,
            mentors=closed.mentors,
            seconds=closed.seconds,
            per_rule=closed.per_rule,
            resolved=resolved,
        )
        stats = {rule: dict(c) for rule, c in closed.per_rule.items()}
        self._record(closed.key, result, stats, "full", rules)

    async def _full_sweep_requests(self) -> dict[int, str]:
        """Unanswered full-sweep requests (id → "TRUNCATE table"), as seen when a sweep starts."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(query("full_sweep_requests"))
        return {int(r["id"]): f"{r['operation']} {r['table_name']}" for r in rows}

    async def _before_batch(
        self, claim: _Claim, lock_conn: asyncpg.Connection[Any], mentors: list[uuid.UUID]
    ) -> bool:
        """Whether this instance may evaluate the next batch: not stopping, still holding the
        leader lock, and its lease renewed. Otherwise the period is given up before the batch."""
        if self.state.stopping.is_set():
            claim.stopped = "stopping"
        elif not await self._holds_lock(lock_conn):
            claim.stopped = "leadership_lost"
        else:
            async with self.pool.acquire() as conn:
                renewed = await fetchval(
                    conn,
                    "renew_sweep_lease",
                    sweep_key=claim.key,
                    claim_token=claim.token,
                    lease_secs=self.settings.sweep_lease_seconds,
                    batch_no=claim.batches,
                    instance_id=self.state.instance_id,
                    first_mentor=min(mentors),
                    last_mentor=max(mentors),
                    mentor_count=len(mentors),
                )
            if renewed:
                claim.batches += 1
                return True
            claim.stopped = "lease_lost"
        return False  # the caller gives the lease up once the batches in hand are done

    async def _holds_lock(self, lock_conn: asyncpg.Connection[Any]) -> bool:
        """Asks the server; any error on the lock connection (closed, terminated, a timeout)
        means the lock may be gone, and so is leadership."""
        timeout = min(5.0, self.settings.sweep_lease_seconds / 3)
        try:
            sql, args = bind("holds_leader_lock", {"lock_key": LEADER_LOCK_KEY})
            held = await lock_conn.fetchval(sql, *args, timeout=timeout)
        except Exception as exc:  # any failure of this connection is lost leadership
            log.warning("leader_lock_check_failed", error=repr(exc))
            return False
        return bool(held)

    async def _give_up(self, claim: _Claim) -> None:
        """Lets the lease lapse at once so that the next leader need not wait it out; if the
        database is unreachable the lease simply expires."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                async with self.pool.acquire() as conn:
                    await execute(conn, "release_sweep_lease", sweep_key=claim.key, claim_token=claim.token)
            except DB_ERRORS as exc:  # unreachable, read-only …: the lease simply expires
                log.warning("sweep_lease_release_failed", sweep_key=claim.key, error=repr(exc))

    async def _claim_refused(self, conn: Any, key: str) -> None:
        """A refused claim is either a finished period or one whose owner's lease still runs;
        the latter is logged once per period (the loop retries until the lease lapses). Either
        way the state is asked once per period, not at every retry."""
        if self._waiting_for == key:
            return
        self._waiting_for = key
        row = await fetchrow(conn, "sweep_claim_state", sweep_key=key)
        if row is None or row["finished"]:
            return
        log.info(
            "sweep_owned_elsewhere",
            sweep_key=key,
            owner=row["instance_id"],
            lease_until=row["lease_until"].isoformat() if row["lease_until"] else None,
        )

    async def _incremental_start(
        self, as_of: dt.datetime, rules: Rules
    ) -> tuple[dt.datetime | None, dt.datetime | None]:
        """(since, last full sweep) when this sweep may be incremental, else (None, None).

        Incremental needs a completed previous sweep under the same rules, and a full sweep
        within ``full_sweep_interval_hours`` (the safety net for anything the event path
        missed, e.g. an event that was dead-lettered)."""
        interval = dt.timedelta(hours=self.settings.full_sweep_interval_hours)
        if interval <= dt.timedelta(0):
            return None, None
        async with self.pool.acquire() as conn:
            last = await fetchrow(conn, "last_finished_sweep", as_of=as_of)
        if last is None:
            return None, None
        stats = last["stats"] or {}
        if stats.get("rules") != rules_fingerprint(rules) or "full_as_of" not in stats:
            return None, None
        full_as_of = dt.datetime.fromisoformat(stats["full_as_of"])
        if as_of - full_as_of >= interval:
            return None, None
        since: dt.datetime = last["as_of"]
        return since, full_as_of

    def _record(
        self, key: str, result: SweepResult, stats: dict[str, dict[str, int]], mode: str, rules: Rules
    ) -> None:
        m = self.state.metrics
        m.sweeps.labels("completed").inc()
        m.sweeps_by_mode.labels(mode).inc()
        m.sweep_duration.observe(result.seconds)
        finished = dt.datetime.now(dt.UTC)
        m.last_sweep_finished.set(finished.timestamp())  # the same instant as /status's finished_at
        for rule, counts in stats.items():
            try:
                scenario: str = rules.by_name(rule).scenario_type
            except KeyError:  # an ad-hoc rule
                scenario = "unknown"
            for outcome, n in counts.items():
                m.sweep_results.labels(rule, outcome).inc(n)
                m.notifications.labels(scenario, outcome).inc(n)
            m.holdouts.labels(rule).inc(counts.get("holdout", 0))
        m.count_resolved(result.resolved)
        self.state.last_sweep = {
            "sweep_key": key,
            "mode": mode,
            "as_of": result.as_of.isoformat(),
            "mentors": result.mentors,
            "seconds": round(result.seconds, 3),
            "per_rule": stats,
            "finished_at": finished.isoformat(),
        }
        log.info(
            "sweep_finished",
            sweep_key=key,
            mentors=result.mentors,
            seconds=round(result.seconds, 3),
            sent=result.sent,
            lanes=result.lanes,
        )
