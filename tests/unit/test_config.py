"""Configuration: bad values name their key; check-config masks secrets and exits 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scenario_engine.config import Settings, load_config, load_settings
from scenario_engine.errors import ConfigError
from scenario_engine.scenarios.rules import default_rules, load_rules
from scenario_engine.templates import BODY_MAX_BYTES, TITLE_MAX_BYTES, render_body, render_title
from tests.support.config import GOOD_RULES, URL


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


def _problems(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **overrides: object) -> str:
    for key in [k for k in os.environ if k.upper().startswith("SCENARIO_")]:
        monkeypatch.delenv(key)
    for key, value in {"SCENARIO_DATABASE_URL": URL, **env}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    return str(info.value)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"SCENARIO_SWEEP_INTERVAL_SECONDS": "1e308"}, "SCENARIO_SWEEP_INTERVAL_SECONDS"),
        ({"SCENARIO_SWEEP_INTERVAL_SECONDS": "inf"}, "SCENARIO_SWEEP_INTERVAL_SECONDS"),
        ({"SCENARIO_SWEEP_INTERVAL_SECONDS": "nan"}, "SCENARIO_SWEEP_INTERVAL_SECONDS"),
        ({"SCENARIO_SWEEP_INTERVAL_SECONDS": "0.000001"}, "SCENARIO_SWEEP_INTERVAL_SECONDS"),
        ({"SCENARIO_PUSH_LEASE_SECONDS": "inf"}, "SCENARIO_PUSH_LEASE_SECONDS"),
        ({"SCENARIO_EVENT_RETENTION_HOURS": "1e308"}, "SCENARIO_EVENT_RETENTION_HOURS"),
        ({"SCENARIO_PUSH_MAX_AGE_HOURS": "1e308"}, "SCENARIO_PUSH_MAX_AGE_HOURS"),
        ({"SCENARIO_FULL_SWEEP_INTERVAL_HOURS": "inf"}, "SCENARIO_FULL_SWEEP_INTERVAL_HOURS"),
        ({"SCENARIO_PUSH_BACKOFF_MAX_SECONDS": "1e308"}, "SCENARIO_PUSH_BACKOFF_MAX_SECONDS"),
        ({"SCENARIO_PUSH_RATE_PER_SECOND": "0.5"}, "SCENARIO_PUSH_RATE_PER_SECOND"),
        ({"SCENARIO_STATUS_PROT": "9000"}, "SCENARIO_STATUS_PROT"),
        ({"SCENARIO_STATUS_HOST": "no-such-host.invalid"}, "SCENARIO_STATUS_HOST"),
        ({"SCENARIO_STATUS_HOST": "bad host!"}, "SCENARIO_STATUS_HOST"),
        ({"SCENARIO_DATABASE_URL": "postgresql://u@h:notaport/db"}, "SCENARIO_DATABASE_URL"),
        ({"SCENARIO_DATABASE_URL": "postgresql://u@h/db?sslmode=bogus"}, "SCENARIO_DATABASE_URL"),
        ({"SCENARIO_DATABASE_URL": "postgresql://u@h/db?connect_timeout=5"}, "SCENARIO_DATABASE_URL"),
        ({"SCENARIO_DATABASE_URL": "postgresql://u@h/db?sslmod=require"}, "SCENARIO_DATABASE_URL"),
        ({"SCENARIO_PUSH_PROVIDER": "webhook", "SCENARIO_PUSH_WEBHOOK_URL": "ftp://x/y"}, "WEBHOOK_URL"),
    ],
)
def test_values_run_cannot_use_are_rejected_naming_the_key(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], key: str
) -> None:
    assert key in _problems(monkeypatch, env)


def test_misspelt_variable_suggests_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _problems(monkeypatch, {"SCENARIO_STATUS_PROT": "9000"})
    assert "SCENARIO_STATUS_PROT: unknown setting; did you mean SCENARIO_STATUS_PORT?" in text


def test_database_url_file_is_read_and_validated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SCENARIO_DATABASE_URL", raising=False)
    text = _problems(monkeypatch, {}, database_url=None, database_url_file=tmp_path / "nope")
    assert "SCENARIO_DATABASE_URL_FILE: cannot read" in text
    bad = tmp_path / "bad"
    bad.write_text("postgresql://u@h:99999/db\n")
    assert "SCENARIO_DATABASE_URL_FILE" in _problems(
        monkeypatch, {}, database_url=None, database_url_file=bad
    )
    good = tmp_path / "good"
    good.write_text("postgresql://u:s3cret@127.0.0.1/db\n")
    monkeypatch.delenv("SCENARIO_DATABASE_URL")
    config = load_config({"database_url_file": good})
    assert config.database_url == "postgresql://u:s3cret@127.0.0.1/db"


def test_no_database_url_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.upper().startswith("SCENARIO_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="SCENARIO_DATABASE_URL: is required"):
        load_config()


def test_secrets_come_from_files_and_systemd_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key in [k for k in os.environ if k.upper().startswith("SCENARIO_")]:
        monkeypatch.delenv(key)
    (tmp_path / "token").write_text("tok-from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "database-url").write_text("postgresql://u:p@127.0.0.1/db\n")
    (creds / "push-webhook-hmac-secret").write_text("hmac-from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("SCENARIO_PUSH_PROVIDER", "webhook")
    monkeypatch.setenv("SCENARIO_PUSH_WEBHOOK_URL", "https://push.example/send")
    monkeypatch.setenv("SCENARIO_PUSH_WEBHOOK_TOKEN_FILE", str(tmp_path / "token"))
    s = load_config().settings
    assert s.database_url is not None and s.database_url.get_secret_value() == "postgresql://u:p@127.0.0.1/db"
    assert s.push_webhook_token is not None and s.push_webhook_token.get_secret_value() == "tok-from-file"
    assert s.push_webhook_hmac_secret is not None
    assert s.push_webhook_hmac_secret.get_secret_value() == "hmac-from-credential"


def test_every_number_setting_has_finite_bounds() -> None:
    """A new numeric setting without a maximum would let 1e308 through to a timedelta."""
    for name, info in Settings.model_fields.items():
        kinds = set(getattr(info.annotation, "__args__", ())) | {info.annotation}
        if not kinds & {int, float}:
            continue
        lows = [
            m
            for m in info.metadata
            if getattr(m, "ge", None) is not None or getattr(m, "gt", None) is not None
        ]
        highs = [
            m
            for m in info.metadata
            if getattr(m, "le", None) is not None or getattr(m, "lt", None) is not None
        ]
        assert lows and highs, f"{name} needs a lower and an upper bound"


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("cooldown_days = 1e12", "cooldown_days"),
        ("cooldown_days = inf", "cooldown_days"),
        ("cooldown_days = nan", "cooldown_days"),
        ("body = 'Hi {nickname}'", "unknown placeholder {nickname} in rule 'a'"),
        ("title = '{display_name:>50000000}'", "format width 50000000"),
        ("body = '{days_inactive:.99999f}'", "format precision 99999"),
        ("body = '{display_name:{days_inactive}}'", "nested placeholders"),
        ("body = '{display_name:zz}'", "not a valid format spec"),
        ('title = "Hi\\u0000there"', "U+0000"),
        ('title = "two\\nlines"', "U+000A"),
        ('body = "bell\\u0007"', "U+0007"),
        ("title = '" + "x" * 300 + "'", "256-byte limit"),
    ],
)
def test_bad_rule_values_name_the_rule_and_key(tmp_path: Path, rule: str, fragment: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f"[[inactivity]]\nname='a'\nthreshold_days=3\n{rule}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    assert "inactivity[0]" in str(info.value)
    assert fragment in str(info.value)


def test_body_may_span_lines_and_use_each_rule_types_own_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "[[inactivity]]\nname='a'\nthreshold_days=3\nbody='''{display_name},\n{days_inactive:>3} days'''\n"
        "[[milestone]]\nname='m'\nmetric='hours'\nthresholds=[1]\nbody='{value:.1f} of {threshold_text}'\n"
        "[[certification_expiry]]\nname='c'\ntiers_days=[7]\nbody='{certification_type} {expires_on}'\n"
    )
    rules = load_rules(path)
    assert rules.inactivity[0].body.count("\n") == 1
    path.write_text("[[milestone]]\nname='m'\nmetric='hours'\nthresholds=[1]\nbody='{days_inactive}'\n")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_rules(path)


def test_default_templates_pass_their_own_checks() -> None:
    for rule in default_rules().all():
        for field in ("title", "body"):
            type(rule).model_validate({**rule.model_dump(), field: getattr(rule, field)})


def test_render_is_bounded_whatever_the_values() -> None:
    huge = "é" * 1_048_576
    title = render_title("Hello {display_name}!", {"display_name": huge})
    body = render_body("{display_name:>50000000} {display_name}", {"display_name": huge + "\x00"})
    assert len(title.encode()) <= TITLE_MAX_BYTES and title.endswith("…")
    assert len(body.encode()) <= BODY_MAX_BYTES and body.endswith("…")
    assert render_title("a\x00b\nc {x}", {"x": "d\te\x07"}) == "ab c d e"
    assert render_body("line\n{x}", {"x": "one\ntwo\x00"}) == "line\none\ntwo"
