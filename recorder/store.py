"""Opening the store: a SQLAlchemy engine set up for an append-only recorder.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` (a
committed batch survives power loss) and a busy timeout, and a new database file
is created readable by its owner only. ``postgresql://`` URLs use psycopg 3.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from .errors import StoreError

SQLITE_BUSY_TIMEOUT_MS: Final = 5_000


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; plain ``postgresql://`` means psycopg 3 (the driver we ship)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"not a database URL: {url!r}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def safe_url(url: str | URL) -> str:
    """``url`` for messages: the password, if any, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"


def sqlite_path(url: URL) -> Path | None:
    """The file of a file-backed SQLite URL, else None (memory or other dialect)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):
        return None
    return Path(url.database)


def open_engine(
    url: str | URL,
    *,
    must_exist: bool = False,
    sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    **engine_kw: Any,
) -> Engine:
    """An engine for ``url``.

    ``must_exist``: for readers: a SQLite file that does not exist is an error
    instead of being created empty. A new SQLite file is created with mode 0600.
    Raises StoreError for a bad URL, a missing directory or driver.
    """
    parsed = normalize_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        if must_exist and not path.is_file():
            raise StoreError(
                f"database file not found: {path}: create it with `studio-recorder db upgrade`"
            )
        if not path.parent.is_dir():
            raise StoreError(f"directory of the database does not exist: {path.parent}")
        if not path.exists():
            try:
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise StoreError(f"cannot create database {path}: {exc.strerror}") from None
    if parsed.get_backend_name() != "sqlite":
        # A server restart leaves dead connections in the pool: test each at checkout.
        engine_kw.setdefault("pool_pre_ping", True)
    try:
        engine = create_engine(parsed, **engine_kw)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = ""
        if parsed.get_backend_name() == "postgresql":
            hint = "; install it with: pip install 'studio-recorder[postgresql]'"
        raise StoreError(f"no database driver for {parsed.drivername} ({exc}){hint}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(
            engine, "connect", functools.partial(_sqlite_on_connect, sqlite_busy_timeout_ms)
        )
    return engine


def _sqlite_on_connect(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()
