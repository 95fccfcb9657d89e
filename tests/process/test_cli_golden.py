"""Every ``scenario-engine`` command's output, byte for byte, on fixed fixture databases.

The golden files (tests/golden/cli/*.txt) were recorded on the code before the command line was
split into one module per command (issue 19 item 4): they prove that the restructure kept every
byte of stdout, of stderr and every exit code. What varies from run to run and is no part of a
command's output — the test database's name and port, the temporary directory, the seconds a
sweep took, instants taken from the wall clock — is replaced by a placeholder first (``_normalise``).

Regenerate (only for an intended change of output, and say so in the commit):
``SCENARIO_TEST_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/process/test_cli_golden.py``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.db.test_report import ORG_A, seed_certifications, seed_outcomes
from tests.support.cli import run_cli

pytestmark = pytest.mark.acceptance

GOLDEN = Path(__file__).parent / "golden" / "cli"
REGEN = os.environ.get("SCENARIO_TEST_REGEN_GOLDEN") == "1"

AS_OF = "2026-03-01T12:00:00+00:00"
DAY = dt.timedelta(days=1)
ORG = uuid.UUID("00000000-0000-0000-0000-0000000000aa")  # tests.factories.ORG
OTHER_ORG = uuid.UUID("00000000-0000-0000-0000-0000000000bb")  # not in the rules file
MENTORS = [uuid.UUID(f"00000000-0000-4000-8000-00000000000{i}") for i in range(6)]
UNKNOWN = uuid.UUID("00000000-0000-4000-8000-0000000000ff")
PERIOD = ("--since", "2026-01-01", "--until", "2026-04-01T00:00:00+00:00")
RULES = (
    (Path(__file__).parents[2] / "daemon/scenario_engine/domain/default_rules.toml").read_text("utf-8")
    + f"""
[organizations."{ORG}"]
name = "Golden peer mentors"

