"""Where an exported trading day lives, and what its Parquet files hold.

An export directory ``DIR`` holds, per table, one Parquet file per trading day and
account, plus one manifest per day (format version 2, :data:`CURRENT`)::

    DIR/events/trading_day=YYYY-MM-DD/ACCOUNT.parquet
    DIR/connection_log/trading_day=YYYY-MM-DD/ACCOUNT.parquet
    DIR/manifest/trading_day=YYYY-MM-DD.json

The files are self-describing, so that DuckDB, pyarrow, pandas, Polars and Spark read
them with default settings and no schema: ``trading_day`` lives in the directory name
only (the one partition column, a date every engine infers), every other store column
lives inside the files with the store's name and type (``account_id`` a string,
``received_at_ns`` an exact int64), and beside each epoch integer a microsecond UTC
timestamp (:data:`DERIVED_TIMESTAMPS`), the one timestamp type every engine reads.
``ACCOUNT`` is the account id percent-encoded (:func:`encode_account`) with a leading
``.`` or ``_`` encoded too (readers skip files so named); the file name is for
people and for :func:`file_path`, never read as data.

Format version 1 (``trading_day=…/account_id=ID/part-0.parquet``, the account in the
path only, timestamps instead of the epoch integers) is still read: :data:`LAYOUTS`
describes each version for the readers (:mod:`queries.exportdir`) and the verifier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from recorder.instants import INT64_MAX
from recorder.percent import percent_encode

from .contract import SCHEMAS

TABLES: Final = tuple(SCHEMAS)
MANIFEST_DIR: Final = "manifest"
FILE_SUFFIX: Final = ".parquet"

#: The partition column that lives in the directory names (and only there).
PARTITION_SCHEMA: Final = pa.schema([("trading_day", pa.date32())])

#: Store columns holding epoch integers that the files also hold as timestamps:
#: store name → (name of the timestamp column in the file, unit of the store's integer).
#: The timestamp is :data:`DERIVED_TYPE`: finer units are truncated toward the past.
DERIVED_TIMESTAMPS: Final = {
    "received_at_ns": ("received_at", "ns"),
    "server_ts_ms": ("server_ts", "ms"),
    "at_ns": ("logged_at", "ns"),  # not ``at``: a reserved word in DuckDB
}
#: The type of every derived timestamp column: microseconds, UTC (Parquet
#: ``TIMESTAMP(MICROS, true)``), what every engine reads (Spark refuses nanoseconds).
DERIVED_TYPE: Final = pa.timestamp("us", tz="UTC")
_US_PER_UNIT: Final = {"ms": 1_000}
_UNIT_PER_US: Final = {"ns": 1_000}


def file_schema(store_schema: pa.Schema) -> pa.Schema:
    """Columns inside a table's files: the store's, in its order, less the partition
    column (it lives in the path), then a timestamp per :data:`DERIVED_TIMESTAMPS` entry."""
    kept = [f for f in store_schema if f.name not in PARTITION_SCHEMA.names]
    derived = [
        pa.field(DERIVED_TIMESTAMPS[f.name][0], DERIVED_TYPE)
        for f in store_schema
        if f.name in DERIVED_TIMESTAMPS
    ]
    return pa.schema(kept + derived)


#: Columns inside each table's files, in this order (all nullable, as readers infer them).
FILE_SCHEMAS: Final = {table: file_schema(schema) for table, schema in SCHEMAS.items()}
EVENTS_FILE_SCHEMA: Final = FILE_SCHEMAS["events"]
CONNECTION_LOG_FILE_SCHEMA: Final = FILE_SCHEMAS["connection_log"]


def file_columns(table: str) -> list[str]:
    """The store columns of ``table`` that its files hold (all but the partition column)."""
    return [name for name in SCHEMAS[table].names if name not in PARTITION_SCHEMA.names]


def derived_timestamp(epoch: pa.Array, unit: str) -> pa.Array:
    """Epoch integers in ``unit`` ("ns" or "ms") as :data:`DERIVED_TYPE`; nanoseconds are
    truncated toward the past (floor division, also before 1970), milliseconds are exact.

    A millisecond value whose microseconds overflow 64 bits (a server timestamp more than
    292,000 years away: the store keeps any 64-bit integer it is sent) gives null, not an
    error: the exact integer stays beside it.
    """
    if unit in _US_PER_UNIT:
        factor = _US_PER_UNIT[unit]
        limit = INT64_MAX // factor
        fits = pc.and_(pc.greater_equal(epoch, -limit), pc.less_equal(epoch, limit))
        micros = pc.multiply(pc.if_else(fits, epoch, None), factor)
    else:
        divisor = _UNIT_PER_US[unit]
        toward_zero = pc.divide(epoch, divisor)
        below = pc.less(epoch, pc.multiply(toward_zero, divisor))  # negative, with a remainder
        micros = pc.if_else(below, pc.subtract(toward_zero, 1), toward_zero)
    return micros.view(DERIVED_TYPE)


def to_file_batch(batch: pa.RecordBatch, table: str) -> pa.RecordBatch:
    """Store-shaped rows of ``table`` (the partition column may be absent) → its file schema."""
    sources = {name: (store, unit) for store, (name, unit) in DERIVED_TIMESTAMPS.items()}
    arrays = []
    for target in FILE_SCHEMAS[table]:
        if target.name in sources:
            store, unit = sources[target.name]
            arrays.append(derived_timestamp(batch.column(store), unit))
        else:
            arrays.append(batch.column(target.name))
    return pa.RecordBatch.from_arrays(arrays, schema=FILE_SCHEMAS[table])


def encode_account(account_id: str) -> str:
    """``account_id`` as one safe path segment: percent-encoded UTF-8 outside ``[A-Za-z0-9._-]``.

    ``"0042"`` stays ``"0042"``, ``"a/b"`` becomes ``"a%2Fb"``, ``".."`` becomes
    ``"%2E%2E"`` (the encoding is :func:`recorder.percent.percent_encode`, also used in
    signed checkpoints; ``.`` and ``..`` are special to paths only). Raises ValueError
    for an empty id (it would name no file).
    """
    if not account_id:
        raise ValueError("an empty account id has no file name")
    if account_id in (".", ".."):
        return "%2E" * len(account_id)
    return percent_encode(account_id)


def account_file(account_id: str) -> str:
    """The file name of an account's day: ``encode_account(account_id) + ".parquet"``, with a
    leading ``.`` or ``_`` percent-encoded too (``_x`` → ``%5Fx.parquet``): Hive readers
    (pyarrow, pandas, Spark) skip files so named, DuckDB and Polars do not."""
    stem = encode_account(account_id)
    if stem[0] in "._":
        stem = f"%{ord(stem[0]):02X}{stem[1:]}"
    return stem + FILE_SUFFIX


def day_dir(table: str, day: dt.date) -> str:
    """``TABLE/trading_day=YYYY-MM-DD``: the directory holding one table's day (relative)."""
    return f"{table}/trading_day={day.isoformat()}"


