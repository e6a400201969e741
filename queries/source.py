"""Reading the recorder's store as Arrow record batches, without per-row Python objects.

The store is read through ADBC (Arrow Database Connectivity) drivers for SQLite
and PostgreSQL, which hand back Arrow columns directly; everything downstream
(Parquet export, DuckDB analytics) consumes those batches. Rows always come in
``id`` order, in batches of bounded size, so memory stays bounded for a day of
millions of frames.

SQLite's ADBC driver infers column types from the first rows it sees and fails
when a nullable column starts with nulls (apache/arrow-adbc#581, #2531), so
SQLite queries start with one typed sentinel row that is dropped here.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import pyarrow as pa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from recorder.chain import GENESIS_HASH
from recorder.errors import first_line
from recorder.schema import STORE_ID, TRADING_DAY_TIMEZONE
from recorder.store import SQLITE_BUSY_TIMEOUT_MS, safe_url
from recorder.tradingday import DayOutOfRange, check_day

from .contract import STORE_SCHEMAS, conform
from .errors import QueryError, UsageError

BATCH_ROWS: Final = 65_536

# Typed values for the SQLite sentinel row, per Arrow type.
_SENTINEL: Final = {
    pa.int64(): "0",
    pa.string(): "''",
    pa.date32(): "''",
    pa.bool_(): "0",
}


def sqlite_read_only_uri(path: Path) -> str:
    """The URI that opens a SQLite store read-only, also for a user who may only read it.

    ``mode=ro`` never writes the database. A store in WAL mode still needs its ``-shm``
    file, which a reader creates when it is missing — impossible for an auditor who cannot
    write the directory. When neither ``-wal`` nor ``-shm`` exists no connection has the
    store open (a writer keeps both while it runs), so it is opened ``immutable``: read
    without any lock or shared-memory file. Only then, and only when the directory is not
    writable to us, so a recorder starting meanwhile (the one way it could change under
    us) is a concern only for a reader who could not have opened it otherwise.
    """
    resolved = path.resolve()
    uri = f"file:{quote(str(resolved))}?mode=ro"
    companions = (resolved.with_name(resolved.name + suffix) for suffix in ("-wal", "-shm"))
    if not os.access(resolved.parent, os.W_OK) and not any(p.exists() for p in companions):
        uri += "&immutable=1"
    return uri


class StoreReader(AbstractContextManager["StoreReader"]):
    """Read-only access to a store (SQLite file or PostgreSQL) as Arrow batches."""

    def __init__(self, url: str | URL) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise UsageError(f"not a database URL: {url!r}") from None
        self.backend = parsed.get_backend_name()
        self.url = parsed
        self.display_url = safe_url(parsed)
        self._conn: Any
        if self.backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise QueryError("an in-memory SQLite database has no recorded data")
            path = Path(parsed.database)
            if not path.is_file():
                raise QueryError(f"database file not found: {path}")
            import adbc_driver_sqlite.dbapi as sqlite_dbapi

            self._conn = sqlite_dbapi.connect(sqlite_read_only_uri(path), autocommit=True)
        elif self.backend == "postgresql":
            import adbc_driver_postgresql.dbapi as pg_dbapi

            uri = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            try:
                self._conn = pg_dbapi.connect(uri, autocommit=True)
            except Exception as exc:  # the driver raises its own DBAPI hierarchy
                raise QueryError(f"cannot connect to PostgreSQL: {first_line(exc)}") from None
        else:
            raise QueryError(f"unsupported database {self.backend!r}: use SQLite or PostgreSQL")
        try:
            if self.backend == "sqlite":
                # Wait for a writer's lock instead of failing at once (same as the recorder).
                self._pragma(f"busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            self._check_schema()
        except QueryError:
            self._conn.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # -- queries ---------------------------------------------------------------------------

    def events(
        self,
        *,
        day: dt.date | None = None,
        accounts: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        id_range: tuple[int, int] | None = None,
        batch_rows: int = BATCH_ROWS,
        first_id: int | None = None,
        last_id: int | None = None,
        msg_types: Sequence[str] | None = None,
        containing: str | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """``events`` rows of ``day`` (all days when None) for ``accounts``, in id order.

        ``id_range`` (first, last) or ``first_id``/``last_id``, inclusive, restrict to an id
        range: consecutive rows of the table (see :meth:`events_extent`); with one account,
        the stretch of its chain that a day's rows span (rows of other days included).
        ``msg_types`` restricts to frames of those types; ``containing`` to frames whose
        text holds that string, and frames not stored as text (which the store cannot
        search): a coarse filter that the caller refines.
        """
        where, params = self._filters(day, accounts, day_column="trading_day")
        if id_range is not None:
            first_id, last_id = id_range
        for op, bound in ((">=", first_id), ("<=", last_id)):
            if bound is not None:
                where.append(f"id {op} {self._param(len(params))}")
                params.append(bound)
        if msg_types is not None:
            marks = ", ".join(self._param(len(params) + i) for i in range(len(msg_types)))
            where.append(f"msg_type IN ({marks})" if msg_types else "1 = 0")
            params.extend(msg_types)
        if containing is not None:
            find = "instr" if self.backend == "sqlite" else "strpos"
            where.append(f"(raw_kind <> 'text' OR {find}(raw, {self._param(len(params))}) > 0)")
            params.append(containing)
        yield from self._select("events", columns, where, params, batch_rows)

    def connection_log(
        self,
        *,
        accounts: Sequence[str] | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> Iterator[pa.RecordBatch]:
        """``connection_log`` rows (optionally ``start_ns <= at_ns < end_ns``), in id order."""
        where, params = self._filters(None, accounts, day_column="")
        if start_ns is not None:
            where.append(f"at_ns >= {self._param(len(params))}")
            params.append(start_ns)
        if end_ns is not None:
            where.append(f"at_ns < {self._param(len(params))}")
            params.append(end_ns)
        yield from self._select("connection_log", None, where, params, batch_rows)

    def session_log(
        self,
        *,
        start_ns: int,
        end_ns: int,
        accounts: Sequence[str] | None = None,
        batch_rows: int = BATCH_ROWS,
    ) -> Iterator[pa.RecordBatch]:
        """Every ``connection_log`` row of every session overlapping ``[start_ns, end_ns)``.

        A session lasts from its first row to its ``closed`` row, or forever when
        it has none (the recorder died before recording it). It overlaps the
        window when it began before ``end_ns`` and is not closed, or has a row at
        or after ``start_ns``. All its rows come back, also those outside the
        window, in id order.
        """
        params: list[Any] = []

        def mark(value: Any) -> str:
            params.append(value)
            return self._param(len(params) - 1)

        def account_filter() -> list[str]:
            if accounts is None:
                return []
            if not accounts:
                return ["1 = 0"]
            return [f"account_id IN ({', '.join(mark(a) for a in accounts)})"]

        sessions = (
            f"SELECT session_id FROM connection_log{_where(account_filter())} "
            f"GROUP BY session_id HAVING MIN(at_ns) < {mark(end_ns)} AND "
            "(MAX(CASE WHEN event = 'closed' THEN 1 ELSE 0 END) = 0 "
            f"OR MAX(at_ns) >= {mark(start_ns)})"
        )
        where = [f"session_id IN ({sessions})", *account_filter()]
        yield from self._select("connection_log", None, where, params, batch_rows)

    def schema_revision(self) -> str | None:
        """The store's alembic revision (e.g. ``"0001"``), or None when it has none recorded."""
        try:
            table = self._table("SELECT version_num FROM alembic_version", [])
        except Exception:  # no alembic_version table: a store created some other way
            return None
        values = table.column("version_num").to_pylist()
        return str(values[0]) if values else None

    def count_events(
        self,
        *,
        day: dt.date | None = None,
        accounts: Sequence[str] | None = None,
        id_range: tuple[int, int] | None = None,
    ) -> int:
        """Number of ``events`` rows matching the filters (as for :meth:`events`)."""
        where, params = self._filters(day, accounts, day_column="trading_day")
        if id_range is not None:
            where.append(f"id >= {self._param(len(params))}")
            where.append(f"id <= {self._param(len(params) + 1)}")
            params.extend(id_range)
        sql = "SELECT COUNT(*) AS n FROM events" + _where(where)
        return int(self._table(sql, params).column("n")[0].as_py())

    def events_extent(
        self, day: dt.date, accounts: Sequence[str] | None = None
    ) -> tuple[int, int, int] | None:
        """``(rows, first id, last id)`` of the ``events`` rows of ``day`` (for ``accounts``).

        None when there are none. Answered from an index (``trading_day``, or
        ``account_id, trading_day`` with accounts), never the rows: how an export
        plans its reads.
        """
        where, params = self._filters(day, accounts, day_column="trading_day")
        sql = (  # COALESCE: SQLite's driver cannot type a column whose first value is null
            "SELECT COUNT(*) AS n, COALESCE(MIN(id), 0) AS first_id, "
            f"COALESCE(MAX(id), 0) AS last_id FROM events{_where(where)}"
        )
        row = self._table(sql, params).to_pylist()[0]
        if not row["n"]:
            return None
        return int(row["n"]), int(row["first_id"]), int(row["last_id"])

    def days(self) -> list[dt.date]:
        """The trading days with at least one stored frame, ascending (from the day index)."""
        rows = self._table("SELECT DISTINCT trading_day AS day FROM events ORDER BY 1", [])
        return [
            value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
            for value in rows.column("day").to_pylist()
        ]

    def accounts(self, *, day: dt.date | None = None, table: str = "events") -> list[str]:
        """Accounts with at least one row of ``table`` (a frame on ``day`` when given), sorted."""
        if table not in STORE_SCHEMAS or "account_id" not in STORE_SCHEMAS[table].names:
            raise ValueError(f"no accounts in table {table!r}")
        where, params = self._filters(day, None, day_column="trading_day")
        sql = f"SELECT DISTINCT account_id FROM {table}" + _where(where) + " ORDER BY account_id"
        return [str(v) for v in self._table(sql, params).column("account_id").to_pylist()]

    def id_ranges(
        self, *, day: dt.date | None = None, accounts: Sequence[str] | None = None
    ) -> dict[str, tuple[int, int, int]]:
        """``{account: (first id, last id, rows)}`` of the stored frames (of ``day`` when given)."""
        where, params = self._filters(day, accounts, day_column="trading_day")
        sql = (
            "SELECT account_id, MIN(id) AS first_id, MAX(id) AS last_id, COUNT(*) AS n "
            "FROM events" + _where(where) + " GROUP BY account_id ORDER BY account_id"
        )
        table = self._table(sql, params).to_pylist()
        return {
            str(r["account_id"]): (int(r["first_id"]), int(r["last_id"]), int(r["n"]))
            for r in table
        }

    def store_id(self) -> str | None:
        """The store's id (``store_meta``), None for a store from before it had one."""
        return self.meta(STORE_ID)

    def trading_day_timezone(self) -> str | None:
        """The zone the store's trading days are dates in, None when none was recorded."""
        return self.meta(TRADING_DAY_TIMEZONE)

    def meta(self, name: str) -> str | None:
        """The ``store_meta`` value ``name``, None when absent (or the store predates it)."""
        try:
            table = self._table(
                f"SELECT value FROM store_meta WHERE name = {self._param(0)}", [name]
            )
        except QueryError:
            raise
        except Exception:  # no store_meta table: a store not upgraded since
            return None
        values = table.column("value").to_pylist()
        return str(values[0]) if values else None

    def checkpoints(
        self, account_id: str, *, last_ids: tuple[int, int] | None = None
    ) -> list[dict[str, Any]]:
        """The account's signed checkpoints in id order (with ``last_ids``, only those whose
        ``events_last_id`` lies in that inclusive range)."""
        where = [f"account_id = {self._param(0)}"]
        params: list[Any] = [account_id]
        if last_ids is not None:
            where.append(f"events_last_id >= {self._param(1)}")
            where.append(f"events_last_id <= {self._param(2)}")
            params.extend(last_ids)
        batches = self._select("checkpoints", None, where, params, BATCH_ROWS)
        return [row for batch in batches for row in batch.to_pylist()]

    def trading_days(self, ids: Sequence[int]) -> dict[int, dt.date]:
        """The trading day of each of the ``events`` rows ``ids`` (missing ids are absent)."""
        if not ids:
            return {}
        marks = ", ".join(self._param(i) for i in range(len(ids)))
        batches = self._select(
            "events", ["id", "trading_day"], [f"id IN ({marks})"], list(ids), BATCH_ROWS
        )
        return {row["id"]: row["trading_day"] for batch in batches for row in batch.to_pylist()}

    def count_log(self, account_id: str) -> int:
        """The account's ``connection_log`` rows."""
        sql = f"SELECT COUNT(*) AS n FROM connection_log WHERE account_id = {self._param(0)}"
        return int(self._table(sql, [account_id]).column("n")[0].as_py())

    def has_account(self, account_id: str) -> bool:
        """True when the store holds at least one frame or log row of ``account_id``."""
        for table in ("events", "connection_log"):
            sql = f"SELECT 1 AS hit FROM {table} WHERE account_id = {self._param(0)} LIMIT 1"
            if self._table(sql, [account_id]).num_rows:
                return True
        return False

    def chain_anchor(self, account_id: str, before_id: int) -> str:
        """Chain hash of the account's last row with ``id < before_id``: when none is stored,
        where its pruned prefix ended (``prunes``), else the genesis hash.

        The hash a day's first row chains from: what verifying a single day starts with.
        """
        sql = (
            f"SELECT chain_hash FROM events WHERE account_id = {self._param(0)} "
            f"AND id < {self._param(1)} ORDER BY id DESC LIMIT 1"
        )
        values = self._table(sql, [account_id, before_id]).column("chain_hash").to_pylist()
        if values:
            return str(values[0])
        pruned = [p for p in self.prunes(account_id) if p["last_id"] < before_id]
        return str(max(pruned, key=lambda p: p["last_id"])["head_last"]) if pruned else GENESIS_HASH

    def prunes(self, account_id: str | None = None) -> list[dict[str, Any]]:
        """The ``prunes`` rows (of ``account_id``), in id order: what ``studio-recorder prune``
        deleted after archiving. None in a store from before revision 0003."""
        exists = (
            "SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'prunes'"
            if self.backend == "sqlite"
            else "SELECT count(*) AS n FROM (SELECT to_regclass('prunes') AS t) AS r "
            "WHERE r.t IS NOT NULL"
        )
        if not self._table(exists, []).column("n")[0].as_py():
            return []  # a store not upgraded since
        where: list[str] = []
        params: list[Any] = []
        if account_id is not None:
            where, params = [f"account_id = {self._param(0)}"], [account_id]
        batches = self._select("prunes", None, where, params, BATCH_ROWS)
        return [row for batch in batches for row in batch.to_pylist()]

    # -- plumbing --------------------------------------------------------------------------

    def differing_copies(self, day: dt.date, accounts: Sequence[str] | None = None) -> pa.Table:
        """Every stored copy (``id``, ``account_id``, ``sequence``, ``raw_kind``, ``raw``) of
        the sequences of ``day`` (for ``accounts``) stored more than once with different bytes,
        in id order. Asked of the store itself (its (account, day, sequence) index pairs the
        copies), so that no frame's bytes leave it unless they differ from another copy."""
        where, params = self._filters(
            day, accounts, day_column="a.trading_day", account_column="a.account_id"
        )
        pairs = (
            "SELECT DISTINCT a.account_id, a.trading_day, a.sequence FROM events a JOIN events b "
            "ON b.account_id = a.account_id AND b.trading_day = a.trading_day "
            "AND b.sequence = a.sequence AND b.id > a.id "
            "AND (b.raw <> a.raw OR b.raw_kind <> a.raw_kind)"
            f"{_where([*where, 'a.sequence IS NOT NULL'])}"
        )
        sql = (
            "SELECT e.id, e.account_id, e.sequence, e.raw_kind, e.raw FROM events e "
            f"JOIN ({pairs}) d ON d.account_id = e.account_id "
            "AND d.trading_day = e.trading_day AND d.sequence = e.sequence ORDER BY e.id"
        )
        try:
            if self.backend == "sqlite":
                return self._sqlite_table(sql, params)
            return self._table(sql, params)
        except QueryError:
            raise
        except Exception as exc:  # the driver's own DBAPI errors
            raise QueryError(f"store read failed: {first_line(exc)}") from None

    def _sqlite_table(self, sql: str, params: Sequence[Any]) -> pa.Table:
        """``sql`` through Python's sqlite3 module: for the self-join above, the ADBC SQLite
        driver's plan does not use the (account, day, sequence) index (minutes, not 1.4 s, on
        a day of a million frames)."""
        path = Path(str(self.url.database))
        with closing(sqlite3.connect(sqlite_read_only_uri(path), uri=True)) as db:
            db.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor = db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})

    def _param(self, index: int) -> str:
        return "?" if self.backend == "sqlite" else f"${index + 1}"

    def _filters(
        self,
        day: dt.date | None,
        accounts: Sequence[str] | None,
        *,
        day_column: str,
        account_column: str = "account_id",
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if day is not None and day_column:
            cast = "" if self.backend == "sqlite" else "::date"
            where.append(f"{day_column} = {self._param(0)}{cast}")
            params.append(day.isoformat())
        if accounts is not None:
            if not accounts:
                where.append("1 = 0")
            else:
                marks = ", ".join(self._param(len(params) + i) for i in range(len(accounts)))
                where.append(f"{account_column} IN ({marks})")
                params.extend(accounts)
        return where, params

    def _table(self, sql: str, params: Sequence[Any]) -> pa.Table:
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, list(params) or None)
            return cursor.fetch_arrow_table()
        except Exception as exc:
            _interrupt_if_cancelled(exc)
            raise
        finally:
            cursor.close()

    def _select(
        self,
        table: str,
        columns: Sequence[str] | None,
        where: list[str],
        params: list[Any],
        batch_rows: int,
    ) -> Iterator[pa.RecordBatch]:
        schema = STORE_SCHEMAS[table]
        names = list(columns) if columns else schema.names
        for name in names:
            if name not in schema.names:
                raise QueryError(f"unknown column {name!r} of {table}")
        wanted = pa.schema([schema.field(n) for n in names])
        body = f"SELECT {', '.join(names)} FROM {table}{_where(where)} ORDER BY id"
        cursor = self._conn.cursor()
        sentinel = self.backend == "sqlite"
        if sentinel:
            typed = ", ".join(f"{_SENTINEL[f.type]} AS {f.name}" for f in wanted)
            body = (
                f"SELECT 0 AS _sentinel, {typed} "
                f"UNION ALL SELECT * FROM (SELECT 1, * FROM ({body}))"
            )
            cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(batch_rows)})
        try:
            cursor.execute(body, params or None)
            reader = cursor.fetch_record_batch()
            first = True
            for batch in reader:
                if sentinel:
                    batch = _drop_sentinel(batch, first=first)
                first = False
                if batch.num_rows:
                    yield conform(batch, wanted)
        except QueryError:
            raise
        except Exception as exc:  # ADBC raises its own DBAPI errors
            _interrupt_if_cancelled(exc)
            raise QueryError(f"store read failed: {first_line(exc)}") from None
        finally:
            cursor.close()

    def _pragma(self, setting: str) -> None:
        try:
            self._table(f"PRAGMA {setting}", [])
        except Exception as exc:  # the driver's own DBAPI errors
            raise QueryError(f"cannot read the store: {first_line(exc)}") from None

    def _check_schema(self) -> None:
        try:
            self._table("SELECT id FROM events WHERE 1 = 0", [])
            self._table("SELECT id FROM connection_log WHERE 1 = 0", [])
        except Exception as exc:
            text = str(exc)
            if "no such table" not in text and "does not exist" not in text:
                raise QueryError(f"cannot read the store: {first_line(exc)}") from None
            raise QueryError(
                "database has no recorder schema (tables events, connection_log): "
                "is this the right database? run `studio-recorder db upgrade` to create it"
            ) from None


def _interrupt_if_cancelled(exc: Exception) -> None:
    """Ctrl-C during a PostgreSQL query: the ADBC driver catches SIGINT itself, cancels the
    statement and raises CANCELLED. That is the user's interrupt, not a store failure."""
    status = getattr(exc, "status_code", None)
    if getattr(status, "name", None) == "CANCELLED":
        raise KeyboardInterrupt from None


def _drop_sentinel(batch: pa.RecordBatch, *, first: bool) -> pa.RecordBatch:
    if first:
        if batch.num_rows == 0 or batch.column(0)[0].as_py() != 0:
            raise QueryError("store read failed: SQLite returned the rows out of order")
        batch = batch.slice(1)
    return batch.drop_columns(["_sentinel"])


def _where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` trading day, or QueryError saying what is wrong with it."""
    if not _DATE_RE.fullmatch(text or ""):
        raise QueryError(f"bad date {text!r}: expected YYYY-MM-DD")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"impossible date {text!r}") from None
    try:
        return check_day(day)
    except DayOutOfRange as exc:
        raise QueryError(str(exc)) from None
