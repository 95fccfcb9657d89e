"""``scenario-engine sweep``: evaluate every active mentor once, as the daemon does on its
interval; ``--dry-run`` writes nothing and shows who would be notified, and why."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from scenario_engine.cli.common import (
    add_command,
    add_config_option,
    engine_for,
    err,
    iso_instant,
    run_db_command,
)
from scenario_engine.cli.output import FORMATS, emit
from scenario_engine.cli.output.sweep import SweepRendering, first_pages
from scenario_engine.config.settings import Settings
from scenario_engine.db.clock import database_now
from scenario_engine.db.queries import fetch
from scenario_engine.exit_codes import EXIT_CONFIG, EXIT_OK

# How far a writing sweep's --as-of may be from now: the time to type the command.
AS_OF_TOLERANCE = dt.timedelta(minutes=5)


def register(sub: Any) -> None:
    p = add_command(
        sub, "sweep", sweep, "Evaluate every active mentor once (what the daemon does on its interval)."
    )
    add_config_option(p)
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be sent")
    p.add_argument("--as-of", type=iso_instant, default=None, help="evaluate at this instant (ISO 8601)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write even though --as-of is more than 5 minutes from now (refused otherwise)",
    )
    p.add_argument("--output", choices=FORMATS, default="table")


def as_of_refusal(as_of: dt.datetime | None, now: dt.datetime) -> str | None:
    """Why a sweep that writes must not run at ``as_of``, or None.

    A sweep writes at its as_of: the cooldowns (which only ever move forward), the dedup ledger,
    the decisions and their outcome windows; and its pushes go out now. In the future that
    silences a mentor until that date and sends what is not yet true ("we miss you" to someone
    active yesterday); in the past it sends now what was true then and records it at a false
    instant (a cooldown already over, a daily cap that does not count it). Both are refused
    beyond AS_OF_TOLERANCE; --dry-run shows any instant, --force writes anyway."""
    if as_of is None:
        return None
    off = as_of - now
    if abs(off) <= AS_OF_TOLERANCE:
        return None
    hours = abs(off).total_seconds() / 3600
    distance = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
    where = "in the future" if off > dt.timedelta(0) else "in the past"
    return (
        f"refused: --as-of {as_of.isoformat()} is {distance} {where}, and a sweep writes at that instant "
        "(cooldowns, which never move back, the dedup ledger, decisions) while its pushes go out now. "
        "Use --dry-run to see what it would send, or --force to write anyway "
        "(docs/OPERATIONS.md: repairing a sweep run at the wrong instant)"
    )


@contextlib.contextmanager
def _progress_reporter() -> Iterator[Callable[[int, int], None]]:
    """A progress bar on a terminal (stderr), plain lines otherwise."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("sweeping"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
        ) as bar:
            task = bar.add_task("sweep", total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return

    def plain(done: int, total: int) -> None:
        print(f"swept {done}/{total} mentors", file=sys.stderr, flush=True)

    yield plain


def sweep(args: argparse.Namespace) -> int:
    # A dry run on the table output lists who would be notified (a first page per rule): it
    # needs the decisions themselves, as csv and json do.
    listing = args.output == "table" and args.dry_run

    async def run(settings: Settings) -> int:
        names: dict[uuid.UUID, str | None] = {}
        async with engine_for(settings) as engine:
            if not (args.dry_run or args.force):
                async with engine.pool.acquire() as conn:  # "now" is the database's clock
                    refusal = as_of_refusal(args.as_of, await database_now(conn))
                if refusal is not None:
                    err(f"sweep: {refusal}")
                    return EXIT_CONFIG
            with _progress_reporter() as progress:
                result = await engine.run_scheduled_evaluation(
                    args.as_of,
                    dry_run=args.dry_run,
                    collect=args.output != "table" or listing,
                    progress=progress,
                )
            if listing:
                shown = [o.candidate.mentor_id for o in first_pages(result)]
                async with engine.pool.acquire() as conn:
                    found = await fetch(conn, "mentor_display_names", mentor_ids=shown)
                names = {r["id"]: r["display_name"] for r in found}
            rules = engine.rules
        emit(SweepRendering(result, rules, listing=listing, names=names), args.output)
        return EXIT_OK

    return run_db_command(args, run)
