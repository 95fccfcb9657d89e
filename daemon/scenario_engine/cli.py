"""The ``scenario-engine`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from scenario_engine.config import ConfigError, effective_config, load_rules, load_settings
from scenario_engine.db.connect import connect
from scenario_engine.db.migrations import MigrationError, migrate

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _settings_from_args(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "config", None):
        overrides["rules_file"] = args.config
    return overrides


def _print_config_error(exc: ConfigError) -> int:
    print("configuration error:", file=sys.stderr)
    for key, message in exc.problems:
        print(f"  {key}: {message}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(**_settings_from_args(args))
        rules = load_rules(settings.rules_file)
    except ConfigError as exc:
        return _print_config_error(exc)
    print(json.dumps(effective_config(settings, rules), indent=2))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(**_settings_from_args(args))
        url = settings.require_database_url()
    except ConfigError as exc:
        return _print_config_error(exc)

    async def run() -> int:
        conn = await connect(url, application_name="scenario-engine migrate")
        try:
            report = await migrate(conn)
        finally:
            await conn.close()
        for m in report.applied:
            print(f"applied {m.path}")
        if not report.applied:
            print(f"database is up to date ({len(report.already_applied)} migrations applied)")
        return EXIT_OK

    try:
        return anyio.run(run)
    except MigrationError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"migrate: cannot reach the database: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-engine",
        description="Scenario Trigger Engine: proactive push notifications from Postgres data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("migrate", cmd_migrate, "Apply the schema and triggers (idempotent, safe concurrently).")
    p.add_argument("--database-url", help="overrides SCENARIO_DATABASE_URL")

    p = add("check-config", cmd_check_config, "Validate and print the effective configuration.")
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")
    p.add_argument("--database-url", help="overrides SCENARIO_DATABASE_URL")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))
