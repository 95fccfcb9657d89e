"""`scenario-engine report` as a programme lead runs it: the real process, each output format,
and bad input named in one line (exit 2) before any connection is tried."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from scenario_engine.cli.output.report import CSV_COLUMNS
from tests.db.test_report import ORG_A, ORG_B, seed_certifications, seed_outcomes
from tests.support.cli import run_cli

PERIOD = ("--since", "2026-01-01", "--until", "2026-04-01T00:00:00+00:00")


async def test_json_output_has_the_documented_shape_with_numbers_as_numbers(db_url: str, conn: Any) -> None:
    await seed_outcomes(conn)
    await seed_certifications(conn)
    out = await run_cli("report", *PERIOD, "--output", "json", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {
        "method",
        "min_final_per_group",
        "since",
        "until",
        "as_of",
        "organization_id",
        "rule",
        "rows",
        "certifications",
        "channels",
        "only_email_share",
        "arm_experiments",
        "digests",
        "notes",
    }
    assert doc["method"].startswith("Newcombe hybrid score interval")
    assert doc["min_final_per_group"] == 30
    assert (doc["since"], doc["until"]) == ("2026-01-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00")
    assert len(doc["rows"]) == 4
    first = next(r for r in doc["rows"] if r["organization_id"] == str(ORG_A) and r["treated"]["final"] == 70)
    assert (first["candidates"], first["sent"], first["delivered"], first["held_out"]) == (164, 73, 65, 82)
    assert first["suppressed"]["cooldown"] == 3
    assert first["treated"]["rate_percent"] == pytest.approx(80.0)
    assert first["lift_points"] == pytest.approx(20.0)
    assert (
        round(first["lift_interval"]["low"], 2) == 5.24 and round(first["lift_interval"]["high"], 2) == 33.39
    )
    assert first["experiment"]["holdout_percent"] == 10
    assert first["outcome_labels"] == {"achieved": "re-activated", "missed": "still inactive"}
    small = [r for r in doc["rows"] if r["lift_points"] is None]
    assert len(small) == 2 and all(
        r["lift_interval"] is None and "not enough data" in r["lift_note"] for r in small
    )
    orgs = {c["organization_id"]: c for c in doc["certifications"]}
    assert set(orgs) == {str(ORG_A), str(ORG_B)}
    assert orgs[str(ORG_A)]["period"]["expiring"] == 9  # taken now, after the period: none open
    assert orgs[str(ORG_A)]["period"]["still_open"] == 0


async def test_csv_and_table_outputs(db_url: str, conn: Any) -> None:
    await seed_outcomes(conn)
    env = {"SCENARIO_DATABASE_URL": db_url}
    out = await run_cli("report", *PERIOD, "--output", "csv", "--organization", str(ORG_B), env=env)
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert out.stdout.splitlines()[0] == ",".join(CSV_COLUMNS)
    assert sorted((r["rule"], r["candidates"], r["lift_points"]) for r in rows) == [
        ("cert_expiry", "62", "30.0"),
        ("inactive_21d", "69", ""),
    ]

    table = await run_cli("report", *PERIOD, env=env)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "Newcombe hybrid score interval" in text and "30 final outcomes" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("organisation") and "lift (pp)" in line)
    row = next(line for line in lines if line.startswith(str(ORG_A)) and "+20.0" in line)
    assert row.index("+20.0") + len("+20.0") == header.index("lift (pp)") + len("lift (pp)")  # aligned
    assert "[+5.2, +33.4]" in row and "re-activated / still inactive" in row
    assert "not enough data: holdout has 29 final outcomes" in text
    assert "Certifications" in text


async def test_csv_names_each_organisation_from_the_rules_file_then_the_platform(
    db_url: str, conn: Any, tmp_path: Path
) -> None:
    """Issue 20 item 5: the CSV carries the organisation's name as the table and JSON do — the
    rules file's first, then the platform's public.organization, else an empty cell."""
    await seed_outcomes(conn)
    await conn.execute(
        "INSERT INTO public.organization (id, name) "
        "VALUES ($1, 'A on the platform'), ($2, 'B on the platform')",
        ORG_A,
        ORG_B,
    )
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[organizations."{ORG_A}"]\nname = "A from the rules"\n', "utf-8")
    env = {"SCENARIO_DATABASE_URL": db_url, "SCENARIO_RULES_FILE": str(rules)}
    out = await run_cli("report", *PERIOD, "--output", "csv", env=env)
    assert out.returncode == 0, out.stderr
    names = {(r["organization_id"], r["organization_name"]) for r in csv.DictReader(io.StringIO(out.stdout))}
    assert names == {(str(ORG_A), "A from the rules"), (str(ORG_B), "B on the platform")}

    await conn.execute("DELETE FROM public.organization")
    out = await run_cli("report", *PERIOD, "--output", "csv", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    assert {r["organization_name"] for r in csv.DictReader(io.StringIO(out.stdout))} == {""}


async def test_unknown_rule_is_an_empty_report_that_says_so(db_url: str, conn: Any) -> None:
    await seed_outcomes(conn)
    out = await run_cli("report", *PERIOD, "--rule", "no_such_rule", env={"SCENARIO_DATABASE_URL": db_url})
    assert out.returncode == 0, out.stderr
    assert "no decisions of rule 'no_such_rule'" in out.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("--since", "yesterday"), "--since: not an ISO date or date-time: 'yesterday'"),
        (("--until", "2026-13-01"), "--until: not an ISO date or date-time: '2026-13-01'"),
        (
            ("--since", "2026-04-01", "--until", "2026-01-01"),
            "--since 2026-04-01T00:00:00+00:00 is not before",
        ),
        (("--organization", "org-a"), "--organization: not a UUID: 'org-a'"),
    ],
)
async def test_bad_input_is_one_line_naming_it(args: tuple[str, ...], named: str) -> None:
    out = await run_cli(
        "report", *args, env={"SCENARIO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""
    assert out.stderr.startswith(f"report: {named}")
