"""Which recorder instance records an account: one at a time, enforced by the database.

Several recorder instances may share one PostgreSQL store (each configured with
accounts, possibly overlapping for standby). An account is recorded only by the
instance holding its PostgreSQL advisory lock, taken on a dedicated connection
that lives as long as the instance: when that instance dies, its connection
closes, the lock is released, and a standing-by instance takes over within one
poll interval. The owner checks its lock connection as often (:meth:`Ownership.watch`);
if it is lost, each of its accounts' :meth:`Ownership.lost` event is set, which stops
that account's session, and the instance tries to win the accounts back.

The chain is protected independently of ownership: the appender takes a
transaction-level advisory lock per account and re-reads the chain head inside
each batch's transaction, so even two writers in a split-brain moment extend one
linear chain and never fork it.

SQLite stores are single-writer: the instance takes an exclusive ``flock`` on
``<database>.lock`` at start, and a second recorder on the same file is refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Final

import trio
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from .dberrors import db_error_line
from .errors import StoreError
from .store import sqlite_path

log = logging.getLogger(__name__)

#: How often a standing-by instance retries an account's lock, and the owner checks its lock.
OWNERSHIP_POLL_S: Final = 5.0
#: The ``closed`` detail of a session stopped because its account's ownership was lost.
OWNERSHIP_LOST_DETAIL: Final = "ownership lost: the lock connection to the store failed"
#: Advisory locks are per database, not per schema: the key names the schema the store lives
#: in, so two stores in one database (two deployments, or parallel test runs) never block each
#: other. (The appender's per-batch chain lock is not namespaced: a collision there only
#: serialises two batches.)
_LOCK_SQL: Final = text(
    "SELECT pg_try_advisory_lock(hashtextextended(current_schema() || '/' || :key, 0))"
)


def ownership_key(account_id: str) -> str:
    return f"studio-recorder:account:{account_id}"


class Ownership:
    """Always the owner: single-writer stores (SQLite, guarded by :class:`SqliteFileLock`)."""

    #: Why the last :meth:`acquire` could not even ask (the store is unreachable), else None:
    #: then False means "unknown", not "another instance owns it".
    unavailable: str | None = None

    def __init__(self) -> None:
        self._lost: dict[str, trio.Event] = {}

    async def acquire(self, account_id: str) -> bool:
        return True

    def lost(self, account_id: str) -> trio.Event:
        """Set when the ownership of ``account_id`` won by the last :meth:`acquire` is lost.

        Ask right after a successful :meth:`acquire`, with no checkpoint in between:
        winning the account again gives a fresh event, and an event asked for after a
        loss that nobody has won back yet is already set.
        """
        return self._lost.setdefault(account_id, trio.Event())

    async def check(self) -> set[str]:
        """Accounts whose ownership was lost since the last check (none here)."""
        return set()

    async def watch(self) -> None:
        """:meth:`check` every :data:`OWNERSHIP_POLL_S` until cancelled."""
        while True:
            await trio.sleep(OWNERSHIP_POLL_S)
            await self.check()

    async def close(self) -> None:
        return None

    def _won(self, account_id: str) -> None:
        self._lost[account_id] = trio.Event()

    def _lose(self, accounts: set[str]) -> None:
        for account_id in accounts:
            self.lost(account_id).set()


class PostgresOwnership(Ownership):
    """Per-account advisory locks on one dedicated PostgreSQL connection."""

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self._conn: Connection | None = None
        self._held: set[str] = set()
        self._lock = trio.Lock()

    async def acquire(self, account_id: str) -> bool:
        async with self._lock:
            if account_id in self._held:
                return True
            try:
                won = await trio.to_thread.run_sync(self._try_lock, account_id)
            except SQLAlchemyError as exc:
                self.unavailable = db_error_line(exc)
                log.warning(
                    "cannot take the ownership lock of account %s: %s",
                    account_id,
                    self.unavailable,
                    extra={"account": account_id, "event": "lock-error"},
                )
                await trio.to_thread.run_sync(self._drop_connection)
                return False
            self.unavailable = None
            if won:
                self._held.add(account_id)
                self._won(account_id)
            return won

    def _try_lock(self, account_id: str) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return bool(self._conn.execute(_LOCK_SQL, {"key": ownership_key(account_id)}).scalar())

    async def check(self) -> set[str]:
        """Ping the lock connection; if it failed, every account it held is lost: its
        :meth:`lost` event is set and the accounts are returned."""
        async with self._lock:
            if not self._held:
                return set()
            try:
                await trio.to_thread.run_sync(self._ping)
            except SQLAlchemyError as exc:
                lost, self._held = self._held, set()
                log.error(
                    "lost the ownership-lock connection (%s): stopping %d accounts until "
                    "their locks are won back",
                    db_error_line(exc),
                    len(lost),
                    extra={"event": "ownership-lost"},
                )
                await trio.to_thread.run_sync(self._drop_connection)
                self._lose(lost)
                return lost
            return set()

    def _ping(self) -> None:
        assert self._conn is not None
        self._conn.execute(text("SELECT 1"))

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except SQLAlchemyError:
                pass

    async def close(self) -> None:
        async with self._lock:
            self._held.clear()
            await trio.to_thread.run_sync(self._drop_connection)  # closing releases the locks


def lock_file_path(database: os.PathLike[str] | str) -> Path:
    """``<database>.lock``: the file a recorder of the SQLite store ``database`` locks."""
    path = Path(database)
    return path.with_name(path.name + ".lock")


class SqliteFileLock:
    """An exclusive ``flock`` on ``<database>.lock``: one recorder per SQLite store."""

    def __init__(self, database: Path) -> None:
        self.path = lock_file_path(database)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise StoreError naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"another recorder (pid {holder}) is writing {self.path.with_suffix('')}; "
                "a SQLite store has one writer (use PostgreSQL for several instances)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def fileno(self) -> int | None:
        """The locked descriptor (None when not held): a writer process inherits it, so the
        store stays locked until the writer, too, has exited."""
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def ownership_for(engine: Engine) -> tuple[Ownership, SqliteFileLock | None]:
    """The ownership scheme of ``engine``'s store, and the SQLite file lock when there is one."""
    if engine.dialect.name == "postgresql":
        return PostgresOwnership(engine), None
    path = sqlite_path(engine.url)
    return Ownership(), SqliteFileLock(path) if path is not None else None
