"""The development tooling (``scenario_engine.dev``: private cluster, demo, schema snapshot) is a
package the daemon's production modules never import (issue 19 item 5). The import-linter
contract ``dev-tooling`` (.importlinter) checks the import statements; this checks the running
interpreter: importing every production module, and running a command, loads nothing of it."""

from __future__ import annotations

import subprocess
import sys

from tests.support.cli import cli_env

PRODUCTION_IMPORTS = """
import importlib, pathlib, sys
import scenario_engine
root = pathlib.Path(scenario_engine.__file__).parent
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root).with_suffix("").parts
    if parts[0] in ("dev", "__main__"):  # __main__ runs the command line
        continue
    name = ".".join(("scenario_engine", *parts)).removesuffix(".__init__")
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m == "scenario_engine.dev" or m.startswith("scenario_engine.dev."))
print(",".join(loaded) or "none")
"""


def test_no_production_module_loads_the_dev_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PRODUCTION_IMPORTS], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "none\n"


def test_the_command_line_loads_the_dev_package_only_for_demo() -> None:
    script = (
        "import sys\n"
        "from scenario_engine.cli import build_parser\n"
        "build_parser().parse_args(['demo', '--help'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script + "print('unreached')"],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and "--mentors" in out.stdout  # the demo's parser, no import of dev
    check = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, scenario_engine.cli.demo, scenario_engine.cli.app\n"
            "print(any(m.startswith('scenario_engine.dev') for m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.stdout == "False\n", check.stderr
