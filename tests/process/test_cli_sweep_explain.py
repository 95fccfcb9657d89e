"""`scenario-engine sweep` and `explain` as an operator runs them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from scenario_engine.terminal import terminal_safe
from tests.support.cli import run_cli
from tests.support.factories import add_activity, add_certification, add_mentor, opt_out

AS_OF = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


async def _population(pool: Any) -> list[Any]:
    mentors = []
    for i in range(6):
        m = await add_mentor(pool, joined_at=AS_OF - 200 * DAY, name=f"Mentor {i}")
        mentors.append(m)
        if i % 2 == 0:
            await add_activity(pool, m, AS_OF - (i + 1) * DAY)
        await add_certification(pool, m, expires_at=AS_OF + (5 + i) * DAY)
    await opt_out(pool, mentors[1])
    return mentors


async def test_dry_run_sweep_writes_nothing_and_predicts_the_real_sweep(db_url: str, pool: Any) -> None:
    await _population(pool)
    env = {"SCENARIO_DATABASE_URL": db_url}
    tables = ["scenario_notification", "push_notification", "scenario_decision", "achievement"]
    before = {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
    dry = await run_cli("sweep", "--dry-run", "--as-of", AS_OF.isoformat(), "--output", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "swept 6/6 mentors" in dry.stderr  # plain progress lines when not on a terminal
    assert {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables} == before
    predicted = json.loads(dry.stdout)
    would_send = sorted(d["dedup_key"] for d in predicted["decisions"] if d["outcome"] == "sent")
    assert any(d["outcome"] == "opted_out" for d in predicted["decisions"])

    real = await run_cli("sweep", "--as-of", AS_OF.isoformat(), "--force", env=env)
    assert real.returncode == 0, real.stderr
    assert "certification_expiry" in real.stdout
    sent = sorted(
        r["idempotency_key"] for r in await pool.fetch("SELECT idempotency_key FROM push_notification")
    )
    assert sent == would_send


async def test_sweep_csv_output_lists_every_decision(db_url: str, pool: Any) -> None:
    await _population(pool)
    out = await run_cli(
        "sweep",
        "--dry-run",
        "--as-of",
        "2026-03-01",
        "--output",
        "csv",
        env={"SCENARIO_DATABASE_URL": db_url},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("mentor_id,scenario_type,rule,outcome")
    assert len(lines) > 1


async def test_explain_shows_each_rule_with_inputs_and_reason(db_url: str, pool: Any) -> None:
    mentors = await _population(pool)
    out = await run_cli(
        "explain", str(mentors[1]), "--as-of", AS_OF.isoformat(), env={"SCENARIO_DATABASE_URL": db_url}
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "[inactive_21d]" in text and "[sessions_year]" in text and "[certification_expiry]" in text
    assert "suppressed: opted_out" in text
    assert "threshold_days: 21" in text
    js = await run_cli(
        "explain",
        str(mentors[0]),
        "--as-of",
        AS_OF.isoformat(),
        "--json",
        env={"SCENARIO_DATABASE_URL": db_url},
    )
    data = json.loads(js.stdout)
    verdicts = {r["rule"]: r["verdict"] for r in data["rules"]}
    assert verdicts["inactive_21d"] == "not due"
    assert verdicts["certification_expiry"] == "would send"


async def test_explain_unknown_mentor_is_a_clear_error(db_url: str) -> None:
    out = await run_cli(
        "explain", "00000000-0000-0000-0000-000000000001", env={"SCENARIO_DATABASE_URL": db_url}
    )
    assert out.returncode == 1
    assert "no mentor with id" in out.stderr


async def test_sweep_without_database_url_names_the_setting() -> None:
    out = await run_cli("sweep")
    assert out.returncode == 2
    assert "SCENARIO_DATABASE_URL" in out.stderr


async def test_bad_as_of_is_rejected_clearly(db_url: str) -> None:
    out = await run_cli("sweep", "--as-of", "yesterday", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 2
    assert "not an ISO date" in out.stderr


HOSTILE_NAME = "\x1b[2J\x1b]0;pwned\x07 Eve\u202eevil\x9b31m\nforged: line"


async def test_explain_escapes_terminal_control_characters_of_a_display_name(db_url: str, pool: Any) -> None:
    """A display name that would clear the screen, retitle the window, reverse the text and
    forge a line shows as its escapes (terminal.py); the JSON output keeps the exact value."""
    mentor = await add_mentor(pool, joined_at=AS_OF - 200 * DAY, name=HOSTILE_NAME)
    env = {"SCENARIO_DATABASE_URL": db_url}
    out = await run_cli("explain", str(mentor), "--as-of", AS_OF.isoformat(), env=env)
    assert out.returncode == 0, out.stderr
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in out.stdout, repr(raw)
    assert "\\x1b[2J\\x1b]0;pwned\\x07 Eve\\u202eevil\\x9b31m\\x0aforged: line" in out.stdout
    assert not any(line.startswith("forged") for line in out.stdout.splitlines())
    js = await run_cli("explain", str(mentor), "--as-of", AS_OF.isoformat(), "--json", env=env)
    assert json.loads(js.stdout)["mentor"]["display_name"] == HOSTILE_NAME


async def test_an_error_line_escapes_terminal_control_characters(tmp_path: Any) -> None:
    """An error line quotes what it was given (here a rules file's path): escaped as well."""
    path = tmp_path / "\x1b]0;pwned\x07rules.toml"
    out = await run_cli("check-config", "--config", str(path))
    assert out.returncode == 2
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    assert "\\x1b]0;pwned\\x07rules.toml: file not found" in out.stderr


async def test_dry_run_on_the_terminal_lists_who_would_be_notified(db_url: str, pool: Any) -> None:
    """README: `sweep --dry-run` shows who would be notified now, and why. The table output lists a
    first page of mentors per rule, with the message title, and says how many more there are."""
    quiet = []
    for i in range(13):
        m = await add_mentor(pool, joined_at=AS_OF - 200 * DAY, name=f"Quiet {i:02d}")
        await add_activity(pool, m, AS_OF - 25 * DAY)
        quiet.append(m)
    hostile = await add_mentor(pool, joined_at=AS_OF - 200 * DAY, name=HOSTILE_NAME)
    await add_certification(pool, hostile, expires_at=AS_OF + 5 * DAY)
    env = {"SCENARIO_DATABASE_URL": db_url}
    out = await run_cli("sweep", "--dry-run", "--as-of", AS_OF.isoformat(), env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Who would be notified (the first 10 per rule; --output csv or json lists all):" in text
    assert "inactive_21d: 14 would be notified" in text  # 13 quiet, and the one never active
    listed = [line for line in text.splitlines() if line.startswith("  ") and "We miss you" in line]
    assert len(listed) == 10
    assert "  … and 4 more" in text
    assert "We miss you — It has been 25 days since your last activity" in text  # and why
    assert any(str(m) in text for m in quiet)
    assert "certification_expiry: 1 would be notified" in text
    assert terminal_safe(HOSTILE_NAME)[:24] in text and "\x1b" not in text
    assert await pool.fetchval("SELECT count(*) FROM scenario_decision") == 0  # still a dry run


async def test_explain_accepts_the_short_id_the_demo_feed_shows(db_url: str, pool: Any) -> None:
    mentor = await add_mentor(pool, joined_at=AS_OF - 200 * DAY, name="Short Id")
    env = {"SCENARIO_DATABASE_URL": db_url}
    out = await run_cli("explain", mentor.hex[:8], "--as-of", AS_OF.isoformat(), env=env)
    assert out.returncode == 0, out.stderr
    assert f"mentor {mentor} (Short Id)" in out.stdout
    missing = "0" * 8 if not mentor.hex.startswith("0" * 8) else "f" * 8
    out = await run_cli("explain", missing, env=env)
    assert out.returncode == 1 and f"no mentor's id starts with {missing}" in out.stderr
    out = await run_cli("explain", "abc", env=env)
    assert out.returncode == 2 and "first 8 or more hex digits" in out.stderr


async def test_explain_says_when_a_short_id_is_ambiguous(db_url: str, pool: Any) -> None:
    for suffix in ("1", "2"):
        await pool.execute(
            "INSERT INTO peer_mentor (id, organization_id) VALUES ($1::uuid, gen_random_uuid())",
            "abcdef12-0000-4000-8000-00000000000" + suffix,
        )
    out = await run_cli("explain", "abcdef12", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 1
    assert "more than one mentor's id starts with abcdef12" in out.stderr
