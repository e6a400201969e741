"""The stores the ingest benchmark records into, and how it watches them fill.

A fresh SQLite file or a fresh PostgreSQL schema per run, migrated by alembic
exactly like ``studio-recorder db upgrade``; the harness only reads them (the
``events`` ids grow by one per row, so ``max(id)`` is the row count, found
through the primary key in microseconds however big the table).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import text

from recorder import migrate
from recorder.store import normalize_url, open_engine


class Watcher(Protocol):
    """Read-only view of a store's ``events`` table."""

    def max_id(self) -> int: ...

    def rows_after(self, last_id: int) -> list[tuple[int, int]]:
        """``(id, received_at_ns)`` of rows with ``id > last_id``, in id order."""
        ...

    def close(self) -> None: ...


class SqliteWatcher:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    def max_id(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def rows_after(self, last_id: int) -> list[tuple[int, int]]:
        query = "SELECT id, received_at_ns FROM events WHERE id > ? ORDER BY id"
        return list(self.db.execute(query, (last_id,)))

    def close(self) -> None:
        self.db.close()


class PostgresWatcher:
    def __init__(self, url: str) -> None:
        import psycopg

        dsn = normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.db: Any = psycopg.connect(dsn, autocommit=True)

    def max_id(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def rows_after(self, last_id: int) -> list[tuple[int, int]]:
        query = "SELECT id, received_at_ns FROM events WHERE id > %s ORDER BY id"
        return list(self.db.execute(query, (last_id,)))

    def close(self) -> None:
        self.db.close()


def migrated(url: str) -> str:
    engine = open_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url


@contextmanager
def sqlite_store(directory: Path, name: str) -> Iterator[tuple[str, SqliteWatcher]]:
    path = directory / f"{name}.db"
    url = migrated(f"sqlite:///{path}")
    watcher = SqliteWatcher(path)
    try:
        yield url, watcher
    finally:
        watcher.close()


@contextmanager
def postgres_store(base_url: str) -> Iterator[tuple[str, PostgresWatcher]]:
    """A fresh schema of ``base_url`` (dropped afterwards) and a URL whose search_path is it."""
    schema = f"bench_ingest_{uuid.uuid4().hex[:10]}"
    admin = open_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = normalize_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        rendered = migrated(url.render_as_string(hide_password=False))
        watcher = PostgresWatcher(rendered)
        try:
            yield rendered, watcher
        finally:
            watcher.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def postgres_reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not (one line)."""
    try:
        engine = open_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
