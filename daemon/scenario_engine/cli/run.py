"""``scenario-engine run``: the daemon — LISTEN, drain events, sweep on schedule, serve status."""

from __future__ import annotations

import argparse
from typing import Any

from scenario_engine.cli.common import (
    add_command,
    add_config_option,
    collect_secrets_of_overrides,
    load,
    print_config_error,
)
from scenario_engine.errors import ConfigError
from scenario_engine.exit_codes import EXIT_OK
from scenario_engine.logs import configure_logging


def register(sub: Any) -> None:
    p = add_command(sub, "run", run, "Run the daemon: LISTEN, drain events, sweep on schedule, serve status.")
    add_config_option(p)


def run(args: argparse.Namespace) -> int:
    from scenario_engine.runtime.app import run_daemon

    try:
        config = load(args)  # the same checks as check-config: anything it rejects exits 2
    except ConfigError as exc:
        return print_config_error(exc, collect_secrets_of_overrides(args))
    configure_logging(
        config.settings.log_format, config.settings.log_level, secrets=config.secrets(), library_logs=True
    )
    run_daemon(config.settings, config.rules)
    return EXIT_OK
