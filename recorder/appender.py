"""Appending batches to the store, synchronously, with the per-account hash chain.

:class:`Appender` is the writer's database half: it runs in a worker thread
(``trio.to_thread``), never on the event loop. One call, one transaction. The
chain heads it keeps advance only after a commit, and a batch whose commit
outcome is unknown (the connection died during COMMIT) is recognised on retry by
comparing the database's chain heads with the ones the batch would produce, so a
retried batch is never written twice.

Rows go in through the driver's fastest bulk path: multi-row ``INSERT … VALUES
(…), (…), …`` statements on SQLite, binary ``COPY … FROM STDIN`` on PostgreSQL (several
times faster than SQLAlchemy's generic executemany; binary rather than text COPY cut
the writer's CPU per frame by about a fifth: measured in the benchmark harness). On
SQLite, one statement per :data:`SQLITE_ROWS_PER_INSERT` rows rather
than ``executemany`` matters because the append runs in a thread beside the busy
event loop: sqlite3 releases the GIL around every statement step, and with one step
per row the writer had to win the GIL back once per row (about 3x slower under
load, and slower even without it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.dialects import postgresql

from .attestation import Attestation, Note
from .chain import GENESIS_HASH, LOG_CHAIN_FIELDS, canonical_frame, chain_log_rows
from .heads import PG_CHAIN_LOCKS, chain_lock_key, stored_head
from .records import FrameRecord, LogRecord
from .schema import checkpoints, connection_log, events

#: Insert column order: the chain's fields, then the hash.
EVENT_COLUMNS: Final = (*FrameRecord._fields, "chain_hash")
#: ``connection_log`` insert columns: the chain's fields, then the hash.
_LOG_COLUMNS: Final = (*LOG_CHAIN_FIELDS, "chain_hash")
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
_PG_COPY: Final = f"COPY events ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
#: The PostgreSQL type of each insert column, from the schema (binary COPY needs them).
_PG_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]
_PG_TYPES: Final = [
    events.c[name].type.compile(dialect=_PG_DIALECT).lower() for name in EVENT_COLUMNS
]
#: Every account's chain heads (the end of its pruned prefix when every frame of it was
#: pruned: :mod:`recorder.heads`), and the day of its last frame, in one query (each through
#: an (account_id, id) index).
_PG_HEADS: Final = text(
    "SELECT t.account, "
    "COALESCE((SELECT e.chain_hash FROM events AS e WHERE e.account_id = t.account "
    "ORDER BY e.id DESC LIMIT 1), (SELECT p.head_last FROM prunes AS p "
    "WHERE p.account_id = t.account ORDER BY p.last_id DESC LIMIT 1)), "
    "(SELECT c.chain_hash FROM connection_log AS c WHERE c.account_id = t.account "
    "ORDER BY c.id DESC LIMIT 1), "
    "(SELECT e.trading_day FROM events AS e WHERE e.account_id = t.account "
    "ORDER BY e.id DESC LIMIT 1) "
    "FROM unnest(CAST(:accounts AS text[])) AS t(account)"
)


@dataclass(frozen=True)
class _DayCut:
    """A frame of another trading day than its account's previous frame: the previous
    stretch is attested to its last row before the frame is inserted. (Forward, that
    closes a day; backward — a late frame of an earlier day — it makes every stretch of a
    day end at a signed head, so an export of the day is attested row by row.)"""

    index: int  # of the frame in the batch
    account: str
    head: str  # the account's events head before that frame
    day: dt.date  # the trading day of the stretch that ends


class Appender:
    """Appends frames and log records to one store, extending each account's chains, and
    (with ``attestation``) signs checkpoints in the same transactions."""

    def __init__(self, engine: Engine, attestation: Attestation | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.attestation = attestation
        self._heads: dict[str, str] = {}
        self._log_heads: dict[str, str] = {}
        #: The trading day of each account's last stored frame (None: it has none).
        self._days: dict[str, dt.date | None] = {}
        #: Accounts with committed rows that no checkpoint covers yet.
        self.unattested: set[str] = set()
        self._notes: list[Note] = []  # made by the transaction in flight
        #: The notes the last committed batch made (after :meth:`append` or :meth:`resync`).
        self.published_notes: list[Note] = []
        self._settled: set[str] = set()  # … accounts it found attested already

    def head(self, account_id: str) -> str:
        """The account's current chain head (loading it from the store once)."""
        if account_id not in self._heads:
            with self.engine.connect() as conn:
                self._heads[account_id] = stored_head(conn, account_id)
        return self._heads[account_id]

    def log_head(self, account_id: str) -> str:
        """The account's current ``connection_log`` chain head (loaded once)."""
        if account_id not in self._log_heads:
            with self.engine.connect() as conn:
                self._log_heads[account_id] = stored_head(conn, account_id, connection_log)
        return self._log_heads[account_id]

    def append(
        self,
        frames: Sequence[FrameRecord],
        logs: Sequence[LogRecord] = (),
        *,
        checkpoint_all: bool = False,
        at_ns: int | None = None,
    ) -> list[Note]:
        """Write one batch in one transaction; chain heads advance only once it committed.

        With attestation, checkpoints go into the same transaction: for an account whose
        trading day changes in the batch (covering the old day's last row), for one whose
        session ended in it, and with ``checkpoint_all`` for every account with rows no
        checkpoint covers (every interval, and at shutdown). Returns the notes made.
        Raises SQLAlchemy or driver errors as they come (the caller retries the same
        batch, after :meth:`resync`).
        """
        wanted = self._checkpoint_accounts(frames, logs, checkpoint_all)
        if not frames and not logs and not wanted:
            return []
        at_ns = at_ns or time.time_ns()
        self._notes, self._settled = [], set()
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                self._lock_and_reload(conn, frames, logs, wanted)
            rows, new_heads, cuts = self.chain(frames)
            start = 0
            for cut in cuts:
                self._insert_events(conn, rows[start : cut.index])
                start = cut.index
                self._checkpoint(conn, cut.account, (cut.head, self.log_head(cut.account)),
                                 at_ns, cut.day)  # fmt: skip
            self._insert_events(conn, rows[start:])
            log_heads = self._insert_logs(conn, logs)
            for account in sorted(wanted):
                heads = (
                    new_heads.get(account) or self.head(account),
                    log_heads.get(account) or self.log_head(account),
                )
                self._checkpoint(conn, account, heads, at_ns, self._last_day(account, frames))
        return self._committed(frames, new_heads, log_heads)

    def seed_unattested(self, accounts: Sequence[str]) -> None:
        """At start: note the accounts whose stored rows go past their latest checkpoint
        (left by a crash, or recorded before signing), so the next checkpoint covers them
        even if the account stays quiet."""
        if self.attestation is None:
            return
        with self.engine.connect() as conn:
            self.unattested |= {a for a in accounts if not self.attestation.covered(conn, a)}

    def _committed(
        self,
        frames: Sequence[FrameRecord],
        new_heads: dict[str, str],
        log_heads: dict[str, str],
    ) -> list[Note]:
        """Advance the in-memory state after a commit; publish the notes."""
        self._heads.update(new_heads)
        self._log_heads.update(log_heads)
        for frame in frames:
            self._days[frame.account_id] = frame.trading_day
        notes, self._notes = self._notes, []
        self.published_notes = notes
        self.unattested |= set(new_heads) | set(log_heads)
        self.unattested -= self._settled
        for note in notes:  # the account's final states are signed: nothing left to attest
            account = note.checkpoint.account_id
            signed = (note.checkpoint.events.head, note.checkpoint.log.head)
            if signed == (self.head(account), self.log_head(account)):
                self.unattested.discard(account)
        if self.attestation is not None and notes:
            self.attestation.published(notes)
        return notes

    def _checkpoint_accounts(
        self, frames: Sequence[FrameRecord], logs: Sequence[LogRecord], checkpoint_all: bool
    ) -> set[str]:
        """Accounts to checkpoint at the end of the batch (day changes come on their own)."""
        if self.attestation is None:
            return set()
        wanted = {log.account_id for log in logs if log.event == "closed"}
        if checkpoint_all:
            wanted |= self.unattested | {f.account_id for f in frames}
            wanted |= {log.account_id for log in logs}
        return wanted

    def _lock_and_reload(
        self,
        conn: Connection,
        frames: Sequence[FrameRecord],
        logs: Sequence[LogRecord],
        wanted: set[str],
    ) -> None:
        """PostgreSQL: serialise writers per account and extend the heads as stored, so
        even two instances writing one account (a split-brain moment) never fork a chain.
        Two round trips whatever the number of accounts; the heads are read by a second
        statement, whose snapshot sees whatever the lock holder committed."""
        accounts = sorted({f.account_id for f in frames} | {g.account_id for g in logs} | wanted)
        if not accounts:
            return
        keys = [chain_lock_key(account) for account in accounts]
        conn.execute(PG_CHAIN_LOCKS, {"keys": keys})
        result = conn.execute(_PG_HEADS, {"accounts": accounts})
        for account, events_head, log_head, day in result:
            self._heads[account] = events_head or GENESIS_HASH
            self._log_heads[account] = log_head or GENESIS_HASH
            self._days[account] = day

    def chain(
        self, frames: Sequence[FrameRecord]
    ) -> tuple[list[tuple[Any, ...]], dict[str, str], list[_DayCut]]:
        """Insert rows (tuples in :data:`EVENT_COLUMNS` order) with chain hashes, the heads
        after them, and (with attestation) where an account's trading day moves on;
        nothing is stored."""
        heads: dict[str, bytes] = {}
        days: dict[str, dt.date | None] = {}
        cuts: list[_DayCut] = []
        rows = []
        sha256 = hashlib.sha256
        attested = self.attestation is not None
        for index, frame in enumerate(frames):
            account = frame[0]
            previous = heads.get(account)
            if previous is None:
                previous = bytes.fromhex(self.head(account))
                if attested:
                    days[account] = self._stored_day(account)
            if attested:
                day = days[account]
                if day is not None and frame.trading_day != day:
                    cuts.append(_DayCut(index, account, previous.hex(), day))
                days[account] = frame.trading_day
            digest = sha256(previous)
            digest.update(canonical_frame(frame))
            current = heads[account] = digest.digest()
            rows.append((*frame, current.hex()))
        return rows, {account: head.hex() for account, head in heads.items()}, cuts

    def _stored_day(self, account: str) -> dt.date | None:
        """The trading day of the account's last stored frame (loaded once)."""
        if account not in self._days:
            query = (
                select(events.c.trading_day)
                .where(events.c.account_id == account)
                .order_by(events.c.id.desc())
                .limit(1)
            )
            with self.engine.connect() as conn:
                self._days[account] = conn.execute(query).scalar_one_or_none()
        return self._days[account]

    def _last_day(self, account: str, frames: Sequence[FrameRecord]) -> dt.date | None:
        mine = [f.trading_day for f in frames if f.account_id == account]
        return mine[-1] if mine else self._days.get(account)

    def _checkpoint(
        self,
        conn: Connection,
        account: str,
        heads: tuple[str, str],
        at_ns: int,
        day: dt.date | None,
    ) -> None:
        assert self.attestation is not None
        note = self.attestation.checkpoint(conn, account, heads, at_ns, day)
        if note is not None:
            self._notes.append(note)
        elif heads == (self.head(account), self.log_head(account)):
            self._settled.add(account)  # its latest checkpoint covers it already

    def _insert_logs(self, conn: Connection, logs: Sequence[LogRecord]) -> dict[str, str]:
        """Insert log records with their chain hashes; returns the heads after them."""
        if not logs:
            return {}
        heads = {log.account_id: self.log_head(log.account_id) for log in logs}
        rows = chain_log_rows((tuple(log.row().values()) for log in logs), heads)
        conn.execute(
            insert(connection_log), [dict(zip(_LOG_COLUMNS, r, strict=True)) for r in rows]
        )
        return heads

    def _insert_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        driver = conn.connection.driver_connection
        if self.dialect == "sqlite":
            cursor = driver.cursor()  # type: ignore[union-attr]
            try:
                _insert_sqlite(cursor, rows)
            finally:
                cursor.close()
        elif self.dialect == "postgresql":
            with driver.cursor() as cursor, cursor.copy(_PG_COPY) as copy:  # type: ignore[union-attr]
                copy.set_types(_PG_TYPES)
                for row in rows:
                    copy.write_row(row)
        else:
            conn.execute(insert(events), [dict(zip(EVENT_COLUMNS, r, strict=True)) for r in rows])

    def resync(self, frames: Sequence[FrameRecord], logs: Sequence[LogRecord] = ()) -> bool:
        """After a failed :meth:`append`: reload heads; True if the batch did commit after all.

        A batch with frames committed exactly when every account's stored head
        equals the head the batch would have produced; a batch of log records
        only, when its last record is in ``connection_log``. (A batch of checkpoints
        only is simply made again: a checkpoint equal to the latest is not repeated.)
        """
        accounts = {frame.account_id for frame in frames}
        log_accounts = {log.account_id for log in logs}
        attempted = self._notes
        with self.engine.connect() as conn:
            log_heads = {a: stored_head(conn, a, connection_log) for a in log_accounts}
            if accounts:
                _, expected, _ = self.chain(frames)
                stored = {account: stored_head(conn, account) for account in accounts}
                committed = all(stored[a] == expected[a] for a in accounts)
            elif logs:
                stored, committed = {}, log_recorded(conn, logs[-1])
            else:  # checkpoints only: committed when each is its account's latest
                stored = {}
                committed = bool(attempted) and all(
                    latest_note(conn, n.checkpoint.account_id) == n.note for n in attempted
                )
        self._heads.update(stored)
        self._log_heads.update(log_heads)
        if committed:  # heads are reloaded; hand over the notes it made
            self._notes = attempted
            self._committed(frames, stored, log_heads)
        return committed


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


def latest_note(conn: Connection, account_id: str) -> str | None:
    """The account's latest signed checkpoint note, if any."""
    query = (
        select(checkpoints.c.note)
        .where(checkpoints.c.account_id == account_id)
        .order_by(checkpoints.c.id.desc())
        .limit(1)
    )
    return conn.execute(query).scalar_one_or_none()


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
