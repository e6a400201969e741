"""Database errors: which ones a retry can outlast, and how each is told in one line.

Both SQLAlchemy's wrapped errors and the drivers' own count (the bulk insert paths
talk to sqlite3 and psycopg directly; the query side reads through ADBC). Messages
name the driver's error, never the SQL or its parameters (which hold frames).
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .errors import first_line

#: SQLite result codes (primary) that mean "the store cannot take this batch now": busy or
#: locked by another connection, out of memory, read-only file or mount, I/O error (an
#: immutable file, a failing disk), full, cannot open the file, WAL lock race. Any other
#: SQLite error (no such table, constraint, corrupt file) is a bug or needs a person.
TRANSIENT_SQLITE_CODES: Final = frozenset(
    {
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_NOMEM",
        "SQLITE_READONLY",
        "SQLITE_IOERR",
        "SQLITE_FULL",
        "SQLITE_CANTOPEN",
        "SQLITE_PROTOCOL",
    }
)
#: Other drivers: errors that mean the server is unreachable, or the connection was cut
#: or terminated (SQLAlchemy's wrappers and psycopg's own classes).
TRANSIENT_DB_ERRORS: Final = (OperationalError, InterfaceError)
#: PostgreSQL SQLSTATEs retried although the driver files them elsewhere: class 08
#: (connection exception), class 53 (insufficient resources: disk full, out of memory, too
#: many connections), 57P01-57P05 (shutdown, crash, cannot connect now), 25006 (read-only
#: transaction: a standby during a failover), 40001 and 40P01 (serialization, deadlock).
TRANSIENT_SQLSTATES: Final = frozenset(
    {"25006", "40001", "40P01", "57P01", "57P02", "57P03", "57P04", "57P05"}
)
TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "53"})

#: What to do about the SQLite errors a store outage gives (by extended, then primary code).
SQLITE_HINTS: Final = {
    "SQLITE_BUSY": "another process holds a lock on the database",
    "SQLITE_FULL": "free space on the database's file system",
    "SQLITE_READONLY": "the database file is read-only: check its permissions and mount",
    "SQLITE_IOERR_WRITE": "the database file cannot be written: read-only or immutable file, "
    "read-only mount, or a failing disk",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
}


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception inside a SQLAlchemy wrapper (``exc`` itself otherwise)."""
    original = getattr(exc, "orig", None)
    return original if isinstance(original, BaseException) else exc


def is_transient(exc: BaseException) -> bool:
    """Database errors worth retrying: the store is busy, full, read-only or unreachable.

    Anything else (a constraint, a schema mismatch, a corrupt file) is a bug or needs
    a person: not retried.
    """
    original = driver_error(exc)
    if isinstance(original, sqlite3.Error):
        name = getattr(original, "sqlite_errorname", None)
        return isinstance(name, str) and _primary(name) in TRANSIENT_SQLITE_CODES
    if isinstance(exc, TRANSIENT_DB_ERRORS):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate in TRANSIENT_SQLSTATES or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES
    ):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(
        original, psycopg.OperationalError | psycopg.InterfaceError
    )


def _primary(sqlite_code: str) -> str:
    """``SQLITE_IOERR_WRITE`` → ``SQLITE_IOERR`` (the primary result code's name)."""
    return "_".join(sqlite_code.split("_")[:2])


def db_error_line(exc: BaseException) -> str:
    """The first line of the driver's message (never the SQL or its parameters)."""
    return first_line(driver_error(exc))


def describe_db_error(exc: BaseException) -> str:
    """``Type: first line`` of the driver's error, with SQLite's extended code and a hint
    (``disk I/O error (SQLITE_IOERR_WRITE: …)``): SQLite's messages alone do not tell a
    read-only file from a failing disk."""
    original = driver_error(exc)
    name = type(original).__name__
    line = f"{name}: {first_line(original)}" if str(original).strip() else name
    code = getattr(original, "sqlite_errorname", None)
    if not isinstance(code, str) or code in line:
        return line
    hint = SQLITE_HINTS.get(code) or SQLITE_HINTS.get(_primary(code))
    return f"{line} ({code}: {hint})" if hint else f"{line} ({code})"
