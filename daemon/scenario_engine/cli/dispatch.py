"""``scenario-engine dispatch``: deliver the pushes due now and exit (``--once``), or re-queue
dead-lettered pushes (``--retry-dead``)."""

from __future__ import annotations

import argparse
from typing import Any

from scenario_engine.cli.common import add_command, iso_instant, run_db_command
from scenario_engine.cli.output import write_lines
from scenario_engine.config.settings import Settings
from scenario_engine.db.connect import create_pool
from scenario_engine.exit_codes import EXIT_OK


def register(sub: Any) -> None:
    p = add_command(sub, "dispatch", dispatch, "Deliver due pushes once and exit, or re-queue dead letters.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="send everything due now, then exit")
    mode.add_argument("--retry-dead", action="store_true", help="re-queue dead-lettered pushes")
    p.add_argument(
        "--since", type=iso_instant, default=None, help="with --retry-dead: only those created since"
    )
    p.set_defaults(check_args=lambda args: _check_combinations(p, args))


def _check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Option combinations argparse cannot express; each is a usage error (exit 2)."""
    if args.once and args.since is not None:
        parser.error(
            "--since applies only to --retry-dead; --once sends every push that is due, whenever created"
        )


def dispatch(args: argparse.Namespace) -> int:
    from scenario_engine.push.factory import make_providers
    from scenario_engine.runtime.dispatcher import Dispatcher, DispatchStats, requeue_dead
    from scenario_engine.runtime.metrics import Metrics

    async def run(settings: Settings) -> int:
        pool = await create_pool(
            settings.require_database_url(), max_size=4, application_name="scenario-engine dispatch"
        )
        try:
            if args.retry_dead:
                n = await requeue_dead(pool, args.since)
                write_lines([f"re-queued {n} dead-lettered pushes"])
                return EXIT_OK
            total = DispatchStats()
            async with Dispatcher(pool, make_providers(settings, pool), settings, Metrics()) as dispatcher:
                while True:  # everything due now, then exit
                    stats = await dispatcher.dispatch_once()
                    for key, value in vars(stats).items():
                        setattr(total, key, getattr(total, key) + value)
                    if stats.claimed < settings.push_batch_size:
                        break
            write_lines([" ".join(f"{k}={v}" for k, v in vars(total).items())])
            return EXIT_OK
        finally:
            await pool.close()

    return run_db_command(args, run)
