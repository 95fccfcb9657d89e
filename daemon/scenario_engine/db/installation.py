"""Is this database ready for ``run``? Checked once at start, so that an unmigrated database,
a platform whose DBA has not yet run the hooks, or a role without the runtime grants is one
clear line and exit 2 — not a crash loop of "relation does not exist" or "permission denied".

Only what would make the daemon wrong or dead is fatal: the schema version, the change-capture
triggers (without them the event path is silently deaf) and the achievement unique index (the
milestone ledger's ON CONFLICT needs it). A missing performance index is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scenario_engine.db.connect import ENGINE_SCHEMA, Conn
from scenario_engine.db.migrations import LEGACY_LAST_VERSION, RUNTIME_GROUP, UNITS_AFTER, discover, sql_root
from scenario_engine.db.queries import fetchval, query
from scenario_engine.db.units import is_present, load_units

# Units without which `run` would misbehave; the others only cost speed.
REQUIRED_UNIT_FILES = ("triggers/hooks.sql",)
REQUIRED_UNITS = ("achievement_once_per_period_key",)


class InstallationError(RuntimeError):
    """The database is not ready for ``run`` (exit 2: the operator's to fix)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class InstallationReport:
    problems: list[str] = field(default_factory=list)  # fatal: exit 2
    warnings: list[str] = field(default_factory=list)
    # Problems that refuse a start but that a daemon already running lives with: a newer engine
    # migrated the database during a rolling upgrade (runtime/hooks.py logs them as warnings).
    start_only: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def check_installation(conn: Conn) -> InstallationReport:
    report = InstallationReport()
    if not await conn.fetchval(query("installation_schema_present")):
        report.problems.append(
            f"the database has no {ENGINE_SCHEMA} schema (or this role cannot see it): "
            "run `scenario-engine migrate` first"
        )
        return report
    user: str = await conn.fetchval(query("installation_current_user"))
    if not await fetchval(conn, "installation_role_may_run", runtime_group=RUNTIME_GROUP):
        report.problems.append(
            f"role {user!r} lacks the runtime grants: run `scenario-engine migrate --grant-runtime {user}` "
            "as the engine's owner"
        )
        return report
    applied = {r["version"] for r in await conn.fetch(query("installation_versions"))}
    expected = {m.version for m in discover() if m.version > LEGACY_LAST_VERSION}
    missing = sorted(expected - applied)
    if missing:
        report.problems.append(
            "the database is not migrated to this version (missing "
            + ", ".join(f"{v:04d}" for v in missing)
            + "): run `scenario-engine migrate`"
        )
    newer = sorted(v for v in applied - expected if v > LEGACY_LAST_VERSION)
    if newer:
        line = f"the database was migrated by a newer engine (versions {newer}): upgrade this one"
        report.problems.append(line)
        report.start_only.append(line)
    root = sql_root()
    for spec in UNITS_AFTER:
        if spec.path == "roles.sql":
            continue
        for unit in load_units(root, spec):
            if unit.present is None or await is_present(conn, unit):
                continue
            line = f"platform hook {unit.name} ({spec.path}) is not installed"
            if spec.path in REQUIRED_UNIT_FILES or unit.name in REQUIRED_UNITS:
                report.problems.append(line + ": run `scenario-engine migrate` (or the DBA script it prints)")
            else:
                report.warnings.append(line + " (queries are slower until it is)")
    return report
