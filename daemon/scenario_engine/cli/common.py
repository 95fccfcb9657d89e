"""What every command shares: its common options, the one validation path, one-line errors
scrubbed of secrets, the ISO instants of --as-of/--since/--until, and the frame that runs an async
database command and turns its failure into one line and an exit code (failures.py)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from scenario_engine.cli.failures import database_target, explain_failure
from scenario_engine.config.load import Config, load_config
from scenario_engine.config.settings import Settings
from scenario_engine.db.connect import create_pool
from scenario_engine.db.errors import first_leaf
from scenario_engine.engine import Engine
from scenario_engine.errors import ConfigError
from scenario_engine.evaluate import AS_OF_FROM, AS_OF_UNTIL
from scenario_engine.exit_codes import EXIT_CONFIG
from scenario_engine.logs import configure_logging
from scenario_engine.redaction import collect_secrets, scrub
from scenario_engine.scenarios.rules import load_rules
from scenario_engine.terminal import terminal_safe

Command = Callable[[argparse.Namespace], int]


def add_command(sub: Any, name: str, func: Command, help_: str) -> argparse.ArgumentParser:
    """A command's parser with the options every database command has."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    p.add_argument("--database-url", help="overrides SCENARIO_DATABASE_URL")
    p.add_argument("--traceback", action="store_true", help="on an error, also print where it happened")
    return p


def add_config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")


def settings_from_args(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "config", None):
        overrides["rules_file"] = args.config
    return overrides


def err(line: str, secrets: Sequence[str] = ()) -> None:
    """One line on stderr, scrubbed of every secret we know of, and of control characters: an
    error's text may quote a value from the database (terminal.py)."""
    with contextlib.suppress(OSError):
        print(terminal_safe(scrub(line, secrets)), file=sys.stderr, flush=True)


def print_config_error(exc: ConfigError, secrets: Sequence[str] = ()) -> int:
    err("configuration error:", secrets)
    for key, message in exc.problems:
        err(f"  {key}: {message}", secrets)
    return EXIT_CONFIG


def load(args: argparse.Namespace) -> Config:
    """The one validation path for check-config, run and every database command."""
    return load_config(settings_from_args(args))


def collect_secrets_of_overrides(args: argparse.Namespace) -> list[str]:
    """Secrets given on the command line, for scrubbing messages when validation failed."""
    url = getattr(args, "database_url", None)
    if not url:
        return []
    try:
        return collect_secrets(Settings.model_construct(database_url=SecretStr(url)))
    except Exception:  # a URL too broken to take apart: hide it whole
        return [url]


def iso_instant(text: str) -> dt.datetime:
    """--as-of, --since, --until: an ISO date or instant; a date means midnight UTC, a naive time
    means UTC. An instant the engine cannot compute with (it adds and subtracts lead times and
    windows: evaluate.AS_OF_FROM … AS_OF_UNTIL) is bad input here, not an error deep inside."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from None
    value = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    try:
        in_range = AS_OF_FROM <= value.astimezone(dt.UTC) <= AS_OF_UNTIL
    except OverflowError:  # an offset that takes it past year 1 or 9999
        in_range = False
    if not in_range:
        raise argparse.ArgumentTypeError(
            f"{text!r} is outside the instants the engine handles "
            f"({AS_OF_FROM.date().isoformat()} to {AS_OF_UNTIL.date().isoformat()})"
        )
    return value


@contextlib.asynccontextmanager
async def engine_for(settings: Settings) -> AsyncIterator[Engine]:
    """An engine on a small pool, with the configured rules (sweep, explain)."""
    rules = load_rules(settings.rules_file)
    pool = await create_pool(
        settings.require_database_url(),
        max_size=max(4, settings.sweep_lanes + 1),  # the sweep's lanes and one kept free
        application_name="scenario-engine cli",
    )
    try:
        yield Engine(pool, rules, sweep_lanes=settings.sweep_lanes)
    finally:
        await pool.close()


def run_db_command(args: argparse.Namespace, body: Callable[[Settings], Any]) -> int:
    """Validate the configuration, run an async body, and turn failures into one line
    and an exit code."""
    try:
        config = load(args)
    except ConfigError as exc:
        return print_config_error(exc, collect_secrets_of_overrides(args))
    secrets = config.secrets()
    # Logs on stderr: stdout is the command's result (JSON, CSV, a summary line).
    configure_logging(
        config.settings.log_format, config.settings.log_level, secrets=secrets, stream=sys.stderr
    )
    try:
        result: int = anyio.run(body, config.settings)
        return result
    except Exception as exc:  # an ExceptionGroup too: anyio task groups wrap errors
        leaf = first_leaf(exc)
        if isinstance(leaf, BrokenPipeError):
            raise leaf from None  # main() ends quietly with EXIT_BROKEN_PIPE
        if isinstance(leaf, ConfigError):  # found only once running, e.g. a provider's missing extra
            return print_config_error(leaf, secrets)
        code, line = explain_failure(leaf, database_target(config.database_url))
        if getattr(args, "traceback", False):
            with contextlib.suppress(OSError):
                sys.stderr.write(scrub("".join(traceback.format_exception(exc)), secrets))
        err(f"{args.command}: {line}", secrets)
        return code
