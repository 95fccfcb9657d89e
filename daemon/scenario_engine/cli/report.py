"""``scenario-engine report``: outcomes of the decisions in a period, and the lift over the
holdout, per organisation, rule and experiment (computed by outcomes/report.py)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import uuid
from typing import Any

from scenario_engine.cli.common import add_command, err, iso_instant, run_db_command
from scenario_engine.cli.output import FORMATS, emit
from scenario_engine.config.settings import Settings
from scenario_engine.db.connect import create_pool
from scenario_engine.errors import ConfigError
from scenario_engine.evaluate import AS_OF_FROM
from scenario_engine.exit_codes import EXIT_CONFIG, EXIT_OK
from scenario_engine.scenarios.rules import load_rules


def register(sub: Any) -> None:
    p = add_command(
        sub, "report", report, "Outcomes of decisions in a period, and the lift over the holdout."
    )
    p.add_argument(
        "--since", default=None, help="decisions taken from this instant (ISO; default until − 90 days)"
    )
    p.add_argument("--until", default=None, help="… up to, not including, this instant (ISO; default now)")
    p.add_argument("--organization", default=None, metavar="UUID", help="only this organisation")
    p.add_argument("--rule", default=None, metavar="NAME", help="only this rule")
    p.add_argument("--output", choices=FORMATS, default="table")


def _report_inputs(args: argparse.Namespace) -> tuple[dt.datetime, dt.datetime, uuid.UUID | None] | str:
    """--since/--until/--organization checked before any connection: the period, or the one line
    that names the bad input."""
    try:
        until = iso_instant(args.until) if args.until else dt.datetime.now(dt.UTC)
    except argparse.ArgumentTypeError as exc:
        return f"--until: {exc}"
    try:
        since = iso_instant(args.since) if args.since else until - dt.timedelta(days=90)
    except argparse.ArgumentTypeError as exc:
        return f"--since: {exc}"
    if since >= until:
        return f"--since {since.isoformat()} is not before --until {until.isoformat()}"
    try:  # the report compares with the period of equal length before it
        previous_ok = since - (until - since) >= AS_OF_FROM
    except OverflowError:
        previous_ok = False
    if not previous_ok:
        return (
            f"--since {since.isoformat()} is too far back: the report compares the period with the one "
            f"of equal length before it, which would begin before {AS_OF_FROM.date().isoformat()}"
        )
    try:
        org = uuid.UUID(args.organization) if args.organization else None
    except ValueError:
        return f"--organization: not a UUID: {args.organization!r}"
    return since, until, org


def report(args: argparse.Namespace) -> int:
    from scenario_engine.cli.output.report import ReportRendering
    from scenario_engine.outcomes.report import CONCURRENT_QUERIES, build_report

    inputs = _report_inputs(args)
    if isinstance(inputs, str):
        err(f"report: {inputs}")
        return EXIT_CONFIG
    since, until, org = inputs

    async def run(settings: Settings) -> int:
        # A pool: the report's independent counting queries run at once (outcomes/report.py).
        pool = await create_pool(
            settings.require_database_url(),
            min_size=1,
            max_size=CONCURRENT_QUERIES,
            application_name="scenario-engine report",
        )
        try:
            built = await build_report(
                pool,
                since=since,
                until=until,
                organization_id=org,
                rule_name=args.rule,
                as_of=dt.datetime.now(dt.UTC),
            )
        finally:
            await pool.close()
        with contextlib.suppress(ConfigError):  # names only: the report does not need the rules
            rules = load_rules(settings.rules_file)
            built = dataclasses.replace(
                built, organisation_names={**built.organisation_names, **rules.organization_names()}
            )
        emit(ReportRendering(built), args.output)
        return EXIT_OK

    return run_db_command(args, run)
