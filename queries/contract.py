"""The store's tables as Arrow: the one place ``queries`` learns what the store holds.

Every Arrow schema here is derived from the SQLAlchemy tables of :mod:`recorder.schema`
through a small type map, so a column added there reaches the store reader, the export,
the export reader and the analytics without being written out again; a column of a type
the map does not know fails at import, loudly. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import BigInteger, Boolean, Date, Integer, Table, Text
from sqlalchemy.types import TypeEngine

from recorder.schema import checkpoints, connection_log, events, prunes, store_meta

#: SQLAlchemy column type → Arrow type, most specific first (BigInteger is an Integer).
ARROW_TYPES: Final[tuple[tuple[type[TypeEngine[Any]], pa.DataType], ...]] = (
    (Boolean, pa.bool_()),
    (Date, pa.date32()),
    (BigInteger, pa.int64()),
    (Integer, pa.int64()),
    (Text, pa.string()),
)


def arrow_type(sql_type: TypeEngine[Any]) -> pa.DataType:
    """The Arrow type a store column of ``sql_type`` is read as; TypeError if unmapped."""
    for sql_class, arrow in ARROW_TYPES:
        if isinstance(sql_type, sql_class):
            return arrow
    raise TypeError(f"no Arrow type for the store's column type {sql_type!r}: extend ARROW_TYPES")


def arrow_schema(table: Table) -> pa.Schema:
    """``table``'s columns, in order, as a (nullable) Arrow schema."""
    return pa.schema([(column.name, arrow_type(column.type)) for column in table.columns])


#: Arrow schema of ``events`` rows as read from the store.
EVENTS_SCHEMA: Final = arrow_schema(events)
#: Arrow schema of ``connection_log`` rows as read from the store.
CONNECTION_LOG_SCHEMA: Final = arrow_schema(connection_log)
#: The tables an export holds, by name.
SCHEMAS: Final = {"events": EVENTS_SCHEMA, "connection_log": CONNECTION_LOG_SCHEMA}
#: Every table of the store, by name (what the store reader can read).
STORE_SCHEMAS: Final = {
    **SCHEMAS,
    "checkpoints": arrow_schema(checkpoints),
    "store_meta": arrow_schema(store_meta),
    "prunes": arrow_schema(prunes),
}

#: ``events`` columns holding the frame itself and its hash: the bulk of a row. Analytics
#: that only count and time frames read every other column (:data:`LIGHT_COLUMNS`).
PAYLOAD_COLUMNS: Final = ("raw_kind", "raw", "chain_hash")
LIGHT_COLUMNS: Final = tuple(n for n in EVENTS_SCHEMA.names if n not in PAYLOAD_COLUMNS)


def project(schema: pa.Schema, names: list[str] | tuple[str, ...]) -> pa.Schema:
    """The fields ``names`` of ``schema``, in that order (KeyError for an unknown name)."""
    return pa.schema([schema.field(name) for name in names])


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Cast ``batch``'s columns to ``schema``'s types, column by column in order.

    Reading SQLite gives dates as text and booleans as 0/1; Parquet files give
    timestamps where the store has epoch integers: each is turned into the store's type.
    """
    arrays = []
    for field, column in zip(schema, batch.columns, strict=True):
        if column.type != field.type:
            if field.type == pa.date32() and pa.types.is_string(column.type):
                column = pc.cast(pc.strptime(column, "%Y-%m-%d", "s"), pa.date32())
            elif field.type == pa.bool_() and pa.types.is_integer(column.type):
                column = pc.not_equal(column, 0)
            else:
                column = column.cast(field.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
