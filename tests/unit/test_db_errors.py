"""Database errors classified by SQLSTATE (db/errors.py), and what evaluation does with each
(issue 16, items 1 and 2).

The classifier is pure: errors are built the way asyncpg builds them from a server's error
fields. ``evaluate_isolated`` is run against a real Postgres with a real lock held by another
session: a lock timeout on one mentor's row is a condition of the database, not a poison row.
"""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from scenario_engine.db.errors import (
    SCHEMA_MISMATCH,
    UNREACHABLE,
    ConditionError,
    condition_of,
    is_data_error,
    is_transient,
)
from scenario_engine.isolation import may_quarantine
from scenario_engine.scenarios.base import MentorDataError


def server_error(sqlstate: str, message: str = "from the server") -> asyncpg.PostgresError:
    """The exception asyncpg raises for an ErrorResponse with this SQLSTATE."""
    error: asyncpg.PostgresError = asyncpg.PostgresError.new({"C": sqlstate, "M": message, "S": "ERROR"})
    return error


CONDITIONS = {
    "25006": "database_read_only",
    "57P01": "database_shutting_down",
    "57P02": "database_shutting_down",
    "57P03": "database_starting",
    "55P03": "lock_timeout",
    "57014": "query_cancelled",
    "40001": "serialization_conflict",
    "40P01": "deadlock_detected",
    "53100": "disk_full",
    "53200": "out_of_memory",
    "53300": "too_many_connections",
    "53999": "insufficient_resources",  # an unlisted code of class 53
    "08006": UNREACHABLE,
    "42703": SCHEMA_MISMATCH,
    "42P01": SCHEMA_MISMATCH,
    "42883": SCHEMA_MISMATCH,
    "42501": "permission_denied",
}


@pytest.mark.parametrize(("sqlstate", "name"), sorted(CONDITIONS.items()))
def test_conditions_are_classified_by_sqlstate(sqlstate: str, name: str) -> None:
    exc = server_error(sqlstate, "the server's words")
    condition = condition_of(exc)
    assert condition is not None and condition.name == name
    assert condition.sqlstate == sqlstate and condition.detail == "the server's words"
    assert is_transient(exc)  # every work loop backs off on it
    assert not may_quarantine(exc)  # and it never quarantines a mentor
    assert condition.reachable == (name != UNREACHABLE)


def test_asyncpg_classes_and_connection_loss() -> None:
    for exc, name in [
        (asyncpg.ReadOnlySQLTransactionError("read-only"), "database_read_only"),
        (asyncpg.LockNotAvailableError("lock"), "lock_timeout"),
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), "query_cancelled"),
        (asyncpg.DiskFullError("No space left on device"), "disk_full"),
        (asyncpg.UndefinedColumnError('column "occurred_at" does not exist'), SCHEMA_MISMATCH),
        (ConnectionResetError("reset"), UNREACHABLE),
        (TimeoutError(), UNREACHABLE),
        (asyncpg.InterfaceError("connection is closed"), UNREACHABLE),
    ]:
        condition = condition_of(exc)
        assert condition is not None and condition.name == name, exc


def test_a_schema_mismatch_names_the_object() -> None:
    condition = condition_of(asyncpg.UndefinedColumnError("column a.occurred_at does not exist"))
    assert condition is not None and "occurred_at" in condition.detail


@pytest.mark.parametrize("sqlstate", ["22008", "22003", "22012", "22P02", "22023"])
def test_data_errors_may_quarantine_and_are_no_condition(sqlstate: str) -> None:
    exc = server_error(sqlstate)
    assert is_data_error(exc) and condition_of(exc) is None and may_quarantine(exc)
    assert not is_transient(exc)


def test_other_errors() -> None:
    # a rejected statement that is neither a condition nor the data's fault: no quarantine,
    # and outside a batch a bug (not backed off)
    for sqlstate in ("42601", "23505", "XX000"):
        exc = server_error(sqlstate)
        assert condition_of(exc) is None and not may_quarantine(exc), sqlstate
    # the engine's own: a data error names its mentors; a Python error on a row's values
    assert may_quarantine(MentorDataError({uuid.uuid4(): "unknown time zone"}))
    assert may_quarantine(OverflowError("date value out of range"))
    assert condition_of(ValueError("a bug")) is None
    # a value asyncpg cannot encode is the data's fault, not a lost connection
    assert may_quarantine(asyncpg.exceptions._base.DataError("invalid input"))
    assert condition_of(asyncpg.exceptions._base.DataError("invalid input")) is None


def test_groups_are_conditions_only_when_every_leaf_is() -> None:
    read_only = asyncpg.ReadOnlySQLTransactionError("read-only")
    group = ExceptionGroup("tg", [read_only, ConnectionResetError()])
    condition = condition_of(group)
    assert condition is not None and condition.name == "database_read_only"
    assert condition_of(ExceptionGroup("tg", [read_only, ValueError("bug")])) is None


def test_the_engines_own_condition() -> None:
    inner = condition_of(server_error("XX000", "internal"))
    assert inner is None
    made = ConditionError(condition_of(server_error("53100", "full")))  # type: ignore[arg-type]
    assert condition_of(made) is made.condition
