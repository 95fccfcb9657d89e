"""Configuration: bad values name their key; check-config masks secrets and exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.config import GOOD_RULES, URL


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


def test_check_config_masks_every_secret(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("PLANTED-token-55aa")
    result = _check_config(
        env={
            "SCENARIO_DATABASE_URL": "postgresql://app:PLANTED-db-pass@127.0.0.1/db?sslmode=disable&password=PLANTED-q",
            "SCENARIO_PUSH_PROVIDER": "webhook",
            "SCENARIO_PUSH_WEBHOOK_URL": "https://push.example/send?api_key=PLANTED-api-key&x=1#PLANTED-frag",
            "SCENARIO_PUSH_WEBHOOK_TOKEN_FILE": str(token),
            "SCENARIO_PUSH_WEBHOOK_HMAC_SECRET": "PLANTED-hmac",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "PLANTED" not in result.stdout + result.stderr
    shown = json.loads(result.stdout)["settings"]
    assert shown["SCENARIO_DATABASE_URL"] == "postgresql://app:***@127.0.0.1/db?sslmode=disable&password=***"
    assert shown["SCENARIO_PUSH_WEBHOOK_URL"] == "https://push.example/send?api_key=***&x=***#***"


def test_check_config_without_database_url_exits_2() -> None:
    result = _check_config()
    assert result.returncode == 2
    assert "SCENARIO_DATABASE_URL: is required" in result.stderr


def _service_account(tmp_path: Path, private_key: str) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "p",
                "private_key_id": "PLANTED-key-id",
                "private_key": private_key,
                "client_email": "engine@p.iam.gserviceaccount.com",
                "token_uri": "https://oauth2.example/token",
            }
        )
    )
    return path


def test_fcm_key_file_is_checked_and_never_printed(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    env = {"SCENARIO_DATABASE_URL": URL, "SCENARIO_PUSH_PROVIDER": "fcm", "SCENARIO_PUSH_FCM_PROJECT_ID": "p"}
    bad = _service_account(
        tmp_path, "-----BEGIN PRIVATE KEY-----\nPLANTED-not-a-key\n-----END PRIVATE KEY-----\n"
    )
    result = _check_config(env={**env, "SCENARIO_PUSH_FCM_CREDENTIALS_FILE": str(bad)})
    assert result.returncode == 2
    assert "SCENARIO_PUSH_FCM_CREDENTIALS_FILE" in result.stderr and "private_key" in result.stderr
    assert "PLANTED" not in result.stdout + result.stderr
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    good = _service_account(tmp_path, pem)
    result = _check_config(env={**env, "SCENARIO_PUSH_FCM_CREDENTIALS_FILE": str(good)})
    assert result.returncode == 0, result.stderr
    body = pem.splitlines()[1]
    assert body not in result.stdout + result.stderr and "PLANTED" not in result.stdout + result.stderr
