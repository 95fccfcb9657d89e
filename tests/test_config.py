"""Configuration: bad values name their key; check-config masks secrets and exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scenario_engine.config import ConfigError, load_rules, load_settings

GOOD_RULES = """
daily_cap = 2

[[inactivity]]
name = "inactive_21d"
threshold_days = 21
cooldown_days = 7
max_reminders = 2

[[inactivity]]
name = "inactive_60d"
threshold_days = 60

[[milestone]]
name = "hours_all_time"
metric = "hours"
period = "all_time"
thresholds = [100, 10, 50]

[[certification_expiry]]
name = "first_aid"
tiers_days = [7, 30, 1]
certification_types = ["first_aid"]
title = "Renew your {certification_type}"
body = "{days_left} days left"
"""


def _check_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    return subprocess.run(
        [sys.executable, "-m", "scenario_engine", "check-config", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def test_rules_file_is_parsed_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD_RULES)
    rules = load_rules(path)
    assert rules.daily_cap == 2
    assert [r.name for r in rules.inactivity] == ["inactive_21d", "inactive_60d"]
    assert rules.milestone[0].thresholds == [10, 50, 100]
    assert rules.certification_expiry[0].tiers_days == [30, 7, 1]
    assert rules.certification_expiry[0].lead_time_days == 30


@pytest.mark.parametrize(
    ("text", "key_fragment"),
    [
        ("[[inactivity]]\nname='a'\nthreshold_days=-3\n", "inactivity[0].threshold_days"),
        ("[[milestone]]\nname='m'\nmetric='smiles'\nthresholds=[1]\n", "milestone[0].metric"),
        ("[[milestone]]\nname='m'\nmetric='hours'\nthresholds=[]\n", "milestone[0].thresholds"),
        ("[[inactivity]]\nname='a'\nthreshold_days=3\ntitle='Hi {}'\n", "inactivity[0].title"),
        ("daily_cap = 0\n", "daily_cap"),
        ("surprise = 1\n", "surprise"),
        (
            "[[inactivity]]\nname='a'\nthreshold_days=3\n[[inactivity]]\nname='a'\nthreshold_days=4\n",
            "used twice",
        ),
        ("this is = = not toml", "not valid TOML"),
    ],
)
def test_bad_rules_name_the_key(tmp_path: Path, text: str, key_fragment: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert key_fragment in str(info.value)
    assert str(path) in str(info.value)


def test_bad_setting_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCENARIO_STATUS_PORT", "seventy")
    with pytest.raises(ConfigError, match="SCENARIO_STATUS_PORT"):
        load_settings()


def test_check_config_prints_effective_config_with_secret_masked(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(GOOD_RULES)
    result = _check_config(
        "--config",
        str(path),
        env={"SCENARIO_DATABASE_URL": "postgresql://app:hunter2@db.internal:5432/platform"},
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert "hunter2" not in result.stdout
    assert shown["settings"]["SCENARIO_DATABASE_URL"] == "postgresql://app:***@db.internal:5432/platform"
    assert shown["settings"]["SCENARIO_STATUS_HOST"] == "127.0.0.1"
    assert [r["name"] for r in shown["rules"]["inactivity"]] == ["inactive_21d", "inactive_60d"]


def test_check_config_with_bad_setting_names_key_and_exits_2() -> None:
    result = _check_config(env={"SCENARIO_POLL_INTERVAL_SECONDS": "-1"})
    assert result.returncode == 2
    assert "SCENARIO_POLL_INTERVAL_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_with_bad_rules_file_names_key_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[[certification_expiry]]\nname='c'\ntiers_days=[0]\n")
    result = _check_config("--config", str(path))
    assert result.returncode == 2
    assert "certification_expiry[0].tiers_days[0]" in result.stderr


def test_check_config_with_missing_rules_file_exits_2(tmp_path: Path) -> None:
    result = _check_config("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "file not found" in result.stderr


def test_non_postgres_database_url_is_rejected() -> None:
    result = _check_config(env={"SCENARIO_DATABASE_URL": "mysql://x@y/z"})
    assert result.returncode == 2
    assert "SCENARIO_DATABASE_URL" in result.stderr
