"""`make test` brings what its tests need (issue 16, item 12): the system programs the tests
drive are listed once, in scripts/test-tools, which installs the missing ones with apt-get as
root and otherwise stops before the tests with one line naming the command to run; CI's
.ci/run is nothing but `make test`. No database needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.make_test import SCRIPT, listed_tools


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
