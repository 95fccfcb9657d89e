"""``scenario-engine migrate``: apply the schema and triggers (idempotent, safe concurrently);
what needs the platform tables' owner is printed as a script for a DBA (exit 3)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio

from scenario_engine.cli.common import add_command, err, run_db_command
from scenario_engine.cli.failures import database_target
from scenario_engine.cli.output import write_lines
from scenario_engine.config.settings import Settings
from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import migrate as apply_migrations
from scenario_engine.db.pooler import check_session_pooling
from scenario_engine.db.units import dba_script
from scenario_engine.exit_codes import EXIT_NEEDS_DBA, EXIT_OK


def register(sub: Any) -> None:
    p = add_command(sub, "migrate", migrate, "Apply the schema and triggers (idempotent, safe concurrently).")
    p.add_argument("--wait", type=float, default=0, help="retry an unreachable database this long (s)")
    p.add_argument(
        "--grant-runtime",
        action="append",
        default=[],
        metavar="ROLE",
        help="make ROLE a member of scenario_engine_runtime (what `run` needs; repeatable)",
    )
    p.add_argument(
        "--dba-script",
        type=Path,
        default=None,
        help="write the statements that need a DBA to this file instead of stdout",
    )


def migrate(args: argparse.Namespace) -> int:
    async def run(settings: Settings) -> int:
        url = settings.require_database_url()
        deadline = anyio.current_time() + args.wait
        while True:  # --wait: the database may still be starting (boot order under systemd)
            try:
                await check_session_pooling(url)  # before anything is prepared (exit 2 behind a pooler)
                conn = await connect(url, application_name="scenario-engine migrate")
                break
            except OSError as exc:
                if anyio.current_time() >= deadline:
                    raise
                err(f"migrate: {database_target(url)} not reachable yet ({exc.strerror or exc}); retrying")
                await anyio.sleep(2)
        try:
            report = await apply_migrations(conn, grant_runtime=args.grant_runtime)
        finally:
            await conn.close()
        lines = [f"applied {m.path}" for m in report.applied]
        if not report.applied:
            lines.append(f"database is up to date ({len(report.already_applied)} migrations applied)")
        lines += [f"applied unit {name}" for name in report.units.applied]
        write_lines(lines)
        if not report.needs_dba:
            return EXIT_OK
        script = dba_script(report.units)
        if args.dba_script is not None:
            args.dba_script.write_text(script, "utf-8")
            where = f"written to {args.dba_script}"
        else:
            write_lines([script])
            where = "printed above"
        print(
            f"migrate: {len(report.units.for_dba)} statement group(s) need the platform tables' owner or a "
            f"superuser ({where}); everything else is applied. Run them, then migrate again.",
            file=sys.stderr,
        )
        return EXIT_NEEDS_DBA

    return run_db_command(args, run)
