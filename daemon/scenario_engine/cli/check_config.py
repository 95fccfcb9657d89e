"""``scenario-engine check-config``: validate exactly what ``run`` validates, and print the
effective configuration with secrets masked (exit 2 naming each bad key)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio
import asyncpg

from scenario_engine.cli.common import (
    add_command,
    add_config_option,
    collect_secrets_of_overrides,
    err,
    load,
    print_config_error,
)
from scenario_engine.cli.output import write_json
from scenario_engine.config.reference import effective_config
from scenario_engine.db.queries import fetch
from scenario_engine.errors import ConfigError
from scenario_engine.exit_codes import EXIT_OK


def register(sub: Any) -> None:
    p = add_command(sub, "check-config", check_config, "Validate and print the effective configuration.")
    add_config_option(p)


def check_config(args: argparse.Namespace) -> int:
    """Validate exactly what ``run`` validates, and print the result with secrets masked."""
    try:
        config = load(args)
    except ConfigError as exc:
        return print_config_error(exc, collect_secrets_of_overrides(args))
    from scenario_engine.messages import check_programme_texts

    problems, warnings = check_programme_texts(config.rules)
    if problems:
        return print_config_error(ConfigError(problems), collect_secrets_of_overrides(args))
    warnings += _organisations_without_mentors(config)
    write_json(effective_config(config.settings, config.rules))
    sys.stdout.flush()  # a closed pipe shows here, inside main()'s handler
    for line in warnings:
        err(f"check-config: warning: {line}")
    return EXIT_OK


def _organisations_without_mentors(config: Any) -> list[str]:
    """An organisation listed in the rules file that no mentor has: a warning (a typo, or an
    organisation not yet on the platform), never an error. Only with a database configured."""
    orgs = config.rules.organization_ids()
    if not orgs or config.settings.database_url is None:
        return []

    async def ask() -> list[str]:
        conn = await asyncpg.connect(config.settings.database_url.get_secret_value(), timeout=10)
        try:
            rows = await fetch(conn, "organisations_with_mentors", organizations=orgs)
        finally:
            await conn.close()
        have = {r["organization_id"] for r in rows}
        return [f"organizations.{o}: no mentor has this organisation id" for o in orgs if o not in have]

    try:
        return anyio.run(ask)
    except Exception as exc:  # the database is not needed to check the file
        return [f"could not ask the database which organisations have mentors: {type(exc).__name__}"]