def file_path(table: str, day: dt.date, account_id: str) -> str:
    """``TABLE/trading_day=…/ACCOUNT.parquet``: where an account's day of ``table`` is written,
    relative to the export directory (``/`` separated)."""
    return f"{day_dir(table, day)}/{account_file(account_id)}"


def _v1_file_path(table: str, day: dt.date, account_id: str) -> str:
    """Format version 1: ``TABLE/trading_day=…/account_id=ACCOUNT/part-0.parquet``."""
    return f"{day_dir(table, day)}/account_id={encode_account(account_id)}/part-0.parquet"


def manifest_path(day: dt.date) -> str:
    """``manifest/trading_day=YYYY-MM-DD.json``, relative to the export directory."""
    return f"{MANIFEST_DIR}/trading_day={day.isoformat()}.json"


@dataclass(frozen=True, slots=True)
class Layout:
    """One format version: where its files lie and which file column holds each store column."""

    version: int
    #: The columns that live in the directory names (Hive ``name=value``), with their types.
    partition_schema: pa.Schema
    #: ``file_path(table, day, account_id)``: a file's path relative to the export directory.
    file_path: Callable[[str, dt.date, str], str]
    #: Store column → the file column holding it, where the names differ.
    renamed: Mapping[str, str] = field(default_factory=dict)

    def source(self, name: str) -> str:
        """The column of a file (or partition) that holds store column ``name``."""
        return self.renamed.get(name, name)

    def partitioning(self) -> ds.Partitioning:
        """The directory names' columns, typed (account ids, in version 1, as strings)."""
        return ds.partitioning(self.partition_schema, flavor="hive")


#: Format version 1: the account in the path only; ``received_at``, ``server_ts`` and ``at``
#: timestamps (ns, ms, ns) in place of the store's epoch integers.
V1: Final = Layout(
    version=1,
    partition_schema=pa.schema([("trading_day", pa.date32()), ("account_id", pa.string())]),
    file_path=_v1_file_path,
    renamed={"received_at_ns": "received_at", "server_ts_ms": "server_ts", "at_ns": "at"},
)
#: Format version 2: self-describing files (see the module).
V2: Final = Layout(version=2, partition_schema=PARTITION_SCHEMA, file_path=file_path)
#: The version exports are written in.
CURRENT: Final = V2
#: Every version the readers understand, by number.
LAYOUTS: Final = {layout.version: layout for layout in (V1, V2)}


def open_dataset(out: str | Path, table: str = "events") -> ds.Dataset:
    """An exported table (format version 2) as a pyarrow dataset, ``trading_day`` a date.

    Hidden entries (names starting with ``.`` or ``_``, e.g. an interrupted
    export's temporary directory) are ignored, as by every Hive reader.
    """
    if table not in TABLES:
        raise ValueError(f"unknown exported table {table!r}: one of {', '.join(TABLES)}")
    return ds.dataset(Path(out) / table, format="parquet", partitioning=CURRENT.partitioning())
