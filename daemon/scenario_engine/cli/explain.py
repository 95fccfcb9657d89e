"""``scenario-engine explain MENTOR_ID``: per rule, the mentor's inputs, the decision and why."""

from __future__ import annotations

import argparse
from typing import Any

from scenario_engine.cli.common import add_command, add_config_option, engine_for, iso_instant, run_db_command
from scenario_engine.cli.output import emit
from scenario_engine.cli.output.explain import ExplanationRendering
from scenario_engine.config.settings import Settings
from scenario_engine.exit_codes import EXIT_OK


def register(sub: Any) -> None:
    p = add_command(sub, "explain", explain, "Show, per rule, a mentor's inputs, the decision and why.")
    p.add_argument(
        "mentor_id", type=_mentor_reference, metavar="MENTOR_ID", help="an id, or its first 8+ hex digits"
    )
    add_config_option(p)
    p.add_argument("--as-of", type=iso_instant, default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _mentor_reference(text: str) -> str:
    from scenario_engine.explain import mentor_reference

    try:
        return mentor_reference(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def explain(args: argparse.Namespace) -> int:
    from scenario_engine.explain import explain_mentor, resolve_mentor

    async def run(settings: Settings) -> int:
        async with engine_for(settings) as engine:
            async with engine.pool.acquire() as conn:
                mentor_id = await resolve_mentor(conn, args.mentor_id)
            expl = await explain_mentor(engine, mentor_id, args.as_of)
        emit(ExplanationRendering(expl), "json" if args.json else "table", json_default=str)
        return EXIT_OK

    return run_db_command(args, run)
