"""``scenario-engine run``: one task group owns every long-running task.

The status server listens before any work starts. Workers (drain, scheduler, pruner)
stop claiming new work when a stop signal arrives and get ``shutdown_grace_seconds`` to
finish the batch in hand; then they are cancelled.

Losing the database is never fatal, nor is any other condition of it (db/errors.py:
read-only after a failover, out of disk, a lock or statement timeout, a schema mismatch …):
every loop runs on the shared work loop (runtime/worker.py), which backs off on them, so the
process stays up, /readyz says 503 naming the condition and the loops catch up once it
clears. What does end the process: bad configuration (exit 2: a status address that cannot
be bound, a transaction pooler in the database URL) and bugs (exit 1: a task that dies of
anything else takes the process down so that systemd restarts it, rather than leaving it
half alive). /healthz and the watchdog ping follow the work loops (listener, drain,
dispatcher, pruners, health), not only the process: a stuck one makes both fail. The
scheduler is not watched: a sweep of a large population may rightly run for minutes; its
lease and /status show its progress.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from functools import partial
from typing import Any

import anyio
import asyncpg
from anyio.abc import TaskGroup

from scenario_engine.config.settings import Settings
from scenario_engine.db.clock import database_now
from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.errors import DB_ERRORS, condition_of
from scenario_engine.db.installation import InstallationError, check_installation
from scenario_engine.db.pooler import (
    POOLER_ADVICE,
    TransactionPoolerError,
    check_session_pooling,
    pooler_symptom,
)
from scenario_engine.db.queries import execute, query
from scenario_engine.engine import Engine
from scenario_engine.errors import ConfigError, find_in_group
from scenario_engine.exit_codes import EXIT_CONFIG
from scenario_engine.logs import get_logger
from scenario_engine.push.factory import make_providers
from scenario_engine.runtime.backoff import Backoff
from scenario_engine.runtime.dispatcher import Dispatcher
from scenario_engine.runtime.drain import Drain, prune_loop
from scenario_engine.runtime.fleet import heartbeat
from scenario_engine.runtime.hooks import InstallationWatch
from scenario_engine.runtime.lifecycle import RELOAD_SIGNAL, STOP_SIGNALS, SystemdNotifier
from scenario_engine.runtime.listener import Listener
from scenario_engine.runtime.retention import personal_data_loop
from scenario_engine.runtime.scheduler import Scheduler
from scenario_engine.runtime.state import RuntimeState, default_instance_id
from scenario_engine.runtime.worker import Worker, retry_transient
from scenario_engine.scenarios.rules import Rules, load_rules
from scenario_engine.web.server import StatusServerError, serve_status

log = get_logger("scenario_engine.app")
HEALTH_INTERVAL = 2.0
MONITOR_INTERVAL = 1.0  # how often stuck loops are looked for (and the watchdog pinged)


class Daemon:
    def __init__(self, settings: Settings, rules: Rules | None = None):
        """``rules``: as validated by load_config (the file is read again only on SIGHUP)."""
        self.settings = settings
        self.dsn = settings.require_database_url()
        self.rules = rules if rules is not None else load_rules(settings.rules_file)
        self.state = RuntimeState(instance_id=settings.instance_id or default_instance_id())
        self.state.fleet.grace_seconds = settings.rules_mismatch_grace_seconds
        self.state.clock.warn_after_seconds = settings.clock_skew_warn_seconds
        self.notifier = SystemdNotifier()

    async def run(self) -> None:
        """The daemon, top to bottom: what starts, in which order, and what stops.

        1. the pool — lazy, so a database that is down at start makes the daemon unready, not dead;
        2. the status server (web/server.py) — listening before any work starts;
        3. the signals — SIGTERM/SIGINT stop, SIGHUP reloads the rules (``_reload``);
        4. the start-up checks — a session endpoint, the installation (waits out an outage);
        5. the rules' first sighting (``_see_rules``), before any event is handled;
        6. the LISTEN connection (runtime/listener.py), the health probe (``_health``) and the
           stuck-loop monitor (``_monitor``, the systemd watchdog);
        7. the dispatcher's HTTP session, then the workers (``_start_workers``).

        Stop: a stop signal sets ``state.stopping``; the workers finish the batch in hand within
        ``shutdown_grace_seconds`` (``_grace_timer``) and are then cancelled; the dispatcher's
        session closes; the rest is cancelled; the instance leaves the fleet and the pool closes
        (shielded, whatever happened)."""
        s = self.settings
        pool = await self._open_pool()
        engine = Engine(
            pool,
            self.rules,
            sweep_batch=s.sweep_batch_size,
            sweep_lanes=s.sweep_lanes,
            on_quarantine=self.state.metrics.count_quarantined,
        )
        self.state.organization_names = self.rules.organization_names()
        stuck_after = s.worker_stuck_seconds
        try:
            async with anyio.create_task_group() as outer:
                await outer.start(
                    partial(
                        serve_status,
                        pool=pool,
                        token=s.status_token.get_secret_value() if s.status_token else None,
                    ),
                    self.state,
                    s.status_host,
                    s.status_port,
                )
                outer.start_soon(self._signals, pool, engine)
                # Before anything uses the pool: a transaction pooler is refused (exit 2) here
                # rather than failing later with prepared-statement collisions. Waits out an
                # outage at start (unready, not dead).
                checked = await retry_transient(
                    self._check_session, stopping=self.state.stopping, what="session_check"
                )
                if checked is None:  # stopped before the database ever answered
                    outer.cancel_scope.cancel()
                    return
                await self._see_rules(pool, engine)
                listener = Listener(
                    self.dsn,
                    self.state,
                    ping_interval=s.listen_ping_interval_seconds,
                    ping_timeout=s.listen_ping_timeout_seconds,
                    health=self.state.watch("listener", stuck_after),
                )
                await outer.start(listener.run)
                outer.start_soon(self._health, pool, engine)
                outer.start_soon(self._monitor)
                dispatcher = Dispatcher(
                    pool, make_providers(s, pool), s, self.state.metrics, rules=lambda: engine.rules
                )
                async with dispatcher, anyio.create_task_group() as workers:
                    outer.start_soon(self._grace_timer, workers.cancel_scope)
                    self._start_workers(workers, pool, engine, dispatcher)
                log.info("workers_stopped")
                outer.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._goodbye(pool)
                await self._close_pool(pool)
        log.info("daemon_stopped")

    def _start_workers(
        self, workers: TaskGroup, pool: asyncpg.Pool[Any], engine: Engine, dispatcher: Dispatcher
    ) -> None:
        """The loops that stop claiming work on a stop signal, each on the shared work loop
        (runtime/worker.py) and watched for being stuck, except the scheduler (a sweep of a large
        population may rightly run for minutes; its lease and /status show its progress)."""
        s = self.settings
        stuck_after = s.worker_stuck_seconds
        drain = Drain(  # the event drain (runtime/drain.py)
            pool,
            engine,
            self.state,
            batch_size=s.drain_batch_size,
            poll_interval=s.poll_interval_seconds,
            min_poll_interval=s.poll_min_interval_seconds,
            concurrency=s.drain_concurrency,
            max_attempts=s.event_max_attempts,
            health=self.state.watch("drain", stuck_after),
        )
        workers.start_soon(drain.run)
        # Leader election and the scheduled sweep (runtime/scheduler.py, runtime/shared_sweep.py).
        workers.start_soon(Scheduler(self.dsn, pool, engine, self.state, s).run)
        workers.start_soon(  # the push outbox (runtime/dispatcher.py, push/)
            dispatcher.run,
            self.state.stopping,
            self.state.dispatch_wakeup,
            self.state.watch("dispatcher", stuck_after),
        )
        workers.start_soon(  # processed events past retention (runtime/drain.py)
            partial(
                prune_loop,
                pool,
                self.state,
                retention_seconds=s.event_retention_hours * 3600,
                every=s.prune_interval_seconds,
                health=self.state.watch("prune", stuck_after),
            )
        )
        workers.start_soon(  # a hook dropped while running is loud (runtime/hooks.py)
            InstallationWatch(
                pool,
                self.state,
                interval=s.installation_check_interval_seconds,
                health=self.state.watch("installation_check", stuck_after),
            ).run
        )
        workers.start_soon(  # retention of personal data (runtime/retention.py, privacy.py)
            partial(
                personal_data_loop,
                pool,
                self.state,
                s,
                health=self.state.watch("personal_data_prune", stuck_after),
            )
        )

    async def _check_session(self) -> bool:
        """A session endpoint, a migrated database, the platform hooks, the runtime grants."""
        await check_session_pooling(self.dsn)
        conn = await connect(self.dsn, application_name="scenario-engine start")
        try:
            report = await check_installation(conn)
        finally:
            await conn.close()
        for warning in report.warnings:
            log.warning("installation_incomplete", problem=warning)
        if not report.ok:
            raise InstallationError(report.problems)
        return True

    async def _see_rules(self, pool: asyncpg.Pool[Any], engine: Engine) -> None:
        """Record (and baseline) new rules before any event is handled, so that a rule's
        first sighting is its start-up, not whichever event happens to come first. If the
        database is down, the first evaluation does it instead."""
        try:
            with anyio.fail_after(30):
                async with pool.acquire() as conn:
                    # A rule's baseline by the database's clock, like every decision it bounds.
                    await engine.see_rules(conn, await database_now(conn))
        except DB_ERRORS as exc:
            log.warning("rules_not_recorded_yet", error=repr(exc))

    async def _open_pool(self) -> asyncpg.Pool[Any]:
        """The pool opens lazily (min_size=0) so that a database that is down at start
        makes the daemon unready, not dead; every acquire is bounded, so a starved pool is
        an error the loops log and retry, not a hang."""
        return await create_pool(
            self.dsn,
            min_size=0,
            max_size=self.settings.pool_size,
            acquire_timeout=self.settings.pool_acquire_timeout_seconds,
        )

    async def _close_pool(self, pool: asyncpg.Pool[Any]) -> None:
        """Close politely; a pool whose connections died with the server may fail to, and
        that must not turn a clean stop into a crash."""
        try:
            with anyio.fail_after(5):
                await pool.close()
        except Exception as exc:
            log.debug("pool_close_failed", error=repr(exc))
            pool.terminate()

    async def _grace_timer(self, workers: anyio.CancelScope) -> None:
        await self.state.stopping.wait()
        await anyio.sleep(self.settings.shutdown_grace_seconds)
        if not workers.cancel_called:
            log.warning("grace_period_over", seconds=self.settings.shutdown_grace_seconds)
            workers.cancel()

    async def _signals(self, pool: asyncpg.Pool[Any], engine: Engine) -> None:
        with anyio.open_signal_receiver(*STOP_SIGNALS, RELOAD_SIGNAL) as signals:
            async for signum in signals:
                if signum == RELOAD_SIGNAL:
                    if await self._reload(engine):
                        await self._see_rules(pool, engine)
                elif not self.state.stopping.is_set():
                    log.info("stopping", signal=signum.name if hasattr(signum, "name") else signum)
                    self.notifier.stopping()
                    self.state.stopping.set()
                    self.state.poke_drain()
                else:
                    log.warning("second_stop_signal_exiting_now")
                    os._exit(1)

    async def _reload(self, engine: Engine) -> bool:
        """Apply the rules file again, or reject it and keep the rules in force.

        A reload never ends the process and never stalls the event loop: the file is read
        and validated in a worker thread, abandoned after a bound (a file on a hung network
        mount), and every failure (unreadable, not a regular file, not UTF-8, not TOML, not
        valid rules, or anything unforeseen) is a rejected reload, logged with the reason."""
        read_timeout = 10.0  # seconds; a rules file is a few kilobytes
        self.notifier.reloading()
        applied = False
        errors: list[str] = []
        try:
            with anyio.fail_after(read_timeout):
                rules = await anyio.to_thread.run_sync(
                    load_rules, self.settings.rules_file, abandon_on_cancel=True
                )
        except ConfigError as exc:
            errors = [f"{k}: {m}" for k, m in exc.problems]
        except TimeoutError:
            errors = [f"{self.settings.rules_file}: not read within {read_timeout:g} s"]
        except Exception as exc:  # a reload must not take a working daemon down
            log.error("rules_reload_failed", exc_info=exc)
            errors = [f"{self.settings.rules_file}: unexpected error {type(exc).__name__}: {exc}"]
        else:
            engine.replace_rules(rules)
            self.state.organization_names = rules.organization_names()
            self.state.metrics.rules_reloads.labels("applied").inc()
            log.info("rules_reloaded", rules=[r.name for r in rules.enabled()])
            applied = True
        if not applied:
            self.state.metrics.rules_reloads.labels("rejected").inc()
            log.error("rules_reload_rejected", errors=errors)
        self.notifier.ready()
        return applied

    async def _health(self, pool: asyncpg.Pool[Any], engine: Engine) -> None:
        """Database probe, backlog gauges, instance heartbeat (with the rules fingerprint and
        the clock skew, runtime/fleet.py) and readiness, on the shared work loop: a failed probe
        marks the database down and is retried every interval."""
        announced = False

        async def probe() -> bool:
            nonlocal announced
            with anyio.fail_after(self.settings.listen_ping_timeout_seconds):
                async with pool.acquire() as conn:
                    row = await conn.fetchrow(query("backlogs"))
                    outbox = await conn.fetchrow(query("outbox_stats"))
                    server_now = await heartbeat(conn, self.state, engine.rules)
            if not self.state.database_ok:
                log.info("database_reachable")
            self.state.set_database(True)
            self._publish_backlogs(row, outbox, server_now)
            if self.state.started and not announced:
                announced = True
                log.info("ready", instance=self.state.instance_id, port=self.state.status_port)
                self.notifier.ready()
            return False

        def down(exc: BaseException) -> None:
            # A server that answers with a condition (read-only after a failover, out of disk …)
            # is reachable: /readyz names the condition; only a lost connection is "down".
            condition = condition_of(exc)
            reachable = condition is not None and condition.reachable
            if self.state.database_ok and not reachable:
                log.warning("database_unreachable", error=repr(exc))
            self.state.set_database(reachable)

        await Worker(
            "health",
            probe,
            stopping=self.state.stopping,
            poll_interval=HEALTH_INTERVAL,
            health=self.state.watch("health", self.settings.worker_stuck_seconds),
            backoff=Backoff(initial=HEALTH_INTERVAL, maximum=HEALTH_INTERVAL, factor=1.0),
            on_transient=down,
        ).run()

    async def _monitor(self) -> None:
        """Look for stuck loops; ping the systemd watchdog only while none is.

        The watchdog does not depend on the database: an outage is survived, not a reason
        for systemd to restart us. A loop that stopped making progress is."""
        interval = MONITOR_INTERVAL
        if self.notifier.watchdog_interval:
            interval = min(interval, self.notifier.watchdog_interval)
        reported: dict[str, str] = {}
        while True:
            stuck = self.state.stuck_loops()
            for name, reason in stuck.items():
                if name not in reported:
                    log.error("work_loop_stuck", loop=name, reason=reason)
            for name in reported.keys() - stuck.keys():
                log.info("work_loop_unstuck", loop=name)
            reported = stuck
            if not stuck and self.notifier.watchdog_interval:
                self.notifier.watchdog()
            await anyio.sleep(interval)

    def _publish_backlogs(self, row: Any, outbox: Any, now: dt.datetime) -> None:
        """Ages by the server's clock (``now``), which stamped the rows."""
        m = self.state.metrics
        age = (now - row["oldest_event"]).total_seconds() if row["oldest_event"] else 0.0
        push_age = (now - outbox["oldest_pending"]).total_seconds() if outbox["oldest_pending"] else 0.0
        m.events_backlog.set(row["events_pending"])
        m.events_dead_total.set(row["events_dead"])
        m.push_backlog.set(outbox["pending"])
        m.oldest_event_age.set(age)
        m.push_oldest_age.set(push_age)
        self.state.backlogs = {
            "events_pending": row["events_pending"],
            "events_dead": row["events_dead"],
            "oldest_event_age_seconds": round(age, 3),
            "pushes_pending": outbox["pending"],
            "pushes_dead": outbox["dead"],
            "oldest_push_age_seconds": round(push_age, 3),
        }

    async def _goodbye(self, pool: asyncpg.Pool[Any]) -> None:
        with anyio.move_on_after(2):
            try:
                async with pool.acquire() as conn:
                    await execute(conn, "remove_instance", instance_id=self.state.instance_id)
            except DB_ERRORS:
                pass


def startup_problem(exc: BaseException) -> str | None:
    """The one line to print for a failure that is the operator's configuration, not a bug
    (exit 2), or None. Looks inside exception groups, which is how task groups report."""
    return find_in_group(exc, _startup_problem)


def _startup_problem(exc: BaseException) -> str | None:
    if isinstance(exc, (StatusServerError, TransactionPoolerError, InstallationError)):
        return str(exc)
    symptom = pooler_symptom(exc)
    if symptom is not None:
        return f"{POOLER_ADVICE} (observed: {symptom!r})"
    return None


def run_daemon(settings: Settings, rules: Rules | None = None) -> None:
    """Run until stopped; configuration problems found at start end it with one line and exit 2."""
    try:
        anyio.run(Daemon(settings, rules).run)
    except Exception as exc:
        problem = startup_problem(exc)
        if problem is None:
            raise
        print(f"run: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
