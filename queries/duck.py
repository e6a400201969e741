"""A DuckDB workspace over one trading day of the store or of an export directory.

Every analytics command starts here: :func:`open_store` / :func:`open_export` read
the day's ``events`` and the ``connection_log`` rows of every session overlapping
the day as Arrow (through :class:`~queries.source.StoreReader` or the export's
Parquet files) into an in-memory DuckDB, then define the views the commands and
``studio-query sql`` query (:mod:`queries.views`). Both sources give the same
tables, so every command works the same over either. The day's frames are scanned
in place as Arrow tables (no copy into DuckDB); the small ``connection_log`` is a
DuckDB table.

What can go wrong (each a :class:`QueryError`): the store or export cannot be read,
an ``--account`` is unknown, an export lacks the day.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
from sqlalchemy.engine import URL

from recorder.instants import INT64_MAX, NS_PER_S
from recorder.tradingday import DEFAULT_TIMEZONE, UnknownZone, day_bounds_ns
from recorder.tradingday import zone as load_zone

from .contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA, LIGHT_COLUMNS
from .errors import QueryError, UsageError
from .exportdir import ExportDir
from .parallel import Chunk, OrderedReads, plan_chunks
from .source import StoreReader
from .views import NOTICE_COLUMNS, NOTICE_TYPES, define_views

#: A day of at least this many rows is read on several connections at once, in about
#: READ_CHUNKS reads of consecutive ids (enough to keep every connection busy).
PARALLEL_READ_MIN_ROWS: Final = 100_000
READ_CHUNKS: Final = 16
READ_CHUNK_ROWS_MIN: Final = 16_384
#: Log rows this long after the day are read too: the ``closed`` row of a session
#: that spans midnight (sessions live at most one token lifetime, 24 h).
LOG_LOOKAHEAD_NS: Final = 2 * 86_400 * NS_PER_S


@dataclass
class Workspace(AbstractContextManager["Workspace"]):
    """An in-memory DuckDB holding one day (or, for ``sql``, everything) of one source.

    Tables ``_events`` (store schema) and ``_log`` (``connection_log``), the views of
    :mod:`queries.views` when ``payload`` is true, and what the commands need to know
    about the day: its bounds, the accounts in scope and "now". ``store``/``export``
    is the source (for the chain verification that reads it again).
    """

    con: duckdb.DuckDBPyConnection
    day: dt.date | None
    tz: ZoneInfo
    accounts: tuple[str, ...]
    now_ns: int
    source: str
    payload: bool
    filtered: bool = False  # the accounts were named (--account), not every one found
    store: StoreReader | None = None
    export: ExportDir | None = None
    #: The Arrow table behind ``_events`` (a store's day read once: the chain check of an
    #: evening hashes the same rows).
    events: pa.Table | None = field(default=None, repr=False)
    #: Called when the workspace closes (e.g. to remove a day fetched from the archive).
    cleanup: list[Callable[[], object]] = field(default_factory=list, repr=False)
    #: Results several reports of one workspace share (e.g. conflicting duplicates), by name.
    memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _frozen: bool = field(default=False, repr=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()
        if self.store is not None:
            self.store.close()
        for done in self.cleanup:
            done()

    @property
    def bounds_ns(self) -> tuple[int, int]:
        """[start, end) of the day in its time zone, as UTC epoch nanoseconds."""
        if self.day is None:
            raise QueryError("this command needs --day")
        return day_bounds_ns(self.day, self.tz)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query of the analytics (their SQL, never user SQL) and fetch every row."""
        return self.con.execute(sql, list(params)).fetchall()

    def events_with(self, columns: Sequence[str]) -> str:
        """The name of a relation of the day's events holding ``columns``: ``_events`` when
        it has them (the workspace was opened with them), else ``_events_more``, read now
        from the source for the workspace's day and accounts."""
        have = {d[0] for d in self.con.execute("SELECT * FROM _events LIMIT 0").description}
        if set(columns) <= have:
            return "_events"
        names = _columns(False, columns)
        wanted = list(self.accounts) if self.filtered else None
        if self.store is not None:
            batches = _store_events(self.store, self.day, wanted, names)
        else:
            assert self.export is not None
            days = [self.day] if self.day is not None else self.export.days()
            batches = self.export.batches("events", days, wanted, names)
        _load(self.con, "_events_more", _schema(EVENTS_SCHEMA, names), batches)
        return "_events_more"

    def freeze(self) -> None:
        """Compute the payload views once into tables (for commands querying them often)."""
        if self.payload and not self._frozen:
            for name in ("activity", "orders", "fills", "positions"):
                self.con.execute(f"CREATE TABLE _{name} AS SELECT * FROM {name}")
                self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}")
            self._frozen = True


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or QueryError."""
    try:
        return load_zone(name)
    except UnknownZone as exc:
        raise UsageError(str(exc)) from None


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    return con


def _load(
    con: duckdb.DuckDBPyConnection,
    name: str,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    *,
    native: bool = False,
) -> pa.Table:
    """Make ``batches`` the relation ``name``: the Arrow table itself (DuckDB scans it in
    place: no copy, which for a day of a million frames saves most of a second), or with
    ``native`` a DuckDB table (for the small ones that are modified). Returns the table."""
    table = pa.Table.from_batches(list(batches), schema=schema)
    if not native:
        con.register(name, table)
        return table
    con.register("_arrow_source", table)
    try:
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _arrow_source")
    finally:
        con.unregister("_arrow_source")
    return table


def _keep_overlapping_sessions(con: duckdb.DuckDBPyConnection, start_ns: int, end_ns: int) -> None:
    """Drop log rows of sessions that do not overlap [start, end): opened → closed (or open)."""
    con.execute(
        """
        DELETE FROM _log WHERE session_id NOT IN (
            SELECT session_id FROM _log GROUP BY session_id
            HAVING min(at_ns) < $end
               AND coalesce(max(at_ns) FILTER (WHERE event = 'closed'), $end) >= $start)
        """,
        {"start": start_ns, "end": end_ns},
    )


def _scope(
    con: duckdb.DuckDBPyConnection, requested: Sequence[str] | None, configured: Sequence[str]
) -> tuple[str, ...]:
    if requested:
        return tuple(sorted(set(requested)))
    found = {
        str(row[0])
        for row in con.execute(
            "SELECT DISTINCT account_id FROM _events UNION SELECT DISTINCT account_id FROM _log"
        ).fetchall()
    }
    return tuple(sorted(found | set(configured)))


def _columns(payload: bool, columns: Sequence[str] | None) -> list[str]:
    if payload:
        return list(EVENTS_SCHEMA.names)
    wanted = set(columns or LIGHT_COLUMNS) | {"account_id", "trading_day"}
    return [name for name in EVENTS_SCHEMA.names if name in wanted]


def check_accounts(reader: StoreReader, accounts: Sequence[str], configured: Sequence[str]) -> None:
    """QueryError naming the first of ``accounts`` the store and configuration do not know."""
    for account in accounts:
        if account not in configured and not reader.has_account(account):
            raise QueryError(
                f"unknown account {account!r}: nothing recorded for it in {reader.display_url}"
            )


def _schema(schema: pa.Schema, columns: Sequence[str]) -> pa.Schema:
    return pa.schema([schema.field(name) for name in columns])


def _store_events(
    reader: StoreReader,
    day: dt.date | None,
    accounts: list[str] | None,
    columns: Sequence[str],
    msg_types: Sequence[str] | None = None,
    *,
    parallel: bool = False,
) -> Iterator[pa.RecordBatch]:
    """The day's ``events`` rows with ``columns`` (in that order), in id order.

    Reading one day, ``trading_day`` is that day on every row: it is added here
    instead of being read (and parsed from text, on SQLite) a million times. With
    ``parallel``, a large day is read in chunks of ids on a few connections at once
    (:mod:`queries.parallel`: the drivers convert rows without holding the GIL).
    """
    if day is None or "trading_day" not in columns:
        yield from reader.events(day=day, accounts=accounts, columns=columns, msg_types=msg_types)
        return
    read = [name for name in columns if name != "trading_day"]
    schema = _schema(EVENTS_SCHEMA, columns)
    constant = pa.scalar(day, pa.date32())
    extent = reader.events_extent(day, accounts) if parallel else None
    if extent is None or extent[0] < PARALLEL_READ_MIN_ROWS:
        batches: Iterator[pa.RecordBatch] = reader.events(
            day=day, accounts=accounts, columns=read, msg_types=msg_types
        )
    else:
        batches = _read_in_chunks(reader.url, day, accounts, read, msg_types, extent)
    for batch in batches:
        arrays = dict(zip(read, batch.columns, strict=True))
        arrays["trading_day"] = pa.repeat(constant, batch.num_rows)
        yield pa.RecordBatch.from_arrays([arrays[name] for name in columns], schema=schema)


def _tapped(
    batches: Iterator[pa.RecordBatch], tap: Callable[[pa.RecordBatch], object]
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        tap(batch)
        yield batch


def _read_in_chunks(
    url: URL,
    day: dt.date,
    accounts: list[str] | None,
    columns: Sequence[str],
    msg_types: Sequence[str] | None,
    extent: tuple[int, int, int],
) -> Iterator[pa.RecordBatch]:
    def read(reader: StoreReader, chunk: Chunk) -> list[pa.RecordBatch]:
        span = (chunk.first_id, chunk.last_id)
        return list(reader.events(day=day, accounts=accounts, columns=columns,
                                  msg_types=msg_types, id_range=span))  # fmt: skip

    chunk_rows = max(READ_CHUNK_ROWS_MIN, -(-(extent[2] - extent[1] + 1) // READ_CHUNKS))
    with OrderedReads(url.render_as_string(hide_password=False)) as reads:
        for batches in reads.map(read, plan_chunks(extent[1], extent[2], chunk_rows)):
            yield from batches


def open_store(
    url: str,
    *,
    day: dt.date | None,
    accounts: Sequence[str] | None = None,
    configured: Sequence[str] = (),
    timezone: str = DEFAULT_TIMEZONE,
    payload: bool = True,
    notices: bool = True,
    columns: Sequence[str] | None = None,
    now_ns: int | None = None,
    tap: Callable[[pa.RecordBatch], object] | None = None,
    days: Sequence[dt.date] | None = None,
    archived: Mapping[dt.date, Path] | None = None,
) -> Workspace:
    """A workspace over ``day`` of the store at ``url`` (every day when None; ``days``: those
    days together, for ``sql`` over a range, each of ``archived`` read from the export
    directory it maps to: the archive's copy of a day the store no longer holds).

    ``tap`` is handed each batch of ``_events`` as it is read, in id order (an evening
    hashes the chains while the rest of the day is still being read).

    ``accounts`` restricts to those accounts (each must be known to the store or be
    in ``configured``, the configuration's accounts, else QueryError); by default
    every account with frames or sessions that day, plus ``configured``.
    ``payload=False`` skips ``raw``/``chain_hash`` (and the payload views) except for
    error-notices (table ``_notices``, empty with ``notices=False``): enough for gaps
    and audit, and faster. ``columns`` narrows a light workspace further (default
    :data:`LIGHT_COLUMNS`; ``account_id`` and ``trading_day`` are always kept).
    """
    tz = zone(timezone)
    reader = StoreReader(url)
    con = _connect()
    try:
        check_accounts(reader, accounts or (), configured)
        wanted = list(accounts) if accounts else None
        names = _columns(payload, columns)
        batches: Iterator[pa.RecordBatch]
        if days:
            elsewhere = archived or {}
            batches = (
                b
                for d in days
                for b in (
                    ExportDir(elsewhere[d]).batches("events", [d], wanted, names)
                    if d in elsewhere
                    else _store_events(reader, d, wanted, names)
                )
            )
        else:
            batches = _store_events(reader, day, wanted, names, parallel=True)
        if tap is not None:
            batches = _tapped(batches, tap)
        events = _load(con, "_events", _schema(EVENTS_SCHEMA, names), batches)
        if not payload:
            types = NOTICE_TYPES if notices else ()
            kept = _store_events(reader, day, wanted, NOTICE_COLUMNS, types)
            _load(con, "_notices", _schema(EVENTS_SCHEMA, NOTICE_COLUMNS), kept)
        first, last = (days[0], days[-1]) if days else (day, day)
        end = (
            None if last is None else min(day_bounds_ns(last, tz)[1] + LOG_LOOKAHEAD_NS, INT64_MAX)
        )
        log = reader.connection_log(accounts=wanted, end_ns=end)
        _load(con, "_log", CONNECTION_LOG_SCHEMA, log, native=True)
        if first is not None and last is not None:
            _keep_overlapping_sessions(con, day_bounds_ns(first, tz)[0], day_bounds_ns(last, tz)[1])
        define_views(con, payload)
        scope = _scope(con, wanted, configured)
    except BaseException:
        con.close()
        reader.close()
        raise
    return Workspace(
        con=con,
        day=day,
        tz=tz,
        accounts=scope,
        now_ns=now_ns or time.time_ns(),
        source=url,
        payload=payload,
        filtered=bool(accounts),
        store=reader,
        events=events,
    )


def open_rows(batches: Iterable[pa.RecordBatch], *, source: str, tz: ZoneInfo) -> Workspace:
    """A workspace over given ``events`` rows (store-shaped batches), with the payload views
    and no ``connection_log``: for a question about a few frames picked from many days
    (``studio-query trace``)."""
    con = _connect()
    try:
        events = _load(con, "_events", EVENTS_SCHEMA, iter(batches))
        _load(con, "_log", CONNECTION_LOG_SCHEMA, iter(()), native=True)
        define_views(con, payload=True)
    except BaseException:
        con.close()
        raise
    accounts = tuple(sorted(set(events.column("account_id").to_pylist())))
    return Workspace(con=con, day=None, tz=tz, accounts=accounts, now_ns=time.time_ns(),
                     source=source, payload=True, events=events)  # fmt: skip


def open_export(
    directory: str | Path,
    *,
    day: dt.date | None,
    accounts: Sequence[str] | None = None,
    payload: bool = True,
    notices: bool = True,
    columns: Sequence[str] | None = None,
    now_ns: int | None = None,
    configured: Sequence[str] = (),
    days: Sequence[dt.date] | None = None,
) -> Workspace:
    """A workspace over ``day`` of an export directory (every exported day when None;
    ``days``: those of them the export holds).

    The time zone is the one the day was exported with (its manifest's). Accounts
    are checked against the manifests and ``configured`` (QueryError for an unknown one);
    with ``day`` the scope is every account of its manifest and ``configured``, as a
    store's would be.
    """
    export = ExportDir(directory)
    if days:
        held = set(export.days())
        days = [d for d in days if d in held]
    else:
        days = [day] if day is not None else export.days()
    known = export.check_accounts(accounts or (), days, configured)
    tz = zone(export.timezone(days) or DEFAULT_TIMEZONE)
    wanted = list(accounts) if accounts else None
    names = _columns(payload, columns)
    con = _connect()
    try:
        _load(
            con,
            "_events",
            _schema(EVENTS_SCHEMA, names),
            export.batches("events", days, wanted, names),
        )
        if not payload:
            types = NOTICE_TYPES if notices else ()
            kept = export.batches("events", days, wanted, NOTICE_COLUMNS, types)
            _load(con, "_notices", _schema(EVENTS_SCHEMA, NOTICE_COLUMNS), kept)
        log = export.batches("connection_log", days, wanted)
        _load(con, "_log", CONNECTION_LOG_SCHEMA, log, native=True)
        # A session spanning two exported days is in both days' files: keep one copy.
        con.execute("CREATE OR REPLACE TABLE _log AS SELECT DISTINCT * FROM _log ORDER BY id")
        define_views(con, payload)
        scope = _scope(con, wanted, sorted(known) if day is not None else ())
    except BaseException:
        con.close()
        raise

    return Workspace(
        con=con,
        day=day,
        tz=tz,
        accounts=scope,
        now_ns=now_ns or time.time_ns(),
        source=str(export.root),
        payload=payload,
        filtered=bool(accounts),
        export=export,
    )
