"""Versioned, checksummed, lock-serialised schema migrations, and the platform units.

Files are ``NNNN_name.sql`` anywhere under the ``sql/`` tree, applied in version order, each
in its own transaction together with its bookkeeping row, so a failing file leaves the
database as it was. A session advisory lock serialises concurrent runs (two hosts starting at
once): the second waits, then finds everything applied. An applied file whose text changed
is refused, because the database no longer matches what the repository says it is.

Versions 1–7 created the engine's objects in ``public``; 0008 gives the engine a schema of its
own and creates (fresh install) or moves (upgrade) everything into it. So the legacy files run
only to finish an installation that started with them; a fresh install skips them.

What touches the platform's tables — reference tables when missing, triggers, the engine's
indexes, the runtime role's grants — is not a versioned file but a unit (``db/units.py``),
checked at every run and handed to a DBA when this role may not apply it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from scenario_engine.db.connect import ENGINE_SCHEMA, PLATFORM_SCHEMA, SEARCH_PATH
from scenario_engine.db.queries import execute, fetchrow, fetchval, query
from scenario_engine.db.units import Unit, UnitError, UnitFile, UnitReport, apply_unit, apply_units

# pg_advisory_lock key: the bytes of "scenmigr" as a signed bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"scenmigr", "big", signed=True)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# The last version that created engine objects in public (see the module docstring).
LEGACY_LAST_VERSION = 7
RUNTIME_GROUP = "scenario_engine_runtime"

_BOOKKEEPING = f"""
CREATE SCHEMA IF NOT EXISTS {ENGINE_SCHEMA};
DO $$
BEGIN
    -- 0001–0007 kept the history in public: it moves with the engine.
    IF to_regclass('{PLATFORM_SCHEMA}.scenario_schema_migration') IS NOT NULL
       AND to_regclass('{ENGINE_SCHEMA}.scenario_schema_migration') IS NULL THEN
        ALTER TABLE {PLATFORM_SCHEMA}.scenario_schema_migration SET SCHEMA {ENGINE_SCHEMA};
    END IF;
END;
$$;
CREATE TABLE IF NOT EXISTS {ENGINE_SCHEMA}.scenario_schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""

# Before the versioned files: reference tables a fresh database lacks. After them: triggers,
# the engine's indexes on platform tables (CONCURRENTLY, so statement by statement), roles.
UNITS_BEFORE = [UnitFile("platform/reference.sql")]
UNITS_AFTER = [
    UnitFile("triggers/hooks.sql"),
    UnitFile("platform/indexes.sql", mode="each"),
    UnitFile("roles.sql", chain=True),
]


class MigrationError(RuntimeError):
    """A migration could not be applied or the applied history is inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class MigrationReport:
    applied: list[Migration]
    already_applied: list[Migration]
    units: UnitReport = field(default_factory=UnitReport)
    skipped_legacy: list[Migration] = field(default_factory=list)

    @property
    def needs_dba(self) -> bool:
        return bool(self.units.for_dba)


def sql_root() -> Path:
    """The schema tree: packaged inside the wheel, or the repository's ``sql/``."""
    packaged = Path(str(resources.files("scenario_engine"))) / "sql"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "sql"
    if repo.is_dir():
        return repo
    raise MigrationError(f"no sql/ directory found (looked in {packaged} and {repo})")


