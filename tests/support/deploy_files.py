"""Shared by tests/unit/test_deploy_files.py and tests/process/test_deploy_files.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "systemd" / "scenario-engine.service"
MIGRATE = ROOT / "systemd" / "scenario-engine-migrate.service"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"
PYPROJECT = ROOT / "pyproject.toml"
VENV = "/opt/scenario-engine"
BINARY = f"{VENV}/bin/scenario-engine"
EXIT_CONFIG = 2

Unit = dict[str, dict[str, list[str]]]


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


# --- a fresh install finds the rules file the unit points at --------------------------------


def _shared_data() -> dict[str, str]:
    """pyproject's wheel shared-data: source in the checkout → path under the venv."""
    config = tomllib.loads(PYPROJECT.read_text())
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    mapping: dict[str, str] = wheel.get("shared-data", {})
    return mapping
