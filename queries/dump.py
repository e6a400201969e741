"""``studio-query dump``: the human-readable copy of the record beside the usable one.

SEC 17a-4 asks that a record kept electronically can also be produced in a form a person
reads. A dump is that form: one line per stored frame, in store order, with the store's
column names and ``raw`` exactly as stored, as JSON Lines or CSV; JSON Lines also holds
the ``connection_log`` rows of the sessions that touch each day (after that day's frames,
once each over a range of days). It is written to a hidden file beside the target,
fsynced and renamed into place: a reader sees the previous file or the whole new one.

Rows are streamed (a store's in id order; an export's per-account files merged on ``id``),
so memory stays bounded whatever the size of a day, and a store and its export dump to the
same bytes. Pure formatting (:func:`frame_record`, :func:`log_record`) apart from
:func:`dump`.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import heapq
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import pyarrow as pa

from recorder.instants import iso_ns
from recorder.tradingday import day_bounds_ns

from .datasource import DataSource
from .duck import check_accounts, zone
from .errors import QueryError
from .exportdir import ExportDir
from .publish import describe, fsync_path, make_private_dirs
from .source import StoreReader

FORMATS: Final = ("jsonl", "csv")
#: The fields of a frame's line, in order: the store's columns, and ``received_at`` as text.
FRAME_FIELDS: Final = ("id", "received_at", "received_at_ns", "account_id", "session_id",
                       "sequence", "replayed", "msg_type", "raw_kind", "raw")  # fmt: skip
#: The fields of a ``connection_log`` row's line (JSON Lines only).
LOG_FIELDS: Final = ("id", "at", "at_ns", "account_id", "session_id", "event", "detail")
#: What is read of each table (the rest of a line is derived).
_FRAME_COLUMNS: Final = [name for name in FRAME_FIELDS if name != "received_at"]
_LOG_COLUMNS: Final = [name for name in LOG_FIELDS if name != "at"]
_STAGING_PREFIX: Final = ".tmp-dump-"

#: ``progress(days done, days in all, frames so far)``.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class Dumped:
    """What a dump wrote."""

    path: Path
    days: int
    frames: int
    log_rows: int


def frame_record(row: dict[str, Any]) -> dict[str, Any]:
    """A frame's line: the store's columns (``raw`` untouched) and its receipt as ISO 8601
    UTC with all nine digits."""
    at = iso_ns(row["received_at_ns"])
    return {name: at if name == "received_at" else row[name] for name in FRAME_FIELDS}


def log_record(row: dict[str, Any]) -> dict[str, Any]:
    """A ``connection_log`` row's line."""
    at = iso_ns(row["at_ns"])
    return {name: at if name == "at" else row[name] for name in LOG_FIELDS}


def dump(
    source: DataSource,
    days: Sequence[dt.date],
    out: Path,
    *,
    fmt: str,
    accounts: Sequence[str] = (),
    progress: Progress | None = None,
) -> Dumped:
    """Write the frames (and, as JSON Lines, the sessions' log rows) of ``days`` of
    ``source`` to ``out`` atomically. QueryError when a day cannot be read or ``out``
    cannot be written (then nothing of ``out`` changed)."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
    out = Path(os.path.abspath(out))
    try:
        make_private_dirs(out.parent)
        handle, staged_name = tempfile.mkstemp(prefix=_STAGING_PREFIX, dir=out.parent)
    except OSError as exc:
        raise QueryError(f"cannot write to {out}: {describe(exc, out)}") from None
    staged = Path(staged_name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            counts = _write(source, days, accounts, fmt, stream, progress)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(staged, out)
        fsync_path(out.parent)
    except OSError as exc:
        raise QueryError(f"cannot write the dump to {out}: {describe(exc, out)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
    return Dumped(out, len(days), *counts)


def _write(
    source: DataSource,
    days: Sequence[dt.date],
    accounts: Sequence[str],
    fmt: str,
    stream: IO[str],
    progress: Progress | None,
) -> tuple[int, int]:
    frames = log_rows = 0
    seen_log: set[int] = set()
    table = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
    if table is not None:
        table.writerow(FRAME_FIELDS)
    with _Rows(source, days, accounts) as stored:
        for done, day in enumerate(days, start=1):
            with _day_rows(source, stored, day, accounts) as rows:
                counts = _write_day(rows, day, table, stream, seen_log, (frames, log_rows))
            frames, log_rows = counts
            if progress is not None:
                progress(done, len(days), frames)
    return frames, log_rows


@contextlib.contextmanager
def _day_rows(
    source: DataSource, stored: _Rows, day: dt.date, accounts: Sequence[str]
) -> Iterator[_Rows]:
    """``stored`` — or, for a day a store no longer holds, the archive's copy of it."""
    copy = source.archived(day) if source.url is not None else None
    if copy is None:
        yield stored
        return
    directory, done = copy
    try:
        with _Rows(DataSource(export_dir=str(directory)), [day], accounts) as rows:
            yield rows
    finally:
        done()


