"""Exporting one trading day of the store to Parquet files and a manifest, atomically.

:func:`export_day` plans the day from an index (its first and last id, cut
into chunks of :data:`CHUNK_ROWS` consecutive ids), reads the chunks in id
order as Arrow batches on a few connections at once (ADBC: no per-row Python
objects; see :mod:`queries.parallel`), splits each chunk by account and appends
it to that account's Parquet file (:mod:`queries.layout`, :mod:`queries.partfile`)
in a private staging directory, fsyncs, then publishes the day at once with its
manifest (:mod:`queries.publish`, :mod:`queries.manifest`). Reading the day in
id order walks the store's table sequentially, which costs a third of reading
it account by account through an index.

Memory stays bounded whatever the size of the day: a few chunks in flight, at
most one row group per account waiting for its file (and never more than
:data:`PENDING_BYTES_MAX` over all accounts: the largest is then written out
early).

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

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from recorder import __version__
from recorder.chain import GENESIS_HASH
from recorder.tradingday import DEFAULT_TIMEZONE, day_bounds_ns

from .contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA
from .duck import zone
from .errors import QueryError
from .layout import (
    CONNECTION_LOG_FILE_SCHEMA,
    EVENTS_FILE_SCHEMA,
    TABLES,
    day_dir,
    encode_account,
    file_path,
    manifest_path,
    to_file_batch,
)
from .manifest import AccountEntry, FileEntry, Manifest
from .parallel import Chunk, OrderedReads, plan_chunks
from .partfile import PartFile
from .publish import Staging, create_private_file, describe
from .source import StoreReader

#: Rows per store read.
CHUNK_ROWS: Final = 32_768
#: Rows waiting for their row group, over all accounts, before the largest is written early.
PENDING_BYTES_MAX: Final = 128 * 1024 * 1024
#: What an export reads of ``events``: every column but the day, which it already knows.
_STORE_EVENT_COLUMNS: Final = [name for name in EVENTS_SCHEMA.names if name != "trading_day"]
_STAGED_MANIFEST: Final = "manifest.json"

#: ``progress(rows_written, rows_total)``: called as ``events`` rows are written.
Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What to export: the day's ``events`` reads and its ``connection_log`` rows."""

    day: dt.date
    accounts: list[str] | None  # None: every account
    rows: int
    chunks: list[Chunk]
    log: pa.Table


def export_day(
    url: str,
    day: dt.date,
    out: str | Path,
    *,
    accounts: Sequence[str] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    progress: Progress | None = None,
    workers: int | None = None,
    publishing: Callable[[], None] | None = None,
) -> Manifest:
    """Export trading day ``day`` of the store at ``url`` into ``out``; return its manifest.

    ``accounts`` restricts the export to those accounts (each must be known to
    the store); by default every account with an ``events`` row on the day or a
    session overlapping it. The day's previous export in ``out`` is replaced as
    a whole (stale accounts' files included). A day without data writes a
    manifest with no accounts and no files. ``timezone`` is the recorder's
    trading-day time zone: it decides which sessions' ``connection_log`` rows
    belong to the day. ``progress`` is called after each chunk of ``events``
    rows written; ``workers`` is the number of store connections reading at
    once (default: one per CPU, at most 4). ``publishing`` is called just before the
    day is published (the command line stops honouring Ctrl-C there: from then on the
    export completes). Raises QueryError (see above).
    """
    tz = zone(timezone)
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
        extent = reader.events_extent(day, requested)
        plan = _Plan(
            day=day,
            accounts=requested,
            rows=extent[0] if extent else 0,
            chunks=plan_chunks(extent[1], extent[2], CHUNK_ROWS) if extent else [],
            log=log,
        )
        manifest = Manifest(
            day, timezone, reader.schema_revision(), __version__, store_id=reader.store_id()
        )
        with Staging(out) as staging:
            try:
                _write_day(
                    reader, url, staging.path, plan, manifest, workers=workers, progress=progress
                )
            except OSError as exc:  # the staging area: disk full, quota, I/O error
                raise QueryError(f"cannot write to {out}: {describe(exc, out)}") from None
            tables = [day_dir(table, day) for table in TABLES]
            if publishing is not None:
                publishing()
            staging.publish(tables, manifest_path(day), _STAGED_MANIFEST)
    return manifest


