"""Appending batches to the store, synchronously, with the per-account hash chain.

:class:`Appender` is the writer's database half: it runs in a worker thread
(``trio.to_thread``), never on the event loop. One call, one transaction. The
chain heads it keeps advance only after a commit, and a batch whose commit
outcome is unknown (the connection died during COMMIT) is recognised on retry by
comparing the database's chain heads with the ones the batch would produce, so a
retried batch is never written twice.

Rows go in through the driver's fastest bulk path: multi-row ``INSERT … VALUES
(…), (…), …`` statements on SQLite, ``COPY … FROM STDIN`` on PostgreSQL (several
times faster than SQLAlchemy's generic executemany; measured in the benchmark
harness). On SQLite, one statement per :data:`SQLITE_ROWS_PER_INSERT` rows rather
than ``executemany`` matters because the append runs in a thread beside the busy
event loop: sqlite3 releases the GIL around every statement step, and with one step
per row the writer had to win the GIL back once per row (about 3x slower under
load, and slower even without it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select, text

from .chain import GENESIS_HASH, canonical_frame
from .records import FrameRecord, LogRecord
from .schema import connection_log, events

#: Insert column order: the chain's fields, then the hash.
EVENT_COLUMNS: Final = (*FrameRecord._fields, "chain_hash")
_COLUMN_LIST: Final = ", ".join(EVENT_COLUMNS)
_SQLITE_ROW: Final = f"({', '.join('?' * len(EVENT_COLUMNS))})"


def _sqlite_rows_per_insert(most: int = 250) -> int:
    """Rows per multi-row INSERT: up to ``most``, within this SQLite build's limit on
    bound parameters (999 before 3.32, 32,766 since, lower or higher where a build says)."""
    with closing(sqlite3.connect(":memory:")) as probe:
        limit = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(most, limit // len(EVENT_COLUMNS)))


#: Rows per multi-row INSERT (250 rows: 2,750 parameters where the build allows it).
SQLITE_ROWS_PER_INSERT: Final = _sqlite_rows_per_insert()
_SQLITE_INSERT_MANY: Final = f"INSERT INTO events ({_COLUMN_LIST}) VALUES " + ", ".join(
    [_SQLITE_ROW] * SQLITE_ROWS_PER_INSERT
)
_DAY_INDEX: Final = EVENT_COLUMNS.index("trading_day")
_PG_COPY: Final = f"COPY events ({_COLUMN_LIST}) FROM STDIN"
#: Every account of a batch locked in one statement, in the (sorted) order given.
_PG_CHAIN_LOCKS: Final = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(t.key, 0)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(key, n) ORDER BY t.n"
)
#: Every account's chain head in one query (each through the (account_id, id) index).
_PG_HEADS: Final = text(
    "SELECT t.account, (SELECT e.chain_hash FROM events AS e WHERE e.account_id = t.account "
    "ORDER BY e.id DESC LIMIT 1) FROM unnest(CAST(:accounts AS text[])) AS t(account)"
)


class Appender:
    """Appends frames and log records to one store, extending each account's chain."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._heads: dict[str, str] = {}

    def head(self, account_id: str) -> str:
        """The account's current chain head (loading it from the store once)."""
        if account_id not in self._heads:
            with self.engine.connect() as conn:
                self._heads[account_id] = stored_head(conn, account_id)
        return self._heads[account_id]

    def append(self, frames: Sequence[FrameRecord], logs: Sequence[LogRecord] = ()) -> None:
        """Write one batch in one transaction; chain heads advance only once it committed.

        Raises SQLAlchemy or driver errors as they come (the caller retries the
        same batch, after :meth:`resync`).
        """
        if not frames and not logs:
            return
        with self.engine.begin() as conn:
            if self.dialect == "postgresql" and frames:
                # Serialise writers per account and extend the head as stored, so even two
                # instances writing one account (a split-brain moment) never fork its chain.
                # Two round trips whatever the number of accounts; the heads are read by a
                # second statement, whose snapshot sees whatever the lock holder committed.
                accounts = sorted({frame.account_id for frame in frames})
                keys = [f"studio-recorder:chain:{account}" for account in accounts]
                conn.execute(_PG_CHAIN_LOCKS, {"keys": keys})
                result = conn.execute(_PG_HEADS, {"accounts": accounts})
                heads: dict[str, str | None] = {row[0]: row[1] for row in result}
                for account in accounts:
                    self._heads[account] = heads.get(account) or GENESIS_HASH
            rows, new_heads = self.chain(frames)
            if rows:
                self._insert_events(conn, rows)
            if logs:
                conn.execute(insert(connection_log), [log.row() for log in logs])
        self._heads.update(new_heads)

    def chain(self, frames: Sequence[FrameRecord]) -> tuple[list[tuple[Any, ...]], dict[str, str]]:
        """Insert rows (tuples in :data:`EVENT_COLUMNS` order) with chain hashes, and the
        heads after them; nothing is stored."""
        heads: dict[str, bytes] = {}
        rows = []
        sha256 = hashlib.sha256
        for frame in frames:
            account = frame[0]
            previous = heads.get(account)
            if previous is None:
                previous = bytes.fromhex(self.head(account))
            digest = sha256(previous)
            digest.update(canonical_frame(frame))
            current = heads[account] = digest.digest()
            rows.append((*frame, current.hex()))
        return rows, {account: head.hex() for account, head in heads.items()}

    def _insert_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        driver = conn.connection.driver_connection
        if self.dialect == "sqlite":
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                _insert_sqlite(cursor, rows)
            finally:
                cursor.close()
        elif self.dialect == "postgresql":
            with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:  # type: ignore[union-attr]
                for row in rows:
                    copy.write_row(row)
        else:
            conn.execute(insert(events), [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in rows])

    def resync(self, frames: Sequence[FrameRecord], logs: Sequence[LogRecord] = ()) -> bool:
        """After a failed :meth:`append`: reload heads; True if the batch did commit after all.

        A batch with frames committed exactly when every account's stored head
        equals the head the batch would have produced; a batch of log records
        only, when its last record is in ``connection_log``.
        """
        accounts = {frame.account_id for frame in frames}
        with self.engine.connect() as conn:
            if not accounts:
                return bool(logs) and log_recorded(conn, logs[-1])
            _, expected = self.chain(frames)
            stored = {account: stored_head(conn, account) for account in accounts}
        self._heads.update(stored)
        return all(stored[a] == expected[a] for a in accounts)


