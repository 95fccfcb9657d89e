"""``scenario-engine demo``: a private Postgres, a demo population, the daemon and a live
decision feed. The development tooling it runs (``scenario_engine.dev``) is imported inside the
command only: no production module imports it (the ``dev-tooling`` contract in .importlinter)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio

from scenario_engine.exit_codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from scenario_engine.logs import configure_logging


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="Private Postgres, demo population, the daemon and a live decision feed.")
    p.set_defaults(func=demo)
    p.add_argument("--fresh", action="store_true", help="start over with a new cluster and population")
    p.add_argument("--mentors", type=int, default=3000, help="population size (default 3000)")
    p.add_argument("--data-dir", type=Path, default=None, help="cluster directory (default: your state dir)")
    p.add_argument("--status-port", type=int, default=8089, help="status page port (0 = any free port)")
    p.add_argument("--pg-bin", default=None, help="PostgreSQL bin directory (default: the embedded wheel)")


def demo(args: argparse.Namespace) -> int:
    from scenario_engine.dev.demo import default_data_dir, prepare_data_dir, run_demo
    from scenario_engine.dev.embedded import EmbeddedPostgresError

    configure_logging("console", "warning")
    data_dir = args.data_dir or default_data_dir()
    try:
        lock = prepare_data_dir(data_dir, fresh=args.fresh)  # held until the demo ends
        anyio.run(
            lambda: run_demo(
                data_dir, mentors=args.mentors, status_port=args.status_port, bin_dir=args.pg_bin, lock=lock
            )
        )
    except EmbeddedPostgresError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # a busy status port: one line and exit 2, not a traceback
        from scenario_engine.runtime.app import startup_problem

        problem = startup_problem(exc)
        if problem is None:
            raise
        print(f"demo: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        pass
    return EXIT_OK
