"""Every kind of bad file at the rules path, as an operator's mistake would leave it: bytes
that are not UTF-8, a directory, a FIFO (nobody writing: reading it would wait forever), a
socket, a dangling symlink (a ConfigMap mid-update), a file the engine's user cannot read (when the
tests do not run as root, who reads anything), a file too large to be rules, invalid TOML.

A SIGHUP with any of them is a rejected reload — the process stays up, /healthz answers, the
log says ``rules_reload_rejected`` with the reason, the metric counts it, the old rules stay
— and ``check-config`` and ``run`` refuse each with exit 2 and one line naming the file.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scenario_engine.exit_codes import EXIT_CONFIG
from tests.support.cli import run_cli
from tests.support.factories import add_activity, add_mentor
from tests.support.faults import alive, eventually

pytestmark = [pytest.mark.faults, pytest.mark.acceptance]

GOOD_RULES = """
daily_cap = 100
[[milestone]]
name = "sessions_year"
metric = "sessions"
thresholds = [2]
"""


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _non_utf8(path: Path) -> None:
    path.write_bytes(b"daily_cap = 3\n# caf\xe9 \xff\n")


def _directory(path: Path) -> None:
    path.mkdir()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "gone" / "rules.toml")


def _unreadable(path: Path) -> None:
    path.write_text(GOOD_RULES)
    path.chmod(0)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:  # the file stays after the socket closes
        sock.bind(str(path))


def _oversized(path: Path) -> None:
    path.write_text("# padding\n" * 120_000)  # 1.2 MB: a log file, not a rules file


def _invalid_toml(path: Path) -> None:
    path.write_text("[[milestone]\nname = ")


# kind → (how to make it, what the rejection says)
BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "non_utf8": (_non_utf8, "not UTF-8"),
    "directory": (_directory, "not a regular file (a directory)"),
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "socket": (_socket, "not a regular file (a socket)"),
    "dangling_symlink": (_dangling_symlink, "dangling symlink"),
    "oversized": (_oversized, "larger than"),
    "invalid_toml": (_invalid_toml, "not valid TOML"),
}
if os.geteuid() != 0:  # root reads a mode-000 file; the dangling symlink stands in for it
    BAD_FILES["unreadable"] = (_unreadable, "permission denied")


def _make(path: Path, kind: str) -> None:
    _clear(path)
    BAD_FILES[kind][0](path)


async def test_sighup_with_every_kind_of_bad_rules_file_is_a_rejected_reload(
    daemons: Any, pool: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(GOOD_RULES)
    d = daemons(rules_file=rules, poll_interval_seconds=0.5)
    await d.wait_ready()

    def rejections() -> list[dict[str, Any]]:
        return [e for e in d.log_events() if e["event"] == "rules_reload_rejected"]

    for n, (kind, (_, says)) in enumerate(BAD_FILES.items(), start=1):
        _make(rules, kind)
        d.signal(signal.SIGHUP)

        async def rejected(n: int = n, kind: str = kind) -> bool:
            assert alive(d), f"the daemon died on a SIGHUP with a {kind} rules file:\n{d.logs()[-3000:]}"
            return len(rejections()) >= n

        await eventually(rejected, timeout=20, what=f"{kind} rejected", d=d)
        assert any(says in err for err in rejections()[-1]["errors"]), (kind, rejections()[-1])
        code, _ = await d.http("/healthz")  # the event loop was never blocked (the FIFO)
        assert code == 200, kind
        assert alive(d), kind
    assert await d.metric('scenario_rules_reloads_total{result="rejected"}') == len(BAD_FILES)

    # the old rules are still in force ...
    now = dt.datetime.now(dt.UTC)
    mentor = await add_mentor(pool, joined_at=now - dt.timedelta(days=1))
    await add_activity(pool, mentor, now - dt.timedelta(minutes=2))
    await add_activity(pool, mentor, now - dt.timedelta(minutes=1))
    await eventually(
        lambda: pool.fetchval("SELECT count(*) = 1 FROM scenario_notification"),
        timeout=20,
        what="old rules still applied",
        d=d,
    )
    # ... and a good file is applied again
    _clear(rules)
    rules.write_text(GOOD_RULES.replace("[2]", "[2, 3]"))
    d.signal(signal.SIGHUP)

    async def reloaded() -> bool:
        return any(e["event"] == "rules_reloaded" for e in d.log_events())

    await eventually(reloaded, timeout=20, what="good rules reloaded", d=d)
    assert await d.stop() == 0


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("kind", list(BAD_FILES))
async def test_every_kind_of_bad_rules_file_is_a_configuration_error(
    kind: str, command: str, tmp_path: Path
) -> None:
    """Exit 2 and one line naming the file, before any connection (the URL leads nowhere)."""
    rules = tmp_path / "rules.toml"
    _make(rules, kind)
    done = await run_cli(
        command,
        "--config",
        str(rules),
        env={"SCENARIO_DATABASE_URL": "postgresql://engine@127.0.0.1:1/nowhere"},
        timeout=30,
    )
    assert done.returncode == EXIT_CONFIG, (done.returncode, done.stderr)
    assert f"{rules}: " in done.stderr and BAD_FILES[kind][1] in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
