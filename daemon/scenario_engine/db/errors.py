"""What a database error means, decided by its SQLSTATE class, not by a list of exception types.

Three kinds of failure reach the engine from Postgres, and each calls for a different answer:

* a **condition of the database** — the server is away, read-only after a failover, shutting
  down, out of disk or memory, a lock or statement timeout fired, a serialization failure or
  deadlock: nothing is wrong with the engine or the data; every work loop backs off and tries
  again, /readyz says 503 naming the condition, work resumes when it clears. A **schema
  mismatch** (a platform column, table or function that the engine's SQL names is missing; a
  privilege revoked) is treated alike, with the server's message naming the object, so that the
  daemon recovers by itself when the object comes back;
* a **data error** (SQLSTATE class 22: an invalid value, out of range, division by zero …): one
  row the engine cannot evaluate; evaluation isolates it and, confirmed on the mentor alone,
  quarantines it (isolation.py);
* anything else — a statement the server rejects for another reason (a syntax error, a
  constraint the engine's own write violates, an internal error): not the data's fault and not
  a passing condition. Batches fail and are retried; outside them it is a bug.

``condition_of`` is the one classifier every loop uses; the table in docs/RELIABILITY.md lists
the classes and what the daemon does with each.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from asyncpg.exceptions import InternalClientError
from asyncpg.exceptions._base import DataError as ClientDataError

DETAIL_LIMIT = 300  # characters of a server message kept in /readyz and /status

# Errors that mean "the database is (temporarily) unreachable": the connection is gone.
# InternalClientError ("another operation is in progress", "protocol in an unexpected
# state") is what asyncpg raises on a connection whose socket died mid-operation, e.g. a
# pool connection handed out once more after the server was restarted under it. The
# client-side DataError (a Python value that cannot be encoded) is an InterfaceError too,
# but says nothing about the connection: it is a data error (``is_data_error``).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    InternalClientError,
)

# Any database failure: for best-effort side queries (status page, goodbye, rule
# bookkeeping) that must never take a loop down.
DB_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)

UNREACHABLE = "database_unreachable"
SCHEMA_MISMATCH = "schema_mismatch"

# Exact SQLSTATEs first, then two-character classes.
_BY_SQLSTATE: dict[str, str] = {
    "25006": "database_read_only",  # read_only_sql_transaction: a replica, or a primary demoted by a failover
    "55P03": "lock_timeout",  # lock_not_available: lock_timeout, or NOWAIT
    "57014": "query_cancelled",  # query_canceled: statement_timeout, or pg_cancel_backend
    "57P01": "database_shutting_down",  # admin_shutdown
    "57P02": "database_shutting_down",  # crash_shutdown
    "57P03": "database_starting",  # cannot_connect_now: recovery, startup
    "57P04": UNREACHABLE,  # database_dropped
    "57P05": UNREACHABLE,  # idle_session_timeout
    "40001": "serialization_conflict",  # serialization_failure
    "40P01": "deadlock_detected",
    "53100": "disk_full",
    "53200": "out_of_memory",
    "53300": "too_many_connections",
    "53400": "configuration_limit_exceeded",
    "58030": "database_io_error",  # io_error
    "42703": SCHEMA_MISMATCH,  # undefined_column
    "42P01": SCHEMA_MISMATCH,  # undefined_table
    "42883": SCHEMA_MISMATCH,  # undefined_function
    "42704": SCHEMA_MISMATCH,  # undefined_object (a type, a collation)
    "3F000": SCHEMA_MISMATCH,  # invalid_schema_name
    "42501": "permission_denied",  # insufficient_privilege: a grant revoked
}
_BY_CLASS: dict[str, str] = {
    "08": UNREACHABLE,  # connection exception
    "40": "transaction_rollback",
    "53": "insufficient_resources",
    "57": "operator_intervention",
    "HV": "foreign_data_wrapper_error",
}
DATA_CLASS = "22"  # data exception


@dataclass(frozen=True)
class Condition:
    """A condition of the database: a short name for /readyz, the SQLSTATE (None for a lost
    connection) and the server's message, which names the object in a schema mismatch."""

    name: str
    sqlstate: str | None
    detail: str

    @property
    def reachable(self) -> bool:
        """Whether the server answered (read-only, timeouts, a missing column …) rather than
        the connection being gone."""
        return self.name != UNREACHABLE

    def view(self) -> dict[str, str | None]:
        return {"condition": self.name, "sqlstate": self.sqlstate, "detail": self.detail}


class ConditionError(Exception):
    """Raised by the engine itself to fail a unit of work for a named condition (e.g. a batch
    whose statement the server rejected): backed off and retried like the database's own."""

    def __init__(self, condition: Condition):
        super().__init__(f"{condition.name}: {condition.detail}")
        self.condition = condition


def sqlstate_of(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) and len(state) == 5 else None


def _detail(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, asyncpg.PostgresError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def _leaf_condition(exc: BaseException) -> Condition | None:
    if isinstance(exc, ConditionError):
        return exc.condition
    state = sqlstate_of(exc)
    if isinstance(exc, asyncpg.PostgresError) and state is not None:
        name = _BY_SQLSTATE.get(state) or _BY_CLASS.get(state[:2])
        return Condition(name, state, _detail(exc)) if name is not None else None
    if is_data_error(exc):
        return None
    if isinstance(exc, CONNECTION_ERRORS):
        return Condition(UNREACHABLE, state, _detail(exc))
    return None


def condition_of(exc: BaseException) -> Condition | None:
    """The database condition ``exc`` reports, or None when it is not one (a data error, a
    rejected statement, a bug). An exception group (from a task group) is a condition only
    if every leaf is one — a group that also holds a bug is not retried away — and then it
    is named after its first leaf."""
    if isinstance(exc, BaseExceptionGroup):
        found = [condition_of(inner) for inner in exc.exceptions]
        if not found or any(c is None for c in found):
            return None
        return found[0]
    return _leaf_condition(exc)


def is_condition(exc: BaseException) -> bool:
    return condition_of(exc) is not None


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` is a condition of the database, not a bug: every work loop retries it
    with backoff (runtime/worker.py). An exception group is transient only if every leaf is."""
    return is_condition(exc)


def is_data_error(exc: BaseException) -> bool:
    """A value the engine cannot evaluate: SQLSTATE class 22, or a Python value asyncpg
    cannot encode (its client-side DataError)."""
    if isinstance(exc, ClientDataError):
        return True
    state = sqlstate_of(exc)
    return isinstance(exc, asyncpg.PostgresError) and state is not None and state[:2] == DATA_CLASS


def is_database_error(exc: BaseException) -> bool:
    """Any failure that came from the database or the connection to it (not from Python
    code working on its results)."""
    return isinstance(exc, (*DB_ERRORS, ConditionError))


def first_leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc``, for a log line that says what happened."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
