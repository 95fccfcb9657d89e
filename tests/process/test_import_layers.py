"""The import-layer contract (.importlinter, run by ``make lint``): the package keeps its layers,
and an import that climbs back up — planted in a copy of the package — breaks the contract.

No database: import-linter reads the source (grimp parses it; nothing is imported). The copy
is put first on PYTHONPATH of a fresh ``lint-imports`` process, so the contract is checked
against it and not against the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "daemon" / "scenario_engine"
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_parent: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="1000")  # one line per import in the report
    if package_parent is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(package_parent), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", str(CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        cwd=package_parent or ROOT,
        timeout=120,
        check=False,
    )


def test_the_package_keeps_its_layers() -> None:
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


# (module the import is planted in, what it imports, the contract it breaks)
PLANTED = [
    # the cases: a database module, the domain, evaluation importing upwards
    ("db/queries.py", "scenario_engine.runtime.worker", "The daemon's layers"),
    ("domain/rule.py", "scenario_engine.scenarios.registry", "The daemon's layers"),
    ("isolation.py", "scenario_engine.runtime.backoff", "The daemon's layers"),
    ("privacy.py", "scenario_engine.runtime.worker", "The daemon's layers"),
    # a loop importing a page; a page importing the wiring; a loop importing the wiring
    ("runtime/metrics.py", "scenario_engine.web.status_view", "The loops never import the web pages"),
    ("web/status_view.py", "scenario_engine.runtime.app", "never import its wiring"),
    ("runtime/worker.py", "scenario_engine.runtime.scheduler", "The daemon: its wiring over the loops"),
    # one scenario package importing another
    ("scenarios/inactivity/oracle.py", "scenario_engine.scenarios.milestone.rule", "Scenario packages"),
]


@pytest.mark.parametrize(("module", "imported", "contract"), PLANTED)
def test_a_planted_upward_import_breaks_the_contract(
    tmp_path: Path, module: str, imported: str, contract: str
) -> None:
    copy = tmp_path / "scenario_engine"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\nimport {imported}  # planted upward import\n")

    done = lint_imports(tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    importer = "scenario_engine." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {imported}" in done.stdout, done.stdout
    broken = [line for line in done.stdout.splitlines() if " BROKEN" in line]  # "BROKEN (1 ignored import)"
    assert broken, done.stdout
    assert contract in done.stdout.split("BROKEN")[0], done.stdout
