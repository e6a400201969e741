"""The single writer task: batches records from the channel into one transaction each.

Connection tasks send :class:`~recorder.records.FrameRecord` and
:class:`~recorder.records.LogRecord` values into a bounded trio memory channel
(when it is full they wait: memory never grows without bound). The writer takes
up to ``batch_max_rows`` records, or what arrived within ``batch_max_delay_ms`` of
the first, and appends them in one transaction in a worker thread, never on the
event loop. A transient database error (locked, disk full, read-only, connection
lost) is retried with backoff on the same batch until it commits: nothing is
dropped, and :meth:`Appender.resync` makes sure nothing is written twice. Any
other error is a bug and propagates. When every sender has closed the channel,
the writer commits what is left and returns.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final

import trio
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from .appender import Appender
from .backoff import Backoff
from .records import FrameRecord, LogRecord, Record
from .state import WriterState

log = logging.getLogger(__name__)

RETRY_INITIAL_S: Final = 0.2
RETRY_MAX_S: Final = 10.0


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


def is_transient(exc: BaseException) -> bool:
    """Database errors worth retrying: the store is busy, full, read-only or unreachable.

    Both SQLAlchemy's wrapped errors and the drivers' own (the bulk insert paths
    talk to sqlite3 and psycopg directly) count. Anything else (a constraint, a
    schema mismatch, a corrupt file) is a bug or needs a person: not retried.
    """
    original = getattr(exc, "orig", None) or exc
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


def describe_db_error(exc: BaseException) -> str:
    """One line naming the driver's error, never the SQL or its parameters (frames).

    SQLite's extended code is added (``disk I/O error (SQLITE_IOERR_WRITE)``): its
    messages alone do not tell a read-only file from a failing disk.
    """
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    line = f"{type(original).__name__}: {lines[0]}" if lines else type(original).__name__
    code = getattr(original, "sqlite_errorname", None)
    if not isinstance(code, str) or code in line:
        return line
    hint = SQLITE_HINTS.get(code) or SQLITE_HINTS.get(_primary(code))
    return f"{line} ({code}: {hint})" if hint else f"{line} ({code})"


#: What to do about the SQLite errors a store outage gives (by extended, then primary code).
SQLITE_HINTS: Final = {
    "SQLITE_BUSY": "another process holds a lock on the database",
    "SQLITE_FULL": "free space on the database's file system",
    "SQLITE_READONLY": "the database file is read-only: check its permissions and mount",
    "SQLITE_IOERR_WRITE": "the database file cannot be written: read-only or immutable file, "
    "read-only mount, or a failing disk",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
}


class Writer:
    """Drains the records channel into the store in batches."""

    def __init__(
        self,
        appender: Appender,
        receive: trio.MemoryReceiveChannel[Record],
        state: WriterState,
        *,
        max_rows: int,
        max_delay_s: float,
        retry: Backoff | None = None,
        on_batch: Callable[[float], None] | None = None,
    ) -> None:
        self.appender = appender
        self.receive = receive
        self.state = state
        self.max_rows = max_rows
        self.max_delay_s = max_delay_s
        self.retry = retry or Backoff(RETRY_INITIAL_S, RETRY_MAX_S)
        self.on_batch = on_batch
        self.done = trio.Event()

    async def run(self) -> None:
        """Write batches until the channel is closed by every sender and drained."""
        try:
            async with self.receive:
                while True:
                    batch = await self._collect()
                    if not batch:
                        return
                    await self._commit(batch)
        finally:
            self.done.set()

    async def _collect(self) -> list[Record]:
        """Up to ``max_rows`` records: the first one, then whatever arrives before the delay."""
        receive = self.receive
        try:
            batch = [await receive.receive()]
        except trio.EndOfChannel:
            return []
        deadline = trio.current_time() + self.max_delay_s
        max_rows = self.max_rows
        while len(batch) < max_rows:
            try:
                batch.append(receive.receive_nowait())
                continue
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                break
            with trio.move_on_at(deadline) as scope:
                try:
                    batch.append(await receive.receive())
                except trio.EndOfChannel:
                    break
            if scope.cancelled_caught:
                break
        return batch

    async def _commit(self, batch: Sequence[Record]) -> None:
        frames = [r for r in batch if isinstance(r, FrameRecord)]
        logs = [r for r in batch if isinstance(r, LogRecord)]
        state = self.state
        started = time.monotonic()
        while True:
            state.busy_since = time.monotonic()
            try:
                await trio.to_thread.run_sync(self.appender.append, frames, logs)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                state.busy_since = None
                if state.failing is None:
                    state.failing_since = time.monotonic()
                state.failing = describe_db_error(exc)
                state.retries += 1
                delay = self.retry.next()
                log.error(
                    "store write failed (%d rows held, retrying in %.1f s): %s",
                    len(batch),
                    delay,
                    state.failing,
                    extra={"event": "store-write-failed"},
                )
                await trio.sleep(delay)
                if await self._committed_after_all(frames, logs):
                    break
            finally:
                state.busy_since = None
        now = time.monotonic()
        if self.on_batch is not None:
            self.on_batch(now - started)
        if state.failing is not None:
            log.warning(
                "store writes recovered after %d retries",
                state.retries,
                extra={"event": "store-write-recovered"},
            )
            state.failing = state.failing_since = None
        self.retry.reset()
        state.batches += 1
        state.rows_written += len(frames)
        state.log_rows_written += len(logs)
        state.last_commit_at = now

    async def _committed_after_all(self, frames: list[FrameRecord], logs: list[LogRecord]) -> bool:
        """Whether the failed batch did commit (its acknowledgement lost); False if unsure."""
        try:
            return await trio.to_thread.run_sync(self.appender.resync, frames, logs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return False
