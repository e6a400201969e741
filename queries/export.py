"""Exporting one trading day of the store to Parquet files and a manifest, atomically.

:func:`export_day` plans the day from the store's indexes (per account, the ids
of its rows, cut into chunks of :data:`CHUNK_ROWS`), reads the chunks as Arrow
batches on a few connections at once (ADBC: no per-row Python objects; see
:mod:`queries.parallel`), writes one zstd Parquet file per table and account
(:mod:`queries.layout`, :mod:`queries.partfile`) into a private staging
directory, fsyncs, then publishes the day at once with its manifest
(:mod:`queries.publish`, :mod:`queries.manifest`).

Memory stays bounded whatever the size of the day: a few chunks in flight, one
row group being assembled, and the plan (8 bytes per row of the largest account).

Files are deterministic: chunks depend only on the stored ids, writer settings
are fixed and nothing time-dependent is written, so re-exporting the same stored
day gives the same bytes (for the same pyarrow version, named in each file's
``created_by``).

What can go wrong, each a :class:`QueryError` with one line: a missing or
foreign database, an unknown account or time zone, an export directory that
cannot be created or written, a failure while publishing (the previous export
of the day is then left as it was).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from recorder.tradingday import day_bounds_ns

from . import __version__
from .errors import QueryError
from .layout import (
    CONNECTION_LOG_FILE_SCHEMA,
    EVENTS_FILE_SCHEMA,
    TABLES,
    day_dir,
    encode_account,
    file_path,
    manifest_path,
)
from .manifest import AccountEntry, FileEntry, Manifest
from .parallel import OrderedReads
from .partfile import PartFile, connection_log_file_batch, events_file_batch
from .publish import Staging, create_private_file
from .source import CONNECTION_LOG_SCHEMA, GENESIS_HASH, StoreReader

DEFAULT_TIMEZONE: Final = "America/New_York"
#: Rows per store read (half a row group: two reads fill one).
CHUNK_ROWS: Final = 32_768
_STORE_EVENT_COLUMNS: Final = [
    "id", "session_id", "received_at_ns", "server_ts_ms", "sequence", "msg_type",
    "replayed", "raw_kind", "raw", "chain_hash",
]  # fmt: skip
_STAGED_MANIFEST: Final = "manifest.json"

#: ``progress(rows_written, rows_total)``: called as ``events`` rows are written.
Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """One read: an account's rows of the day with ``first_id <= id <= last_id``."""

    first_id: int
    last_id: int
    rows: int


