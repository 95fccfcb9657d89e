"""Idempotent SQL units for what versioned migrations cannot own: the platform's tables.

A versioned migration is all-or-nothing and runs once. The engine's triggers and indexes on
the platform's tables, the reference tables it creates when they are missing, and the runtime
role's grants are different: whether they can be applied depends on who owns the platform's
tables and whether the migrating role may create roles. So each is a *unit* — a named block of
SQL with a ``-- present:`` query that says whether it is already in place — that ``migrate``
checks every time, applies when missing, and, when the migrating role lacks the privilege,
hands to a DBA as text instead of stopping half-way.

File format (like the named queries)::

    -- unit: name
    -- present: SELECT …            (one line; optional: without it the unit always runs)
    -- any other comment lines
    SQL …
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncpg

from scenario_engine.db.connect import Conn

_UNIT = re.compile(r"^--\s*unit:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_PRESENT = re.compile(r"^--\s*present:\s*(.+)$", re.MULTILINE)
# Errors that mean "this role may not do that here" — a DBA's job, not a failure of migrate.
NEEDS_DBA: tuple[type[BaseException], ...] = (
    asyncpg.InsufficientPrivilegeError,
    asyncpg.InvalidGrantorError,
)

Mode = Literal["whole", "each"]


@dataclass(frozen=True)
class Unit:
    source: str
    name: str
    present: str | None
    sql: str
    mode: Mode = "whole"

    def chunks(self) -> list[str]:
        """What to send, one chunk per round trip: the whole unit, or each statement."""
        return [self.sql] if self.mode == "whole" else self.statements()

    def statements(self) -> list[str]:
        """Statements of an ``each`` unit (no dollar-quoted bodies there: split on ``;``)."""
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [s.strip() for s in body.split(";") if s.strip()]


@dataclass(frozen=True)
class UnitFile:
    """A file of units. ``each``: every statement on its own, outside a transaction (needed by
    CREATE INDEX CONCURRENTLY). ``chain``: a unit deferred to the DBA defers the ones after
    it (they depend on it, e.g. grants on a role that could not be created)."""

    path: str
    mode: Mode = "whole"
    chain: bool = False


@dataclass
class UnitReport:
    applied: list[str] = field(default_factory=list)
    for_dba: list[tuple[Unit, str]] = field(default_factory=list)  # (unit, why)


def parse_units(text: str, source: str) -> list[Unit]:
    units: list[Unit] = []
    matches = list(_UNIT.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        block = text[match.end() : end]
        present = _PRESENT.search(block)
        sql = _PRESENT.sub("", block).strip()
        if not any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines()):
            raise ValueError(f"unit {match.group(1)!r} in {source} has no SQL")
        units.append(Unit(source, match.group(1), present.group(1).strip() if present else None, sql))
    names = [u.name for u in units]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"units defined twice in {source}: {sorted(duplicates)}")
    return units


def load_units(root: Path, spec: UnitFile) -> list[Unit]:
    units = parse_units((root / spec.path).read_text("utf-8"), spec.path)
    return [Unit(u.source, u.name, u.present, u.sql, spec.mode) for u in units]


async def is_present(conn: Conn, unit: Unit) -> bool:
    """Whether the unit's ``present`` query says it is in place (a unit without one never is)."""
    if unit.present is None:
        return False
    try:
        async with conn.transaction():
            return bool(await conn.fetchval(unit.present))
    except asyncpg.PostgresError as exc:
        # e.g. a role or schema that an earlier, deferred unit would have created. Only such an
        # error means "not there": a cancelled query or a shutting-down server says nothing about
        # the unit, and must not be reported as a missing hook (runtime/hooks.py).
        if not names_a_missing_object(exc):
            raise
        return False


def names_a_missing_object(exc: asyncpg.PostgresError) -> bool:
    """SQLSTATE class 42 (undefined object, table, function; no privilege) or 3F000 (no such
    schema): what a present query meets when the thing it looks for is not there."""
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("42") or state == "3F000"


async def _apply(conn: asyncpg.Connection[Any], unit: Unit) -> None:
    if unit.mode == "whole":
        async with conn.transaction():
            await conn.execute(unit.sql)
        return
    for statement in unit.statements():  # outside a transaction (CONCURRENTLY)
        await conn.execute(statement)


async def apply_units(
    conn: asyncpg.Connection[Any], root: Path, specs: list[UnitFile], report: UnitReport | None = None
) -> UnitReport:
    """Check and apply every unit of ``specs`` in order; collect what needs a DBA."""
    report = report if report is not None else UnitReport()
    for spec in specs:
        deferred = False
        for unit in load_units(root, spec):
            handed_over = await apply_unit(conn, unit, report, after_deferred=deferred)
            deferred = deferred or (handed_over and spec.chain)
    return report


async def apply_unit(
    conn: asyncpg.Connection[Any], unit: Unit, report: UnitReport, *, after_deferred: bool = False
) -> bool:
    """Check one unit and apply it if missing; True if it was handed to the DBA instead.

    ``after_deferred``: a unit it depends on went to the DBA, so this one cannot work either."""
    if await is_present(conn, unit):
        return False
    if after_deferred:
        report.for_dba.append((unit, "depends on a unit above that needs a DBA"))
        return True
    try:
        await _apply(conn, unit)
    except NEEDS_DBA as exc:
        report.for_dba.append((unit, str(exc)))
        return True
    except asyncpg.PostgresError as exc:
        raise UnitError(f"{unit.source}: unit {unit.name} failed: {exc}") from exc
    if unit.present is not None and not await is_present(conn, unit):
        # e.g. GRANT by a role without grant option: a warning, not an error
        report.for_dba.append((unit, "applied without effect (insufficient privilege)"))
        return True
    report.applied.append(unit.name)
    return False


class UnitError(RuntimeError):
    """A unit failed for a reason other than a missing privilege."""


def dba_chunks(report: UnitReport) -> list[str]:
    """The DBA's work as round trips (CREATE INDEX CONCURRENTLY must not share one)."""
    return [chunk for unit, _ in report.for_dba for chunk in unit.chunks()]


def dba_script(report: UnitReport) -> str:
    """The statements a DBA (a superuser, or the platform tables' owner) must run, as one psql
    script: psql sends each statement on its own, as CONCURRENTLY requires."""
    parts = [
        "-- scenario-engine: statements that need the owner of the platform tables or a superuser.",
        "-- Run them (e.g. psql -v ON_ERROR_STOP=1 -f this-file), then `scenario-engine migrate` again.",
    ]
    for unit, why in report.for_dba:
        parts.append(f"\n-- {unit.source} · {unit.name} ({why.splitlines()[0]})")
        parts.append(unit.sql if unit.sql.rstrip().endswith(";") else unit.sql + ";")
    return "\n".join(parts) + "\n"