def _insert_sqlite(cursor: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with as few statements (GIL releases) as possible."""
    per = SQLITE_ROWS_PER_INSERT
    whole = len(rows) - len(rows) % per
    for start in range(0, whole, per):
        cursor.execute(_SQLITE_INSERT_MANY, _sqlite_params(rows[start : start + per]))
    if whole < len(rows):
        rest = rows[whole:]
        statement = f"INSERT INTO events ({_COLUMN_LIST}) VALUES " + ", ".join(
            [_SQLITE_ROW] * len(rest)
        )
        cursor.execute(statement, _sqlite_params(rest))


def _sqlite_params(rows: list[tuple[Any, ...]]) -> list[Any]:
    """The rows' values, flat, as SQLAlchemy stores them on SQLite: the Date as ISO
    text (booleans bind as 0/1 by themselves)."""
    params: list[Any] = []
    days: dict[dt.date, str] = {}
    day_at = _DAY_INDEX - len(EVENT_COLUMNS)
    for row in rows:
        params += row
        day = row[_DAY_INDEX]
        text = days.get(day)
        if text is None:
            text = days[day] = day.isoformat()
        params[day_at] = text
    return params


def stored_head(conn: Connection, account_id: str) -> str:
    """The chain hash of the account's last stored row, or the genesis value."""
    query = (
        select(events.c.chain_hash)
        .where(events.c.account_id == account_id)
        .order_by(events.c.id.desc())
        .limit(1)
    )
    return conn.execute(query).scalar_one_or_none() or GENESIS_HASH


def log_recorded(conn: Connection, record: LogRecord) -> bool:
    """Whether this exact lifecycle record is already in ``connection_log``."""
    query = (
        select(connection_log.c.id)
        .where(connection_log.c.session_id == record.session_id)
        .where(connection_log.c.at_ns == record.at_ns)
        .where(connection_log.c.event == record.event)
        .limit(1)
    )
    return conn.execute(query).first() is not None