def _write_day(
    reader: StoreReader,
    url: str,
    root: Path,
    plan: _Plan,
    manifest: Manifest,
    *,
    workers: int | None,
    progress: Progress | None,
) -> None:
    """Write every file of the day and the manifest under ``root``; fill in ``manifest``."""
    day = plan.day
    files = _DayFiles(root, day)
    try:
        _write_events(url, plan, files, workers, progress)
        for account in set(plan.log.column("account_id").to_pylist()):
            files.events(account)  # its (empty) events file
        for account in sorted(files.parts):
            events_file = files.close(account)
            log_file = _write_log(root, day, account, plan.log)
            entry = _account_entry(reader, day, files, account, events_file, log_file)
            log_resume = _log_chain_resume(reader, account, plan.log)
            manifest.accounts[account] = dataclasses.replace(entry, log_chain_resume=log_resume)
            manifest.files.extend([events_file, log_file])
    finally:
        files.abandon()
    staged = root / _STAGED_MANIFEST
    create_private_file(staged)
    staged.write_text(manifest.to_json(), encoding="ascii")


def _write_events(
    url: str, plan: _Plan, files: _DayFiles, workers: int | None, progress: Progress | None
) -> None:
    """Read the plan's chunks (in parallel, in order); append their rows to the accounts' files."""

    def read(reader: StoreReader, chunk: Chunk) -> list[tuple[str, pa.RecordBatch]]:
        batches = reader.events(
            day=plan.day,
            accounts=plan.accounts,
            columns=_STORE_EVENT_COLUMNS,
            id_range=(chunk.first_id, chunk.last_id),
        )
        return [(a, to_file_batch(rows, "events")) for batch in batches for a, rows in split(batch)]

    written = 0
    with OrderedReads(url, workers) as reads:
        for parts in reads.map(read, plan.chunks):
            for account, rows in parts:
                files.write(account, rows)
                written += rows.num_rows
            files.limit_pending(PENDING_BYTES_MAX)
            if progress is not None:
                progress(written, max(plan.rows, written))


def split(batch: pa.RecordBatch) -> Iterator[tuple[str, pa.RecordBatch]]:
    """``batch``'s rows grouped by ``account_id`` (accounts sorted), each group in its order."""
    accounts = batch.column("account_id")
    distinct = sorted(pc.unique(accounts).to_pylist())
    if len(distinct) == 1:
        yield distinct[0], batch
        return
    for account in distinct:
        yield account, batch.filter(pc.equal(accounts, account))


class _DayFiles:
    """One ``events`` :class:`PartFile` per account, with the chain facts of its rows."""

    def __init__(self, root: Path, day: dt.date) -> None:
        self.root = root
        self.day = day
        self.parts: dict[str, PartFile] = {}
        self.first: dict[str, tuple[int, str]] = {}
        self.last: dict[str, tuple[int, str]] = {}

    def events(self, account: str) -> PartFile:
        part = self.parts.get(account)
        if part is None:
            _check_encodable(account)
            relative = file_path("events", self.day, account)
            part = self.parts[account] = PartFile(self.root, relative, EVENTS_FILE_SCHEMA)
        return part

    def write(self, account: str, rows: pa.RecordBatch) -> None:
        if account not in self.first:
            self.first[account] = (rows["id"][0].as_py(), rows["chain_hash"][0].as_py())
        self.last[account] = (rows["id"][-1].as_py(), rows["chain_hash"][-1].as_py())
        self.events(account).write(rows)

    def limit_pending(self, max_bytes: int) -> None:
        """Write the largest waiting row groups early until at most ``max_bytes`` wait."""
        while sum(p.pending_bytes for p in self.parts.values()) > max_bytes:
            max(self.parts.values(), key=lambda p: p.pending_bytes).flush()

    def close(self, account: str) -> FileEntry:
        part = self.events(account)
        part.close()
        return part.entry("events", account)

    def abandon(self) -> None:
        """Release every file still open (after an error: the staging area is discarded)."""
        for part in self.parts.values():
            part.close(flush=False)