def export_day(
    url: str,
    day: dt.date,
    out: str | Path,
    *,
    accounts: Sequence[str] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Manifest:
    """Export trading day ``day`` of the store at ``url`` into ``out``; return its manifest.

    ``accounts`` restricts the export to those accounts (each must be known to
    the store); by default every account with an ``events`` row on the day or a
    session overlapping it. The day's previous export in ``out`` is replaced as
    a whole (stale account partitions included). A day without data writes a
    manifest with no accounts and no files. ``timezone`` is the recorder's
    trading-day time zone: it decides which sessions' ``connection_log`` rows
    belong to the day. ``progress`` is called after each chunk of ``events``
    rows written; ``workers`` is the number of store connections reading at
    once (default: one per CPU, at most 4). Raises QueryError (see above).
    """
    tz = _zone(timezone)
    requested = _requested(accounts)
    out = Path(out)
    start_ns, end_ns = day_bounds_ns(day, tz)
    with StoreReader(url) as reader:
        for account in requested or ():
            _check_known(reader, account)
        log = pa.Table.from_batches(
            list(reader.session_log(start_ns=start_ns, end_ns=end_ns, accounts=requested)),
            schema=CONNECTION_LOG_SCHEMA,
        )
        plan = {
            account: chunks
            for account in (reader.accounts() if requested is None else requested)
            if (chunks := plan_chunks(reader.event_ids(day, account)))
        }
        day_accounts = sorted(set(plan) | set(log.column("account_id").to_pylist()))
        for account in day_accounts:
            _check_encodable(account)
        total = sum(chunk.rows for chunks in plan.values() for chunk in chunks)
        counter = _Counter(progress, total)
        manifest = Manifest(day, timezone, reader.schema_revision(), __version__)
        with Staging(out) as staging, OrderedReads(url, workers) as reads:
            root = staging.path
            for account in day_accounts:
                chunks = plan.get(account, [])
                entry, events_file = _write_events(root, day, account, chunks, reads, counter)
                if entry.first_id is not None:
                    entry = dataclasses.replace(
                        entry,
                        chain_anchor=reader.chain_anchor(account, entry.first_id),
                        chain_resume=_chain_resume(reader, day, account, chunks),
                    )
                log_file = _write_log(root, day, account, log)
                entry = dataclasses.replace(entry, connection_log=log_file.rows)
                manifest.accounts[account] = entry
                manifest.files.extend([events_file, log_file])
            staged = staging.path / _STAGED_MANIFEST
            create_private_file(staged)
            staged.write_text(manifest.to_json(), encoding="ascii")
            tables = [day_dir(table, day) for table in TABLES]
            staging.publish(tables, manifest_path(day), _STAGED_MANIFEST)
    return manifest


def plan_chunks(ids: pa.Int64Array, chunk_rows: int = CHUNK_ROWS) -> list[Chunk]:
    """Cut ascending ``ids`` into consecutive chunks of ``chunk_rows`` rows (the last shorter)."""
    total = len(ids)
    return [
        Chunk(ids[start].as_py(), ids[end - 1].as_py(), end - start)
        for start in range(0, total, chunk_rows)
        for end in [min(start + chunk_rows, total)]
    ]


def _write_events(
    root: Path,
    day: dt.date,
    account: str,
    chunks: list[Chunk],
    reads: OrderedReads,
    counter: _Counter,
) -> tuple[AccountEntry, FileEntry]:
    """The account's ``events`` file (empty when it has no rows): its chain facts and entry."""

    def read(reader: StoreReader, chunk: Chunk) -> list[pa.RecordBatch]:
        batches = reader.events(
            day=day,
            accounts=[account],
            columns=_STORE_EVENT_COLUMNS,
            id_range=(chunk.first_id, chunk.last_id),
        )
        return [events_file_batch(batch) for batch in batches]

    first: tuple[int, str] | None = None
    last: tuple[int, str] | None = None
    with PartFile(root, file_path("events", day, account), EVENTS_FILE_SCHEMA) as part:
        for batches in reads.map(read, chunks):
            for batch in batches:
                if first is None:
                    first = (batch["id"][0].as_py(), batch["chain_hash"][0].as_py())
                last = (batch["id"][-1].as_py(), batch["chain_hash"][-1].as_py())
                part.write(batch)
                counter.add(batch.num_rows)
    entry = AccountEntry(events=part.rows, connection_log=0)
    if first is not None and last is not None:
        entry = AccountEntry(part.rows, 0, first[0], last[0], None, first[1], last[1])
    return entry, part.entry("events", account)


def _chain_resume(
    reader: StoreReader, day: dt.date, account: str, chunks: list[Chunk]
) -> tuple[tuple[int, str], ...]:
    """Exported rows whose chain predecessor is a row of another day, with that row's hash.

    Usually none, which an index-only count proves: the account has no more rows
    between its first and last id of the day than the day itself.
    """
    first, last = chunks[0].first_id, chunks[-1].last_id
    day_rows = sum(chunk.rows for chunk in chunks)
    if reader.count_events(accounts=[account], id_range=(first, last)) == day_rows:
        return ()
    day_ids = reader.event_ids(day, account).to_pylist()
    resume: dict[int, str] = {}
    columns = ["id", "trading_day", "chain_hash"]
    for batch in reader.events(accounts=[account], columns=columns, id_range=(first, last)):
        other = batch.filter(pc.not_equal(batch["trading_day"], pa.scalar(day, pa.date32())))
        for row_id, chain_hash in zip(
            other["id"].to_pylist(), other["chain_hash"].to_pylist(), strict=True
        ):
            after = bisect.bisect_right(day_ids, row_id)
            if after < len(day_ids):  # the last other-day row before it wins
                resume[day_ids[after]] = chain_hash
    return tuple(sorted(resume.items()))


def _write_log(root: Path, day: dt.date, account: str, log: pa.Table) -> FileEntry:
    """The account's ``connection_log`` file (empty when no session of it overlaps the day)."""
    rows = log.filter(pc.equal(log.column("account_id"), account))
    relative = file_path("connection_log", day, account)
    with PartFile(root, relative, CONNECTION_LOG_FILE_SCHEMA) as part:
        for batch in rows.to_batches():
            part.write(connection_log_file_batch(batch))
    return part.entry("connection_log", account)


class _Counter:
    """Progress: ``events`` rows written so far over the day's total."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress = progress
        self.total = total
        self.written = 0

    def add(self, rows: int) -> None:
        self.written += rows
        if self.progress is not None:
            self.progress(self.written, max(self.total, self.written))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(f"unknown time zone {name!r} (expected an IANA name)") from None


def _requested(accounts: Sequence[str] | None) -> list[str] | None:
    if accounts is None:
        return None
    chosen = sorted(set(accounts))
    if not chosen:
        raise QueryError("no account given")
    for account in chosen:
        if not account.strip():
            raise QueryError(f"bad account id {account!r}: empty")
    return chosen


def _check_known(reader: StoreReader, account: str) -> None:
    """QueryError unless the store holds a frame or a connection_log row of ``account``."""
    if reader.chain_anchor(account, 2**63 - 1) != GENESIS_HASH:
        return  # it has at least one events row
    for _batch in reader.connection_log(accounts=[account]):
        return  # at least one connection_log row
    raise QueryError(f"unknown account {account!r}: the store has no frame or session of it")


def _check_encodable(account: str) -> None:
    try:
        encode_account(account)
    except ValueError as exc:
        raise QueryError(f"account {account!r} cannot be exported: {exc}") from None
