"""The ``scenario-engine`` command line: the parser assembled from the commands' modules, and
``main``, which runs one and turns what escapes it into an exit code.

Exit codes (docs/OPERATIONS.md): 0 success; 1 a failure (the database unreachable or
refusing an operation, a migration that failed) or a bug; 2 bad configuration, including
a database that rejects who we are (no such database or role, a wrong password); 3
``migrate`` applied what it may and printed what a DBA must run; 130 interrupted; 141 the
reader of stdout went away (``| head``), the shell's code for SIGPIPE, nothing printed.
Every failure is one line on stderr (cli/failures.py), and no line carries a secret.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from scenario_engine.cli import check_config, demo, dispatch, explain, forget, migrate, report, run, sweep
from scenario_engine.cli.common import collect_secrets_of_overrides, err, print_config_error
from scenario_engine.db.errors import first_leaf
from scenario_engine.errors import ConfigError
from scenario_engine.exit_codes import EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_INTERRUPTED
from scenario_engine.redaction import scrub
from scenario_engine.version import VERSION

# The commands in the order `--help` lists them; each module declares its own arguments
# (``register``) next to the body they feed. A new command is a module here.
COMMANDS = (run, demo, migrate, check_config, sweep, dispatch, explain, report, forget)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-engine",
        description="Scenario Trigger Engine: proactive push notifications from Postgres data.",
    )
    parser.add_argument("--version", action="version", version=f"scenario-engine {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    check = getattr(args, "check_args", None)  # combinations argparse cannot express (exit 2)
    if check is not None:
        check(args)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except ConfigError as exc:
        code = print_config_error(exc, collect_secrets_of_overrides(args))
    except Exception as exc:
        leaf = first_leaf(exc)
        if isinstance(leaf, BrokenPipeError):
            _quiet_stdout()
            code = EXIT_BROKEN_PIPE
        else:
            secrets = collect_secrets_of_overrides(args)
            if args.command == "run" or getattr(args, "traceback", False):
                with contextlib.suppress(OSError):
                    sys.stderr.write(scrub("".join(traceback.format_exception(exc)), secrets))
            err(f"{args.command}: unexpected error {type(leaf).__name__}: {leaf} (a bug)", secrets)
            code = EXIT_FAILURE
    sys.exit(code)