def _account_entry(
    reader: StoreReader,
    day: dt.date,
    files: _DayFiles,
    account: str,
    events_file: FileEntry,
    log_file: FileEntry,
) -> AccountEntry:
    entry = AccountEntry(events=events_file.rows, connection_log=log_file.rows)
    if account not in files.first:
        return entry
    (first_id, first_hash), (last_id, last_hash) = files.first[account], files.last[account]
    return dataclasses.replace(
        entry,
        first_id=first_id,
        last_id=last_id,
        chain_anchor=reader.chain_anchor(account, first_id),
        first_chain_hash=first_hash,
        last_chain_hash=last_hash,
        chain_resume=_chain_resume(reader, day, account, (first_id, last_id), events_file.rows),
        checkpoints=_day_notes(reader, day, account, (first_id, last_id)),
    )


def _day_notes(
    reader: StoreReader, day: dt.date, account: str, id_range: tuple[int, int]
) -> tuple[str, ...]:
    """The account's signed notes whose last ``events`` row is one of the day's rows (a
    checkpoint ending on a row of another day in the id range attests nothing here)."""
    rows = reader.checkpoints(account, last_ids=id_range)
    days = reader.trading_days(sorted({int(row["events_last_id"]) for row in rows}))
    return tuple(str(row["note"]) for row in rows if days.get(row["events_last_id"]) == day)


def _chain_resume(
    reader: StoreReader, day: dt.date, account: str, id_range: tuple[int, int], rows: int
) -> tuple[tuple[int, str], ...]:
    """Exported rows whose chain predecessor is a row of another day, with that row's hash.

    Usually none, which an index-only count proves: the account has no more rows
    between its first and last id of the day than the day itself.
    """
    if reader.count_events(accounts=[account], id_range=id_range) == rows:
        return ()
    resume: list[tuple[int, str]] = []
    previous: tuple[bool, str] | None = None  # (of this day?, chain hash) of the row before
    columns = ["id", "trading_day", "chain_hash"]
    for batch in reader.events(accounts=[account], columns=columns, id_range=id_range):
        for row_id, row_day, chain_hash in zip(
            batch["id"].to_pylist(),
            batch["trading_day"].to_pylist(),
            batch["chain_hash"].to_pylist(),
            strict=True,
        ):
            if row_day == day and previous is not None and not previous[0]:
                resume.append((row_id, previous[1]))
            previous = (row_day == day, chain_hash)
    return tuple(resume)


def _log_chain_resume(
    reader: StoreReader, account: str, log: pa.Table
) -> tuple[tuple[int, str], ...]:
    """The account's journal rows in ``log`` whose chain predecessor is not the row before
    them there (the first always), with the predecessor's hash (genesis for none)."""
    ids = log.filter(pc.equal(log.column("account_id"), account)).column("id").to_pylist()
    if not ids:
        return ()
    # The account's whole journal chain (a handful of rows per session): each row's
    # predecessor id and hash.
    before: dict[int, tuple[int | None, str]] = {}
    last: tuple[int | None, str] = (None, GENESIS_HASH)
    for batch in reader.connection_log(accounts=[account]):
        for row_id, chain_hash in zip(
            batch["id"].to_pylist(), batch["chain_hash"].to_pylist(), strict=True
        ):
            before[row_id] = last
            last = (row_id, chain_hash)
    resume = []
    for n, row_id in enumerate(ids):
        predecessor, previous_hash = before[row_id]
        if n == 0 or predecessor != ids[n - 1]:
            resume.append((row_id, previous_hash))
    return tuple(resume)


def _write_log(root: Path, day: dt.date, account: str, log: pa.Table) -> FileEntry:
    """The account's ``connection_log`` file (empty when no session of it overlaps the day)."""
    rows = log.filter(pc.equal(log.column("account_id"), account))
    relative = file_path("connection_log", day, account)
    with PartFile(root, relative, CONNECTION_LOG_FILE_SCHEMA) as part:
        for batch in rows.to_batches():
            part.write(to_file_batch(batch, "connection_log"))
    return part.entry("connection_log", account)


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