def discover(root: Path | None = None) -> list[Migration]:
    root = root or sql_root()
    found: dict[int, Migration] = {}
    for path in sorted(root.rglob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(
                f"two migrations share version {version}: {found[version].path} and {path.relative_to(root)}"
            )
        found[version] = Migration(
            version=version,
            name=match.group(2),
            path=str(path.relative_to(root)),
            sql=path.read_text("utf-8"),
        )
    if not found:
        raise MigrationError(f"no migration files found under {root}")
    return [found[v] for v in sorted(found)]


async def applied_checksums(conn: asyncpg.Connection[Any]) -> dict[int, tuple[str, str]]:
    rows = await conn.fetch(query("applied_migrations"))
    return {r["version"]: (r["name"], r["checksum"]) for r in rows}


async def _ensure_bookkeeping(conn: asyncpg.Connection[Any]) -> None:
    try:
        async with conn.transaction():
            await conn.execute(_BOOKKEEPING)
    except asyncpg.InsufficientPrivilegeError as exc:
        who = await conn.fetchrow(query("current_login"))
        user, db = (who["u"], who["d"]) if who is not None else ("?", "?")
        raise MigrationError(
            f"cannot create the engine's schema {ENGINE_SCHEMA!r} ({exc}). A DBA must run: "
            f'CREATE SCHEMA {ENGINE_SCHEMA} AUTHORIZATION "{user}";  (or GRANT CREATE ON DATABASE "{db}" '
            f'TO "{user}";) and then migrate again'
        ) from None


async def _apply_file(conn: asyncpg.Connection[Any], migration: Migration, *, legacy: bool) -> None:
    try:
        async with conn.transaction():
            # as they were written: 0001–0007 created in public; later files name engine
            # tables unqualified (they resolve in the engine schema first)
            await conn.execute(f"SET LOCAL search_path = {PLATFORM_SCHEMA if legacy else SEARCH_PATH}")
            await conn.execute(migration.sql)
            await conn.execute(
                f"INSERT INTO {ENGINE_SCHEMA}.scenario_schema_migration (version, name, checksum) "
                "VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"migration {migration.path} failed and was rolled back: {exc}") from exc


async def _grant_runtime(conn: asyncpg.Connection[Any], roles: list[str], report: UnitReport) -> None:
    """``--grant-runtime``: one unit per role, run like the others (a DBA's when this role may not)."""
    group_deferred = any(unit.name == "runtime_group" for unit, _ in report.for_dba)
    for role in roles:
        if not await fetchval(conn, "role_exists", role=role):
            raise MigrationError(
                f"--grant-runtime: role {role!r} does not exist (create it first: "
                f"CREATE ROLE \"{role}\" LOGIN PASSWORD '…')"
            )
        ident, literal = await fetchrow(conn, "quote_role", role=role) or (
            role,
            role,
        )
        present = f"SELECT pg_has_role({literal}, '{RUNTIME_GROUP}', 'MEMBER')"
        unit = Unit("--grant-runtime", f"grant_runtime_{role}", present, f"GRANT {RUNTIME_GROUP} TO {ident};")
        await apply_unit(conn, unit, report, after_deferred=group_deferred)


async def _lock(conn: asyncpg.Connection[Any]) -> None:
    """Serialise migrators. Poll instead of blocking in pg_advisory_lock: a session blocked in a
    statement holds a snapshot, and CREATE INDEX CONCURRENTLY (sql/platform/indexes.sql) waits
    for every snapshot — including the waiters of the lock its own session holds (a deadlock)."""
    while True:
        if await fetchval(conn, "migration_try_lock", key=MIGRATION_LOCK_KEY):
            return
        await anyio.sleep(0.2)


async def migrate(
    conn: asyncpg.Connection[Any],
    migrations: list[Migration] | None = None,
    *,
    grant_runtime: list[str] | None = None,
    units: bool = True,
) -> MigrationReport:
    """Apply every pending migration and unit; refuse if an applied migration was edited.

    ``grant_runtime`` names login roles to make members of the runtime group. ``units=False``
    applies the versioned files only (tests of the migration machinery)."""
    migrations = migrations if migrations is not None else discover()
    root = sql_root()
    await _lock(conn)
    try:
        await _ensure_bookkeeping(conn)
        done = await applied_checksums(conn)
        for migration in migrations:
            if migration.version in done:
                _name, checksum = done[migration.version]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.path} (version {migration.version}) was edited "
                        f"after it was applied: the database recorded checksum {checksum[:12]}…, "
                        f"the file now has {migration.checksum[:12]}…. Never edit an applied "
                        "migration; add a new one instead."
                    )
        # Legacy files only finish an installation they started (and 0008 not yet applied).
        legacy_install = any(v <= LEGACY_LAST_VERSION for v in done) and not any(
            v > LEGACY_LAST_VERSION for v in done
        )
        applied: list[Migration] = []
        already: list[Migration] = []
        skipped: list[Migration] = []
        pending: list[Migration] = []
        for migration in migrations:
            if migration.version in done:
                already.append(migration)
            elif migration.version <= LEGACY_LAST_VERSION and not legacy_install:
                skipped.append(migration)
            else:
                pending.append(migration)
        unit_report = UnitReport()
        for migration in [m for m in pending if m.version <= LEGACY_LAST_VERSION]:
            await _apply_file(conn, migration, legacy=True)
            applied.append(migration)
        try:
            if units:
                await apply_units(conn, root, UNITS_BEFORE, unit_report)
            for migration in [m for m in pending if m.version > LEGACY_LAST_VERSION]:
                await _apply_file(conn, migration, legacy=False)
                applied.append(migration)
            if units:
                await apply_units(conn, root, UNITS_AFTER, unit_report)
                await _grant_runtime(conn, list(grant_runtime or []), unit_report)
        except UnitError as exc:
            raise MigrationError(str(exc)) from exc
        return MigrationReport(
            applied=applied, already_applied=already, units=unit_report, skipped_legacy=skipped
        )
    finally:
        await execute(conn, "migration_unlock", key=MIGRATION_LOCK_KEY)
