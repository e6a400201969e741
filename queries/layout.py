"""Where an exported trading day lives, and what its Parquet files hold.

An export directory ``DIR`` is a Hive-partitioned dataset per table plus one
manifest per day::

    DIR/events/trading_day=YYYY-MM-DD/account_id=ID/part-0.parquet
    DIR/connection_log/trading_day=YYYY-MM-DD/account_id=ID/part-0.parquet
    DIR/manifest/trading_day=YYYY-MM-DD.json

``trading_day`` and ``account_id`` live in the directory names only, never
inside the files. Account ids look numeric but are strings ("0042" is not
"42"), so readers must pass :data:`PARTITION_SCHEMA` instead of letting a
library infer integers. An account id is percent-encoded in its directory name
when it holds anything outside ``[A-Za-z0-9._-]`` (and ``.``/``..`` are
encoded whole), so no crafted id can name a path outside ``DIR``; pyarrow,
DuckDB and Spark decode the encoding when they read the partition value.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.dataset as ds

from recorder.percent import percent_encode

from .contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA, SCHEMAS

TABLES: Final = tuple(SCHEMAS)
FILE_NAME: Final = "part-0.parquet"
MANIFEST_DIR: Final = "manifest"

#: Schema of the partition columns that live in the directory names.
PARTITION_SCHEMA: Final = pa.schema([("trading_day", pa.date32()), ("account_id", pa.string())])

#: Store columns holding epoch integers that the files hold as UTC timestamps instead:
#: store name → (name in the file, unit). Every other column keeps its name and type.
TIMESTAMP_COLUMNS: Final = {
    "received_at_ns": ("received_at", "ns"),
    "server_ts_ms": ("server_ts", "ms"),
    "at_ns": ("at", "ns"),
}


def file_field(field: pa.Field) -> pa.Field:
    """The field a store column becomes inside an exported file."""
    if field.name in TIMESTAMP_COLUMNS:
        name, unit = TIMESTAMP_COLUMNS[field.name]
        return pa.field(name, pa.timestamp(unit, tz="UTC"))
    return field


def file_columns(table: str) -> list[str]:
    """The store columns of ``table`` that its files hold (all but the partition columns)."""
    return [name for name in SCHEMAS[table].names if name not in PARTITION_SCHEMA.names]


def file_schema(store_schema: pa.Schema) -> pa.Schema:
    """Columns inside a table's files: the store's, in its order, less the partition
    columns (they live in the path), timestamps as :data:`TIMESTAMP_COLUMNS` says."""
    return pa.schema([file_field(f) for f in store_schema if f.name not in PARTITION_SCHEMA.names])


#: Columns inside ``events`` files, in this order (all nullable, as readers infer them).
EVENTS_FILE_SCHEMA: Final = file_schema(EVENTS_SCHEMA)
#: Columns inside ``connection_log`` files, in this order.
CONNECTION_LOG_FILE_SCHEMA: Final = file_schema(CONNECTION_LOG_SCHEMA)

FILE_SCHEMAS: Final = {"events": EVENTS_FILE_SCHEMA, "connection_log": CONNECTION_LOG_FILE_SCHEMA}


def to_file_batch(batch: pa.RecordBatch, table: str) -> pa.RecordBatch:
    """Store-shaped rows of ``table`` → its file schema (epoch integers viewed as timestamps)."""
    store_names = {file_field(f).name: f.name for f in SCHEMAS[table]}
    target = FILE_SCHEMAS[table]
    arrays = []
    for field in target:
        column = batch.column(store_names[field.name])
        arrays.append(column.view(field.type) if column.type != field.type else column)
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def store_source(name: str) -> str:
    """The column of an exported file that holds store column ``name``."""
    return TIMESTAMP_COLUMNS[name][0] if name in TIMESTAMP_COLUMNS else name


def encode_account(account_id: str) -> str:
    """``account_id`` as one safe path segment: percent-encoded UTF-8 outside ``[A-Za-z0-9._-]``.

    ``"0042"`` stays ``"0042"``, ``"a/b"`` becomes ``"a%2Fb"``, ``".."`` becomes
    ``"%2E%2E"`` (the encoding is :func:`recorder.percent.percent_encode`, also used in
    signed checkpoints; ``.`` and ``..`` are special to paths only). Raises ValueError
    for an empty id (it would name no directory).
    """
    if not account_id:
        raise ValueError("an empty account id has no partition directory")
    if account_id in (".", ".."):
        return "%2E" * len(account_id)
    return percent_encode(account_id)


def day_dir(table: str, day: dt.date) -> str:
    """``TABLE/trading_day=YYYY-MM-DD``: the directory holding one table's day (relative)."""
    return f"{table}/trading_day={day.isoformat()}"


def partition_dir(table: str, day: dt.date, account_id: str) -> str:
    """``TABLE/trading_day=…/account_id=…``, relative to the export directory."""
    return f"{day_dir(table, day)}/account_id={encode_account(account_id)}"


def file_path(table: str, day: dt.date, account_id: str) -> str:
    """Path of a partition's Parquet file, relative to the export directory (``/`` separated)."""
    return f"{partition_dir(table, day, account_id)}/{FILE_NAME}"


def manifest_path(day: dt.date) -> str:
    """``manifest/trading_day=YYYY-MM-DD.json``, relative to the export directory."""
    return f"{MANIFEST_DIR}/trading_day={day.isoformat()}.json"


def partitioning() -> ds.Partitioning:
    """The Hive partitioning of an exported table, with account ids read as strings."""
    return ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def open_dataset(out: str | Path, table: str = "events") -> ds.Dataset:
    """An exported table as a pyarrow dataset, partition columns typed by :data:`PARTITION_SCHEMA`.

    Hidden entries (names starting with ``.`` or ``_``, e.g. an interrupted
    export's temporary directory) are ignored, as by every Hive reader.
    """
    if table not in TABLES:
        raise ValueError(f"unknown exported table {table!r}: one of {', '.join(TABLES)}")
    return ds.dataset(Path(out) / table, format="parquet", partitioning=partitioning())
