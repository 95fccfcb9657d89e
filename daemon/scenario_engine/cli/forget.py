"""``scenario-engine forget MENTOR_ID``: an erasure request — every row of the engine's schema
naming the mentor (docs/PRIVACY.md)."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from scenario_engine.cli.common import add_command, run_db_command
from scenario_engine.cli.output import Text, emit
from scenario_engine.config.settings import Settings
from scenario_engine.db.connect import connect
from scenario_engine.exit_codes import EXIT_CONFIG, EXIT_OK


def register(sub: Any) -> None:
    p = add_command(
        sub, "forget", forget, "Erase every row of the engine's schema naming a mentor (erasure request)."
    )
    p.add_argument("mentor_id", type=uuid.UUID)
    p.add_argument("--dry-run", action="store_true", help="count the rows per table; change nothing")
    p.add_argument(
        "--force", action="store_true", help="erase even though the mentor still exists on the platform"
    )


def forget(args: argparse.Namespace) -> int:
    """Erasure request: every engine row naming the mentor (docs/PRIVACY.md). Refuses, exit 2,
    while the platform still has the mentor unless --force: erasing would also erase their
    dedup history, and the engine would notify them afresh."""
    from scenario_engine.cli.output.forget import format_forget_report
    from scenario_engine.privacy import STILL_EXISTS_NOTE, forget_mentor, mentor_exists

    async def run(settings: Settings) -> int:
        conn = await connect(settings.require_database_url(), application_name="scenario-engine forget")
        try:
            exists = await mentor_exists(conn, args.mentor_id)
            if exists and not (args.force or args.dry_run):
                print(
                    f"forget: refused: {STILL_EXISTS_NOTE}. Delete the mentor on the platform first "
                    "(the engine then erases its rows by itself), or pass --force.",
                    file=sys.stderr,
                )
                return EXIT_CONFIG
            report = await forget_mentor(conn, args.mentor_id, dry_run=args.dry_run)
        finally:
            await conn.close()
        emit(Text(format_forget_report(report)))
        if exists:
            print(f"forget: note: {STILL_EXISTS_NOTE}", file=sys.stderr)
        elif exists is None:
            print(
                "forget: note: public.peer_mentor is not readable: whether the mentor exists is unknown",
                file=sys.stderr,
            )
        return EXIT_OK

    return run_db_command(args, run)
