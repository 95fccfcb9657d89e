"""Personal data in the engine's schema: retention pruning and erasure (``forget``).

The decision log, the notifications and the push outbox hold display names and activity
facts. They are needed while a decision may still be explained or a push sent; after the
retention period only what keeps the engine from notifying twice must stay: the
``scenario_notification`` rows and their dedup keys, the decision log's (dedup key, outcome)
rows and the cooldown state. So the pruner strips inputs and contexts and deletes finished
pushes, and never deletes what dedup reads. docs/PRIVACY.md is the user-facing account.

This module holds the data operations only; the daemon's loop that runs the pruner on an
interval is runtime/retention.py.

Erasure is generic on purpose: ``forget`` discovers the engine's tables and columns from the
catalogue at run time, so a table that a later migration adds is erased too (a test adds one).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import asyncpg

from scenario_engine.db.connect import ENGINE_SCHEMA, Conn, mark_engine_write
from scenario_engine.db.queries import execute, fetch, fetchval

# Seconds a `forget` waits for a row lock held by a running engine transaction before it
# gives up (exit 1, nothing changed) instead of hanging behind a stuck session.
FORGET_LOCK_TIMEOUT = "30s"


# --- retention ------------------------------------------------------------------------


@dataclass
class PruneStats:
    notifications_redacted: int = 0
    decisions_redacted: int = 0
    pushes_deleted: int = 0
    more: bool = False  # stopped at max_batches with work left

    @property
    def total(self) -> int:
        return self.notifications_redacted + self.decisions_redacted + self.pushes_deleted


_PRUNE_STEPS = (
    ("notifications_redacted", "privacy_redact_notifications"),
    ("decisions_redacted", "privacy_redact_decisions"),
    ("pushes_deleted", "privacy_delete_finished_pushes"),
)


def _rows(status: str) -> int:
    """Row count of an asyncpg command status ('UPDATE 12', 'DELETE 0')."""
    return int(status.rsplit(" ", 1)[-1])


async def prune_personal_data(
    conn: Conn,
    *,
    as_of: dt.datetime,
    retention: dt.timedelta,
    batch_size: int,
    max_batches: int | None = None,
) -> PruneStats:
    """Strip and delete what is older than ``as_of - retention``, one short transaction per
    batch, until nothing is left (or ``max_batches`` per kind, so a huge first run yields to
    the stop signal between rounds). ``as_of`` instead of the clock: tests and dry runs."""
    cutoff = as_of - retention
    stats = PruneStats()
    for attr, name in _PRUNE_STEPS:
        batches = 0
        while max_batches is None or batches < max_batches:
            async with conn.transaction():
                await mark_engine_write(conn)
                done = _rows(await execute(conn, name, cutoff=cutoff, batch_size=batch_size))
            setattr(stats, attr, getattr(stats, attr) + done)
            batches += 1
            if done < batch_size:
                break
        else:
            stats.more = True
    return stats


# --- erasure --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # 'uuid' | 'uuid_array' | 'text'


@dataclass
class EngineTable:
    name: str
    columns: list[_Column] = field(default_factory=list)


@dataclass
class ForgetReport:
    """Rows per engine table that named the mentor (deleted, or to be deleted on a dry run)."""

    dry_run: bool
    rows: dict[str, int]
    mentor_exists: bool | None  # None: the platform's mentor table is missing or unreadable

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def quote_ident(name: str) -> str:
    """An SQL identifier as Postgres's quote_ident would always write it (double-quoted)."""
    return '"' + name.replace('"', '""') + '"'


async def engine_tables(conn: Conn, schema: str = ENGINE_SCHEMA) -> list[EngineTable]:
    """Every table of the engine's schema with its id-bearing columns, from the catalogue."""
    tables: dict[str, EngineTable] = {}
    for r in await fetch(conn, "privacy_engine_columns", schema=schema):
        table = tables.setdefault(r["table_name"], EngineTable(r["table_name"]))
        if r["column_name"] is not None:
            table.columns.append(_Column(r["column_name"], r["kind"]))
    return list(tables.values())


def _predicate(columns: list[_Column]) -> str | None:
    """Rows naming the mentor: $1 the id, $2 its text form (lower case, as uuid::text)."""
    parts = []
    for c in columns:
        col = quote_ident(c.name)
        if c.kind == "uuid":
            parts.append(f"{col} = $1::uuid")
        elif c.kind == "uuid_array":
            parts.append(f"$1::uuid = ANY ({col})")
        else:
            parts.append(f"strpos(lower({col}::text), $2::text) > 0")
    if not parts:
        return None
    # both parameters always appear, whichever kinds of column the table has
    return f"$1::uuid IS NOT NULL AND $2::text IS NOT NULL AND ({' OR '.join(parts)})"


async def mentor_exists(conn: Conn, mentor_id: uuid.UUID) -> bool | None:
    try:
        async with conn.transaction():
            return bool(await fetchval(conn, "privacy_mentor_exists", mentor_id=mentor_id))
    except (asyncpg.UndefinedTableError, asyncpg.InsufficientPrivilegeError):
        return None


async def forget_mentor(
    conn: Conn, mentor_id: uuid.UUID, *, dry_run: bool = False, schema: str = ENGINE_SCHEMA
) -> ForgetReport:
    """Erase every row of the engine's schema that names ``mentor_id`` — by a uuid column, a
    uuid array, or its text anywhere in a text or JSON column — in one engine-marked
    transaction; on a dry run, count them and change nothing.

    Each table is read once (the text search cannot use an index): an operator command,
    not a hot path. The statements are composed here, not kept in a .sql file, because the
    tables and columns are only known from the catalogue. Rows locked by a running engine
    transaction are waited for, up to ``FORGET_LOCK_TIMEOUT``; then the whole erasure rolls
    back (all or nothing)."""
    exists = await mentor_exists(conn, mentor_id)
    rows: dict[str, int] = {}
    async with conn.transaction():
        await mark_engine_write(conn)
        await conn.execute(f"SET LOCAL lock_timeout = '{FORGET_LOCK_TIMEOUT}'")
        for table in await engine_tables(conn, schema):
            predicate = _predicate(table.columns)
            if predicate is None:
                rows[table.name] = 0
                continue
            target = f"{quote_ident(schema)}.{quote_ident(table.name)}"
            if dry_run:
                n = await conn.fetchval(
                    f"SELECT count(*) FROM {target} WHERE {predicate}", mentor_id, str(mentor_id)
                )
                rows[table.name] = int(n)
            else:
                status = await conn.execute(
                    f"DELETE FROM {target} WHERE {predicate}", mentor_id, str(mentor_id)
                )
                rows[table.name] = _rows(status)
    return ForgetReport(dry_run=dry_run, rows=rows, mentor_exists=exists)


STILL_EXISTS_NOTE = (
    "the mentor still exists in public.peer_mentor: the engine will evaluate them afresh on the "
    "next sweep or event — their dedup history, cooldowns and decision log are gone, so a "
    "reminder they already had may be sent again"
)
