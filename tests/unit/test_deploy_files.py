"""Deployment files: the systemd units (verified by ``systemd-analyze``) and the Dockerfile
(linted by hadolint, plus the image rules of docs/DEPLOY.md). No database needed."""

from __future__ import annotations

import json
import re
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from scenario_engine.scenarios.rules import Rules, default_rules, load_rules
from scenario_engine.web.guard import MAX_CONNECTIONS
from tests.support.deploy_files import (
    BINARY,
    DEPLOY_DOC,
    DOCKERFILE,
    EXIT_CONFIG,
    MIGRATE,
    PYPROJECT,
    ROOT,
    SERVICE,
    VENV,
    _shared_data,
    parse_unit,
)

EXAMPLE_RULES = ROOT / "rules.example.toml"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("DynamicUser", "yes"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("ExecStart", f"{BINARY} run"),
    ],
)
def test_service_key(key: str, expected: str) -> None:
    service = parse_unit(SERVICE)["Service"]
    assert key in service, f"{key}= missing"
    assert service[key][-1] == expected


def test_service_watchdog_and_credential() -> None:
    service = parse_unit(SERVICE)["Service"]
    assert int(service["WatchdogSec"][-1]) > 0
    assert "database-url:/etc/scenario-engine/database-url" in service["LoadCredential"]
    assert "SCENARIO_DATABASE_URL_FILE=%d/database-url" in service["Environment"]
    unit = parse_unit(SERVICE)["Unit"]
    assert "scenario-engine-migrate.service" in unit["Requires"]


def test_service_sets_an_open_file_limit_with_room_beyond_the_status_connections() -> None:
    """The status server keeps at most half the soft file limit for its clients
    (runtime/status_guard.py); the unit sets the limit rather than inherit systemd's 1024."""
    limit = int(parse_unit(SERVICE)["Service"]["LimitNOFILE"][-1])
    assert limit >= 4 * MAX_CONNECTIONS


def test_migrate_unit_runs_once_with_the_same_hardening() -> None:
    migrate = parse_unit(MIGRATE)["Service"]
    assert migrate["Type"] == ["oneshot"]
    assert migrate["RemainAfterExit"] == ["yes"]
    assert migrate["ExecStart"] == [f"{BINARY} migrate --wait 120"]  # the database may still be booting
    service = parse_unit(SERVICE)["Service"]
    daemon_only = {"Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "ExecStart", "ExecReload"}
    daemon_only |= {"KillSignal", "TimeoutStopSec", "Environment", "LimitNOFILE"}
    shared = {key: values for key, values in service.items() if key not in daemon_only}
    assert {key: migrate.get(key) for key in shared} == shared


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        found.append((word.upper(), rest.strip()))
        pending = ""
    return found


def test_dockerfile_rules() -> None:
    steps = _instructions(DOCKERFILE.read_text())
    froms = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for i in froms:
        image = steps[i][1].split()[0]
        assert ":" in image, f"pin {image} by tag"
        assert not image.endswith(":latest"), f"pin {image} by a version tag"
    assert not any(word == "ADD" and "http" in args for word, args in steps), "no ADD of URLs"
    final = steps[froms[-1] :]

    def args(word: str) -> list[str]:
        return [rest for w, rest in final if w == word]

    assert args("USER"), "final stage must set USER"
    assert args("USER")[-1].split(":")[0] not in {"root", "0"}
    assert any("/healthz" in check for check in args("HEALTHCHECK"))
    assert json.loads(args("ENTRYPOINT")[-1])[0] == "scenario-engine"
    assert any(c.startswith("--from=") and "/opt/scenario-engine" in c for c in args("COPY"))


# --- bad configuration is not restarted (issue 9, defect 9) ---------------------------------


@pytest.mark.parametrize("unit", [SERVICE, MIGRATE], ids=lambda p: p.name)
def test_unit_does_not_restart_on_bad_configuration(unit: Path) -> None:
    """Exit 2 (bad configuration) can only repeat itself: a unit that restarts on it loops."""
    service = parse_unit(unit)["Service"]
    prevented = {code for line in service.get("RestartPreventExitStatus", []) for code in line.split()}
    assert str(EXIT_CONFIG) in prevented, f"{unit.name}: RestartPreventExitStatus must list {EXIT_CONFIG}"


def test_migrate_unit_is_not_restarted_by_systemd() -> None:
    """Its --wait rides out a booting database; a later retry could not start the daemon,
    whose start job has already failed with it."""
    migrate = parse_unit(MIGRATE)["Service"]
    assert migrate.get("Restart", ["no"])[-1] == "no"


# --- the shipped example rules file ---------------------------------------------------------


def test_example_rules_are_the_built_in_rules() -> None:
    """Copying the example changes nothing: a fresh install decides as the defaults do."""
    assert load_rules(EXAMPLE_RULES) == default_rules()


def _rule_types() -> dict[str, type[BaseModel]]:
    """Rules' list-of-rule fields: TOML table name → rule model."""
    found: dict[str, type[BaseModel]] = {}
    for name, info in Rules.model_fields.items():
        if typing.get_origin(info.annotation) is list:
            (item,) = typing.get_args(info.annotation)
            assert isinstance(item, type) and issubclass(item, BaseModel), name
            found[name] = item
    return found


def test_example_rules_spell_out_every_field() -> None:
    """Every field of every rule type (and of the file itself) is in the example, so that it
    documents the whole format; a field added to a model fails here until it is added."""
    text = EXAMPLE_RULES.read_text()
    data = tomllib.loads(text)
    types = _rule_types()
    assert set(types) == {"inactivity", "milestone", "certification_expiry", "anniversary"}
    top_level = set(Rules.model_fields) - set(types)
    # A key without a TOML value (quiet_hours: none by default) or a table of examples
    # (organizations, messages, display_names) is shown commented out, ready to uncomment.
    shown = set(data) | set(re.findall(r"^# ([a-z_]+) = ", text, re.M))
    shown |= set(re.findall(r"^# \[\[?([a-z_]+)[.\]]", text, re.M))
    assert top_level <= shown, f"top-level fields missing: {sorted(top_level - shown)}"
    for table, model in types.items():
        assert data.get(table), f"no [[{table}]] rule in the example"
        # scenario_type is implied by the table the rule is written in.
        wanted = set(model.model_fields) - {"scenario_type"}
        for rule in data[table]:
            assert wanted <= set(rule), f"[[{table}]] lacks {sorted(wanted - set(rule))}"


def test_example_rules_comment_every_field() -> None:
    lines = EXAMPLE_RULES.read_text().splitlines()
    for number, line in enumerate(lines):
        if not re.match(r"^[a-z_]+\s*=", line):
            continue
        above = next((prev for prev in reversed(lines[:number]) if prev.strip()), "")
        assert above.startswith("#"), (
            f"rules.example.toml:{number + 1}: {line.split('=')[0].strip()} has no comment"
        )


def test_image_build_copies_what_the_wheel_ships() -> None:
    """The builder stage builds the wheel from COPYed files: each file pyproject adds to the
    wheel (the SQL, the example rules) must be COPYed, or the image silently lacks it."""
    steps = _instructions(DOCKERFILE.read_text())
    final = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    copied = {src for word, args in steps[:final] if word == "COPY" for src in args.split()[:-1]}
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    for source in [*config.get("force-include", {}), *_shared_data()]:
        assert source in copied, f"Dockerfile builder stage does not COPY {source}"
    assert "rules.example.toml" in _shared_data()
    assert f"{VENV}/{_shared_data()['rules.example.toml']}" in DEPLOY_DOC.read_text()
