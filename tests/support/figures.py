"""The fault suite's figures: what each fault test injected and what the ledger said after.

Every test of tests/faults records one entry; at the end of the run the entries are merged
into ``test-artifacts/fault-figures.json`` (entries of tests that did not run this time are
kept, each with the time it was measured). docs/RELIABILITY.md quotes one full run.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIGURES_PATH = REPO / "test-artifacts" / "fault-figures.json"


@dataclass
class Figures:
    """One test's counts. ``lost`` is everything the ledger check would call lost: events
    neither processed nor dead-lettered, notifications without a push, pushes without a
    terminal status, pushes recorded sent that the gateway never received, and decisions a
    dry-run sweep afterwards would still send. ``duplicate_deliveries`` counts repeated
    arrivals of one Idempotency-Key at the gateway."""

    test: str
    faults_injected: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    events: int = 0
    events_dead_lettered: int = 0
    notifications: int = 0
    pushes: int = 0
    push_statuses: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicate_deliveries: int = 0
    duplicate_bound: int | None = None
    quarantined: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def fault(self, kind: str, n: int = 1) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + n
        self.faults_injected += n


def write_figures(entries: list[Figures], path: Path = FIGURES_PATH) -> None:
    """Merge this run's entries into the figures file, keyed by test. Under an exclusive lock:
    each pytest-xdist worker merges its own entries at its end, and none may lose another's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / (path.name + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _merge(entries, path)


def _merge(entries: list[Figures], path: Path) -> None:
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    tests: dict[str, Any] = data.get("tests", {})
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    for entry in entries:
        tests[entry.test] = {**asdict(entry), "measured_at": now}
    totals: dict[str, int] = {}
    for key in ("faults_injected", "events", "notifications", "pushes", "lost", "duplicate_deliveries"):
        totals[key] = sum(int(t.get(key, 0)) for t in tests.values())
    path.write_text(json.dumps({"tests": dict(sorted(tests.items())), "totals": totals}, indent=2) + "\n")