[organizations."{ORG_A}"]
name = "Org A from the rules"
"""
)
# Help text wraps at the terminal's width: fix it.
FIXED_ENV = {"COLUMNS": "100", "SCENARIO_LOG_LEVEL": "error"}

_ISO_NOW = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?")


def _normalise(text: str, db_url: str, tmp: Path, *, today: str) -> str:
    parts = urllib.parse.urlsplit(db_url)
    text = text.replace(str(tmp), "<TMP>")
    text = text.replace(parts.netloc.rpartition("@")[2], "<HOST:PORT>")
    text = text.replace(parts.path.lstrip("/"), "<DB>")
    text = re.sub(r"in \d+\.\d\d s\b", "in <N.NN> s", text)
    # How far a fixed --as-of lies from the wall clock grows by the day.
    text = re.sub(r"is \d+(?:\.\d+)? days in the (past|future)", r"is <N> days in the \1", text)
    # Instants taken from the wall clock (a push's created_at, a report's as_of): today's date.
    return _ISO_NOW.sub(lambda m: "<NOW>" if m.group(0).startswith(today) else m.group(0), text)


async def _sweep_population(conn: Any) -> None:
    """Six mentors with fixed ids: activity for the even ones, a certification each, one opted out,
    the last in an organisation the rules file does not name."""
    as_of = dt.datetime.fromisoformat(AS_OF)
    for i, mentor in enumerate(MENTORS):
        await conn.execute(
            "INSERT INTO public.peer_mentor (id, organization_id, display_name, status, timezone, joined_at) "
            "VALUES ($1, $2, $3, 'active', 'UTC', $4)",
            mentor,
            OTHER_ORG if i == 5 else ORG,
            f"Mentor {i}",
            as_of - 200 * DAY,
        )
        if i % 2 == 0:
            await conn.execute(
                "INSERT INTO public.activity (mentor_id, kind, occurred_at, duration_minutes, contacts) "
                "VALUES ($1, 'session', $2, 60, 1)",
                mentor,
                as_of - (i + 1) * DAY,
            )
        await conn.execute(
            "INSERT INTO public.certification (mentor_id, type, issued_at, expires_at) "
            "VALUES ($1, 'first_aid', $2, $3)",
            mentor,
            as_of - 300 * DAY,
            as_of + (5 + i) * DAY,
        )
    await conn.execute(
        "INSERT INTO public.notification_preference (mentor_id, scenario_type, opted_out) "
        "VALUES ($1, 'all', true)",
        MENTORS[1],
    )


def _cases(rules: Path) -> list[tuple[str, tuple[str, ...], str]]:
    """(name, argv, database) in the order they run: the sweep database's state moves on."""
    m = [str(x) for x in MENTORS]
    cfg = ("--config", str(rules))
    return [
        ("version", ("--version",), "none"),
        ("help", ("--help",), "none"),
        *[
            (f"help-{c}", (c, "--help"), "none")
            for c in (
                "run",
                "demo",
                "migrate",
                "check-config",
                "sweep",
                "dispatch",
                "explain",
                "report",
                "forget",
            )
        ],
        ("usage-no-command", (), "none"),
        ("usage-dispatch-once-since", ("dispatch", "--once", "--since", "2026-01-01"), "none"),
        ("usage-sweep-bad-as-of", ("sweep", "--as-of", "yesterday"), "none"),
        ("usage-explain-bad-id", ("explain", "xyz"), "none"),
        ("report-bad-since", ("report", "--since", "2026-05-01", "--until", "2026-04-01"), "none"),
        ("report-bad-org", ("report", "--organization", "nope"), "none"),
        ("sweep-no-database", ("sweep", "--dry-run"), "none"),
        (
            "sweep-unreachable",
            ("sweep", "--dry-run", "--database-url", "postgresql://u@127.0.0.1:1/x"),
            "none",
        ),
        ("check-config", ("check-config", *cfg), "sweep"),
        ("check-config-bad-rules", ("check-config", "--config", str(rules.parent / "missing.toml")), "sweep"),
        ("migrate", ("migrate",), "sweep"),
        ("sweep-dry-run-table", ("sweep", *cfg, "--dry-run", "--as-of", AS_OF), "sweep"),
        ("sweep-dry-run-csv", ("sweep", *cfg, "--dry-run", "--as-of", AS_OF, "--output", "csv"), "sweep"),
        ("sweep-dry-run-json", ("sweep", *cfg, "--dry-run", "--as-of", AS_OF, "--output", "json"), "sweep"),
        ("explain-before", ("explain", m[1], *cfg, "--as-of", AS_OF), "sweep"),
        (
            "explain-before-json",
            ("explain", m[0][:8] + m[0][9:13], *cfg, "--as-of", AS_OF, "--json"),
            "sweep",
        ),
        ("explain-unknown", ("explain", str(UNKNOWN), "--as-of", AS_OF), "sweep"),
        ("sweep-refused", ("sweep", *cfg, "--as-of", AS_OF), "sweep"),
        ("sweep-forced", ("sweep", *cfg, "--as-of", AS_OF, "--force"), "sweep"),
        ("sweep-again-json", ("sweep", *cfg, "--as-of", AS_OF, "--force", "--output", "json"), "sweep"),
        ("dispatch-once", ("dispatch", "--once"), "sweep"),
        ("dispatch-retry-dead", ("dispatch", "--retry-dead"), "sweep"),
        ("explain-after", ("explain", m[0], *cfg, "--as-of", AS_OF), "sweep"),
        ("explain-after-json", ("explain", m[2], *cfg, "--as-of", AS_OF, "--json"), "sweep"),
        ("forget-refused", ("forget", m[2]), "sweep"),
        ("forget-dry-run", ("forget", m[2], "--dry-run"), "sweep"),
        ("forget-force", ("forget", m[2], "--force"), "sweep"),
        ("forget-unknown", ("forget", str(UNKNOWN)), "sweep"),
        ("report-table", ("report", *PERIOD), "report"),
        ("report-csv", ("report", *PERIOD, "--output", "csv"), "report"),
        ("report-json", ("report", *PERIOD, "--output", "json"), "report"),
        ("report-org-table", ("report", *PERIOD, "--organization", str(ORG_A)), "report"),
        ("report-rule-csv", ("report", *PERIOD, "--rule", "cert_expiry", "--output", "csv"), "report"),
    ]


@pytest.fixture
async def report_db_url(pg_server: Any, template_db: str) -> Any:
    """A second database of the test's own, for the report's dataset."""
    from tests.conftest import _clone, _drop

    name = await _clone(pg_server, template_db)
    yield pg_server.url(name)
    await _drop(pg_server, name)


async def test_every_command_prints_what_it_printed_before_the_restructure(
    db_url: str, conn: Any, report_db_url: str, tmp_path: Path
) -> None:
    import asyncpg

    await _sweep_population(conn)
    report_conn = await asyncpg.connect(report_db_url)
    try:
        await seed_outcomes(report_conn)
        await seed_certifications(report_conn)
    finally:
        await report_conn.close()
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, "utf-8")
    urls = {"sweep": db_url, "report": report_db_url}
    today = dt.datetime.now(dt.UTC).date().isoformat()
    mismatched = []
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, argv, database in _cases(rules):
        env = dict(FIXED_ENV)
        if database != "none":
            env["SCENARIO_DATABASE_URL"] = urls[database]
        if database == "report":
            env["SCENARIO_RULES_FILE"] = str(rules)
        result = await run_cli(*argv, env=env)
        url = urls[database] if database != "none" else db_url
        shown = _normalise(
            f"$ scenario-engine {' '.join(argv)}\n"
            f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}",
            url,
            tmp_path,
            today=today,
        )
        path = GOLDEN / f"{name}.txt"
        if REGEN:
            path.write_text(shown, "utf-8")
        elif path.read_text("utf-8") != shown:
            mismatched.append(name)
            path.with_suffix(".actual").write_text(shown, "utf-8")
    assert not mismatched, f"output changed (see tests/golden/cli/*.actual): {mismatched}"
