"""What a database command's failure means to its operator: one table from error to exit code
and one line (docs/OPERATIONS.md lists the codes), so that every kind of failure is worded and
coded alike whichever command met it. A new failure the operator can act on is a row here."""

from __future__ import annotations

import socket
import urllib.parse

import asyncpg

from scenario_engine.db.migrations import MigrationError
from scenario_engine.db.pooler import TransactionPoolerError
from scenario_engine.exit_codes import EXIT_CONFIG, EXIT_FAILURE


def database_target(url: str | None) -> str:
    """``user@host:port/db`` for messages: what we tried to reach, never the password."""
    if not url:
        return "the database"
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc.rpartition("@")
        user = urllib.parse.unquote(netloc[0].partition(":")[0]) if netloc[1] else ""
        hosts = netloc[2] or "localhost"
        db = urllib.parse.unquote(parts.path.lstrip("/")) or user or "(default)"
    except ValueError:
        return "the database"
    return f"{user + '@' if user else ''}{hosts}/{db}"


def _one_line(exc: BaseException) -> str:
    """A server error's message and detail on one line (str() puts DETAIL on its own)."""
    message = getattr(exc, "message", None) or str(exc)
    detail = getattr(exc, "detail", None)
    text = f"{message}: {detail}" if detail else str(message)
    return " ".join(text.split())


def explain_failure(exc: BaseException, target: str) -> tuple[int, str]:
    """(exit code, one line) for an error a database command ended with."""
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | MigrationError):
        return _explain_failure(exc, target, _one_line(exc))
    return _explain_failure(exc, target, " ".join(str(exc).split()))


# What a database command's error means to its operator, the first match winning (so a
# subclass stands before its base: ConnectionRefusedError and TimeoutError before OSError). A
# line is a template of {target}, {text} (the error's one line), {reason} (an OS error's
# strerror) and {sqlstate}. One table, so that every kind of failure is worded and coded alike.
_FAILURES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str], ...] = (
    (TransactionPoolerError, EXIT_CONFIG, "{text}"),
    (MigrationError, EXIT_FAILURE, "{text}"),
    (asyncpg.InvalidPasswordError, EXIT_CONFIG, "{target}: the server refused the password ({text})"),
    (asyncpg.InvalidCatalogNameError, EXIT_CONFIG, "{target}: the database does not exist ({text})"),
    (
        asyncpg.InvalidAuthorizationSpecificationError,
        EXIT_CONFIG,
        "{target}: the server refused this role ({text})",
    ),
    (asyncpg.ClientConfigurationError, EXIT_CONFIG, "{target}: {text}"),
    (
        asyncpg.InsufficientPrivilegeError,
        EXIT_FAILURE,
        "{target}: permission denied ({text}); docs/DEPLOY.md lists each role's grants",
    ),
    (
        (asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError),
        EXIT_FAILURE,
        "{target}: the server is not accepting connections ({text})",
    ),
    (socket.gaierror, EXIT_FAILURE, "cannot reach {target}: the host name does not resolve ({reason})"),
    (ConnectionRefusedError, EXIT_FAILURE, "cannot reach {target}: connection refused"),
    (TimeoutError, EXIT_FAILURE, "cannot reach {target}: timed out"),
    (OSError, EXIT_FAILURE, "cannot reach {target}: {reason}"),
    (
        (asyncpg.PostgresConnectionError, asyncpg.InterfaceError),
        EXIT_FAILURE,
        "lost the connection to {target}: {text}",
    ),
    (asyncpg.PostgresError, EXIT_FAILURE, "{target}: database error {sqlstate}: {text}"),
    (LookupError, EXIT_FAILURE, "{text}"),
)


def _explain_failure(exc: BaseException, target: str, text: str) -> tuple[int, str]:
    for kinds, code, line in _FAILURES:
        if isinstance(exc, kinds):
            reason = getattr(exc, "strerror", None) or exc  # an OSError's words
            return code, line.format(
                target=target, text=text, reason=reason, sqlstate=getattr(exc, "sqlstate", None)
            )
    return EXIT_FAILURE, f"unexpected error {type(exc).__name__}: {text} (a bug; --traceback shows where)"
