"""The running daemon re-checks its installation: a dropped hook is loud, not silent.

``check_installation`` (db/installation.py) runs once at start, where a problem is exit 2. But a
change-capture trigger dropped *while the daemon runs* (``DROP TRIGGER activity_scenario_event_v1
ON activity``, a platform migration that recreates a table) used to leave it ready and quiet
while every change to that table was lost to the event path. So the same check runs every
``SCENARIO_INSTALLATION_CHECK_INTERVAL_SECONDS`` (default 60) on the shared work loop:

* each problem that appears is logged once at error level (``installation_problem``, naming the
  trigger and the command that fixes it), and once more when it is resolved;
* ``scenario_installation_problems`` (gauge) counts them, ``/status`` lists them;
* the daemon is **unready** while any is there (``/readyz`` 503 with the list): its output would
  be silently incomplete. It keeps draining and sweeping — what it still sees is still right;
* when the problem goes away (``scenario-engine migrate``) it requests a full sweep (the table
  of sql/0023): what changed while the hook was missing was never captured.

Not being able to run the check (the database is down) is the health loop's business, not a
problem of the installation: the last finding stands and the worker backs off. A database that a
newer engine migrated (a rolling upgrade in progress) refuses a start but is only a warning here:
the old daemons keep working until they are replaced.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from scenario_engine.db.errors import is_transient
from scenario_engine.db.installation import check_installation
from scenario_engine.db.queries import execute
from scenario_engine.logs import get_logger
from scenario_engine.runtime.state import LoopHealth, RuntimeState
from scenario_engine.runtime.worker import Worker

log = get_logger("scenario_engine.hooks")


class InstallationWatch:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        state: RuntimeState,
        *,
        interval: float,
        health: LoopHealth | None = None,
    ):
        self.pool = pool
        self.state = state
        self.interval = interval
        self.health = health
        self._warned: set[str] = set()

    async def run(self) -> None:
        await Worker(
            "installation_check",
            self.check_once,
            stopping=self.state.stopping,
            poll_interval=self.interval,
            health=self.health,
        ).run()

    async def check_once(self) -> bool:
        """One check; publishes what it found. Returns False (wait for the next interval)."""
        async with self.pool.acquire() as conn:
            try:
                report = await check_installation(conn)
            except asyncpg.PostgresError as exc:
                if is_transient(exc):
                    raise  # the work loop backs off
                # a condition of the database (a cancelled query, a lock timeout): no finding
                log.warning("installation_check_failed", error=repr(exc))
                return False
            for line in report.start_only:
                if line not in self._warned:
                    self._warned.add(line)
                    log.warning("installation_newer", problem=line)
            resolved = self.publish([p for p in report.problems if p not in report.start_only])
            if resolved:  # changes made while a hook was missing were never captured
                await execute(conn, "request_full_sweep", table_name="(installation)", operation="REPAIRED")
        return False

    def publish(self, problems: list[str]) -> list[str]:
        """Log what appeared and what went away; returns the problems resolved since last time."""
        before = set(self.state.installation_problems)
        for problem in problems:
            if problem not in before:
                log.error("installation_problem", problem=problem)
        resolved = sorted(before - set(problems))
        for problem in resolved:
            log.info("installation_problem_resolved", problem=problem, full_sweep_requested=True)
        self.state.installation_problems = list(problems)
        self.state.metrics.installation_problems.set(len(problems))
        return resolved
