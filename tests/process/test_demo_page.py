"""`make demo` as a programme lead first sees it: the programme page within a minute of start.

Issue 17 ("Done means"): on a fresh data directory, within 60 s of start, the programme page shows
a measured difference with its range for at least one kind of message of one organisation,
organisation names, and renewals; the screenshots are kept as test artifacts. The demo runs as
`make demo` runs it (default population), with its status server on a free port; the page is
read by a real headless Chromium, at 1280 and 400 px, with the status page beside it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from tests.process.test_demo import _postgres_pids
from tests.process.test_programme_page import ARTIFACTS, browser, number_in
from tests.process.test_status_page import chromium_binary
from tests.support.cli import cli_env
from tests.support.status_page import Node

pytestmark = pytest.mark.acceptance

READY_WITHIN_SECONDS = 60.0
UUID_NAME = re.compile(r"Organisation [0-9a-f]{8}-[0-9a-f]{4}-")


@dataclass(frozen=True)
class Seen:
    """What the programme page showed, in the terms of "Done means"."""

    measured: tuple[str, ...]  # summary rows with a difference and its range
    organisations: tuple[str, ...]  # the organisations' headings
    renewed: int  # certifications renewed in time, over all organisations

    @property
    def named(self) -> bool:
        return bool(self.organisations) and not any(UUID_NAME.match(o) for o in self.organisations)

    @property
    def ready(self) -> bool:
        return bool(self.measured) and self.named and self.renewed > 0


def seen_on(dom: Node) -> Seen:
    measured = []
    try:
        table = dom.by_id("summary-table")
    except AssertionError:
        return Seen((), (), 0)
    for tr in table.iter("tr"):
        if tr.attrs.get("data-measured") == "yes":
            cells = {td.attrs["data-field"]: td for td in tr.iter("td")}
            assert "points" in cells["difference"].text and " to " in cells["difference"].text
            measured.append(tr.attrs["data-row"])
    headings = tuple(h.text for s in dom.iter("section") if "org" in s.classes for h in s.iter("h2")[:1])
    renewed = sum(
        number_in(d.iter("span")[0].text) for d in dom.iter("div") if d.attrs.get("data-figure") == "renewed"
    )
    return Seen(tuple(measured), headings, renewed)


class Output:
    """The demo's output, read by a thread (its feed never stops)."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._stream = proc.stdout
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the process ended: the rest of its output read, the pipe closed."""
        self._thread.join(timeout=10)
        self._stream.close()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(str(line).rstrip())

    def status_url(self) -> str | None:
        for line in self.lines:
            if "status page: " in line:
                return line.split("status page: ", 1)[1].strip()
        return None


async def test_demo_programme_page_shows_a_difference_names_and_renewals_within_a_minute(
    tmp_path: Path,
) -> None:
    chromium_binary()
    ARTIFACTS.mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="scenario-demo-page-", dir="/var/tmp"))
    base.chmod(0o755)
    data_dir = base / "pg"
    cmd = [sys.executable, "-m", "scenario_engine", "demo", "--data-dir", str(data_dir), "--status-port", "0"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=cli_env(), text=True)
    output = Output(proc)
    seen = Seen((), (), 0)
    try:
        url = None
        while url is None and time.monotonic() - started < READY_WITHIN_SECONDS:
            assert proc.poll() is None, "\n".join(output.lines[-40:])
            await anyio.sleep(0.2)
            url = output.status_url()
        assert url is not None, "no status page within a minute:\n" + "\n".join(output.lines[-40:])
        async with browser(tmp_path / "profile") as tools:
            while True:
                seen = seen_on(await tools.open(f"{url}programme", 1280))
                if seen.ready or time.monotonic() - started > READY_WITHIN_SECONDS:
                    break
                await anyio.sleep(2)
            ready_after = time.monotonic() - started
            # The pictures, whatever the page showed: they are what a person looks at.
            await tools.screenshot(ARTIFACTS / "demo-programme-1280.png")
            await tools.screenshot_of("#summary", ARTIFACTS / "demo-programme-summary-1280.png")
            await tools.open(f"{url}programme", 400, mobile=True)
            await tools.screenshot(ARTIFACTS / "demo-programme-400.png")
            await tools.open(url, 1280)
            await tools.screenshot(ARTIFACTS / "demo-status-1280.png")
            await tools.open(url, 400, mobile=True)
            await tools.screenshot(ARTIFACTS / "demo-status-400.png")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        output.close()
        for pid in _postgres_pids(data_dir):
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(base)], check=False)

    assert seen.measured, f"no measured difference on the demo's programme page after {ready_after:.0f} s"
    assert seen.named, f"organisations shown by id, not by name: {seen.organisations}"
    assert seen.renewed > 0, "no certification renewed in time on the demo's programme page"
    assert ready_after <= READY_WITHIN_SECONDS + 5
