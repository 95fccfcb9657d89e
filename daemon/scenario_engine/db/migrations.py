"""Versioned, checksummed, lock-serialised schema migrations.

Files are ``NNNN_name.sql`` anywhere under the ``sql/`` tree (triggers live in
``sql/triggers/``), applied in version order, each in its own transaction together with
its bookkeeping row, so a failing file leaves the database as it was. A session advisory
lock serialises concurrent runs (two hosts starting at once): the second waits, then
finds everything applied. An applied file whose text changed is refused, because the
database no longer matches what the repository says it is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg

# pg_advisory_lock key: the bytes of "scenmigr" as a signed bigint.
MIGRATION_LOCK_KEY = int.from_bytes(b"scenmigr", "big", signed=True)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS scenario_schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


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
    rows = await conn.fetch("SELECT version, name, checksum FROM scenario_schema_migration")
    return {r["version"]: (r["name"], r["checksum"]) for r in rows}


async def migrate(
    conn: asyncpg.Connection[Any], migrations: list[Migration] | None = None
) -> MigrationReport:
    """Apply every pending migration; refuse if an applied one was edited."""
    migrations = migrations if migrations is not None else discover()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_BOOKKEEPING)
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
        applied: list[Migration] = []
        already: list[Migration] = []
        for migration in migrations:
            if migration.version in done:
                already.append(migration)
                continue
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO scenario_schema_migration (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {migration.path} failed and was rolled back: {exc}") from exc
            applied.append(migration)
        return MigrationReport(applied=applied, already_applied=already)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
