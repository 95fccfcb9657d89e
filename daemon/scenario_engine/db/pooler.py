"""Refuse transaction poolers at start, with a message that says what to connect to instead.

The engine needs a database session of its own: LISTEN, the leader's session advisory
lock and asyncpg's named prepared statements all live in the session. Behind a
transaction pooler (PgBouncer ``pool_mode = transaction``, Supabase's transaction pooler
on port 6543) consecutive transactions of one client run on whichever server connection
is free, so prepared statements collide (``DuplicatePreparedStatementError``), NOTIFYs
are never heard and the leader lock is held by nobody in particular. That fails later and
confusingly; this check fails at once and says why.

The probe: client A marks its session (a custom setting) and notes its backend pid; client
B opens a transaction and looks at its own backend; then A looks again. On a direct
connection or a session pooler, A keeps its backend and its mark and B never sees either.
Behind a transaction pooler B is handed A's idle server connection (PgBouncer reuses the
most recently released one), or A has to wait for, or is moved to, another server.
The probe uses unnamed statements only, so it works (and answers) behind any pooler.
"""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import asyncpg

from scenario_engine.db.queries import fetchrow
from scenario_engine.errors import find_in_group

PROBE_TIMEOUT = 5.0
SETTING = "scenario_engine.session_probe"

POOLER_ADVICE = (
    "the database URL leads to a transaction pooler (e.g. PgBouncer with pool_mode = transaction, "
    "or Supabase's transaction pooler on port 6543), but the engine needs a session of its own "
    "(LISTEN, advisory locks, prepared statements). Set SCENARIO_DATABASE_URL to a direct connection "
    "or a session-mode pooler instead: on Supabase the session pooler (port 5432 of the pooler host) or "
    "the direct connection; with PgBouncer a pool with pool_mode = session. See docs/DEPLOY.md."
)

# Errors only seen when one client's statements land on different server sessions.
POOLER_SYMPTOMS: tuple[type[BaseException], ...] = (
    asyncpg.DuplicatePreparedStatementError,
    asyncpg.InvalidSQLStatementNameError,
)


class TransactionPoolerError(Exception):
    """The database URL leads to a transaction pooler; the engine cannot run behind one."""

    def __init__(self, evidence: str):
        self.evidence = evidence
        super().__init__(f"{POOLER_ADVICE} (observed: {evidence})")


def pooler_symptom(exc: BaseException) -> BaseException | None:
    """The pooler symptom inside ``exc`` (or an exception group), if there is one."""
    return find_in_group(exc, _symptom)


def _symptom(exc: BaseException) -> BaseException | None:
    if isinstance(exc, POOLER_SYMPTOMS):
        return exc
    cause = exc.__cause__ or exc.__context__
    return pooler_symptom(cause) if cause is not None and cause is not exc else None


async def _probe_connection(dsn: str) -> asyncpg.Connection[Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn,
        statement_cache_size=0,
        timeout=PROBE_TIMEOUT,
        server_settings={"application_name": "scenario-engine session check"},
    )
    return conn


def session_verdict(
    pid_a: int, pid_b: int, seen_by_b: str | None, pid_a_again: int | None, seen_by_a: str | None, token: str
) -> str | None:
    """Pure judgement of the probe's observations: None for a session of our own, else why not."""
    if pid_b == pid_a or seen_by_b == token:
        return "a second client was given the first client's server session"
    if pid_a_again is None:
        return "a client had to wait for a server connection between two of its own statements"
    if pid_a_again != pid_a or seen_by_a != token:
        return "one client's consecutive statements ran in different server sessions"
    return None


async def check_session_pooling(dsn: str) -> None:
    """Raise ``TransactionPoolerError`` if ``dsn`` does not give each client its own session.

    Connection errors propagate unchanged (the caller retries them like any outage)."""
    token = secrets.token_hex(8)
    a = await _probe_connection(dsn)
    try:
        b = await _probe_connection(dsn)
        try:
            row = await fetchrow(a, "session_probe_set", setting=SETTING, token=token)
            assert row is not None
            pid_a: int = row["pid"]
            async with b.transaction():
                row_b = await fetchrow(b, "session_probe_read", setting=SETTING)
                assert row_b is not None
                pid_again: int | None = None
                seen_a: str | None = None
                with anyio.move_on_after(PROBE_TIMEOUT / 2):
                    row_a = await fetchrow(a, "session_probe_read", setting=SETTING)
                    assert row_a is not None
                    pid_again, seen_a = row_a["pid"], row_a["seen"]
            verdict = session_verdict(pid_a, row_b["pid"], row_b["seen"], pid_again, seen_a, token)
        finally:
            b.terminate()
    except BaseException as exc:
        symptom = pooler_symptom(exc)
        if symptom is not None:
            raise TransactionPoolerError(repr(symptom)) from exc
        raise
    finally:
        a.terminate()
    if verdict is not None:
        raise TransactionPoolerError(verdict)