def _write_day(
    rows: _Rows,
    day: dt.date,
    table: Any,
    stream: IO[str],
    seen_log: set[int],
    counts: tuple[int, int],
) -> tuple[int, int]:
    """Write one day's frames (and log rows, as JSON Lines); the running counts."""
    frames, log_rows = counts
    for row in rows.frames(day):
        record = frame_record(row)
        if table is not None:
            table.writerow(_cell(record[name]) for name in FRAME_FIELDS)
        else:
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        frames += 1
    if table is None:
        for row in rows.log(day):
            if row["id"] not in seen_log:
                seen_log.add(row["id"])
                stream.write(json.dumps(log_record(row), ensure_ascii=False) + "\n")
                log_rows += 1
    return frames, log_rows


class _Rows:
    """The rows of a day of a store or an export, streamed in id order (bounded memory:
    an export's per-account files are merged on ``id`` as they are read)."""

    def __init__(self, source: DataSource, days: Sequence[dt.date], accounts: Sequence[str]):
        self.accounts = list(accounts) or None
        self.reader: StoreReader | None = None
        self.export: ExportDir | None = None
        if source.export_dir is not None:
            self.export = ExportDir(source.export_dir)
            held = set(self.export.days())
            self.days = [day for day in days if day in held]
            if not self.days:
                raise QueryError(f"the export {self.export.root} holds none of these days")
            self.export.check_accounts(accounts, self.days)
            self.tz = zone(self.export.timezone(self.days) or source.timezone)
        else:
            assert source.url is not None
            self.reader = StoreReader(source.url)
            try:
                check_accounts(self.reader, accounts, source.configured)
            except BaseException:
                self.reader.close()
                raise
            self.days = list(days)
            self.tz = zone(source.timezone)

    def __enter__(self) -> _Rows:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.reader is not None:
            self.reader.close()

    def frames(self, day: dt.date) -> Iterator[dict[str, Any]]:
        if self.reader is not None:
            batches = self.reader.events(day=day, accounts=self.accounts, columns=_FRAME_COLUMNS)
            return _unbatched(batches)
        return self._merged("events", day, _FRAME_COLUMNS)

    def log(self, day: dt.date) -> Iterator[dict[str, Any]]:
        if self.reader is not None:
            start, end = day_bounds_ns(day, self.tz)
            batches = self.reader.session_log(start_ns=start, end_ns=end, accounts=self.accounts)
            return ({name: row[name] for name in _LOG_COLUMNS} for row in _unbatched(batches))
        return self._merged("connection_log", day, _LOG_COLUMNS)

    def _merged(self, table: str, day: dt.date, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
        assert self.export is not None
        if day not in self.days:
            return iter(())
        export = self.export
        files = [
            _unbatched(export.read(day, entry, columns))
            for entry in export.files(table, [day], self.accounts)
        ]
        return heapq.merge(*files, key=lambda row: int(row["id"]))


def _unbatched(batches: Iterable[pa.RecordBatch]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        yield from batch.to_pylist()


def _cell(value: object) -> object:
    """A CSV cell: booleans as ``true``/``false``, null as empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value
