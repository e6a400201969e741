"""Writing one Parquet file of an export: fixed settings, bounded row groups, mode 0600.

Everything that decides a file's bytes is fixed here: Parquet format
:data:`PARQUET_VERSION`, zstd at :data:`ZSTD_LEVEL`, dictionary encoding only for the
low-cardinality columns, statistics on, rows declared sorted by ``id``, row groups of
at most :data:`ROW_GROUP_ROWS` rows. Timestamps are written in the unit of the schema
(microseconds: ``TIMESTAMP(MICROS, true)``, which Spark reads; never nanoseconds).
pyarrow writes no timestamp into a file (its ``created_by`` names the library
version only), so the same rows handed over in the same batches give the same
bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import TracebackType
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from .manifest import FileEntry
from .publish import FILE_MODE, create_private_file, make_private_dirs

#: Most rows in one row group (also the most one file holds in memory before writing).
ROW_GROUP_ROWS: Final = 65_536
#: zstd level: 1 is the fastest; level 3 saved under 1 % of the size of typical days.
ZSTD_LEVEL: Final = 1
#: Parquet format version: pyarrow's default, pinned so that a new default cannot change
#: the bytes; timestamps keep the schema's unit (``coerce_timestamps=None``).
PARQUET_VERSION: Final = "2.6"
_DICTIONARY_COLUMNS: Final = frozenset(
    {"account_id", "session_id", "msg_type", "raw_kind", "event", "detail"}
)


class PartFile:
    """One Parquet file, written in row groups of at most :data:`ROW_GROUP_ROWS` rows.

    ``relative`` is the file's path relative to ``root`` (and later to the
    export directory). Use as a context manager; after it closed, :meth:`entry`
    gives the manifest entry (rows, bytes and SHA-256 of what is on disk). On an
    exception the file is closed as it is: the staging directory holding it is
    discarded by the caller.
    """

    def __init__(self, root: Path, relative: str, schema: pa.Schema) -> None:
        self.relative = relative
        self.path = root / relative
        self.schema = schema
        self.rows = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.pending_bytes = 0
        make_private_dirs(self.path.parent)
        create_private_file(self.path)  # pyarrow then truncates it, keeping mode 0600
        self._writer = pq.ParquetWriter(
            str(self.path),
            schema,
            version=PARQUET_VERSION,
            coerce_timestamps=None,
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            use_dictionary=[n for n in schema.names if n in _DICTIONARY_COLUMNS],
            write_statistics=True,
            sorting_columns=[pq.SortingColumn(0)],  # rows are in id order
        )

    def __enter__(self) -> PartFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(flush=exc_type is None)

    def close(self, *, flush: bool = True) -> None:
        if flush:
            self.flush()
        self._writer.close()

    def write(self, batch: pa.RecordBatch) -> None:
        """Queue ``batch``; every full row group is written as soon as it is complete."""
        if not batch.num_rows:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._write_groups(final=False)

    def flush(self) -> None:
        """Write everything queued as row groups (the last one may be short)."""
        self._write_groups(final=True)

    def _write_groups(self, *, final: bool) -> None:
        if not self._pending_rows:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        offset = 0
        while table.num_rows - offset >= ROW_GROUP_ROWS or (final and offset < table.num_rows):
            group = table.slice(offset, ROW_GROUP_ROWS)
            self._writer.write_table(group, row_group_size=ROW_GROUP_ROWS)
            offset += group.num_rows
        rest = table.slice(offset)
        self._pending = [b for b in rest.to_batches() if b.num_rows]
        self._pending_rows = rest.num_rows
        self.pending_bytes = sum(b.nbytes for b in self._pending)

    def entry(self, table: str, account: str) -> FileEntry:
        """The closed file's manifest entry, hashing the bytes on disk."""
        self.path.chmod(FILE_MODE)
        digest = hashlib.sha256()
        size = 0
        with self.path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return FileEntry(self.relative, table, account, self.rows, size, digest.hexdigest())
