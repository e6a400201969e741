"""The store contract: what is derived from ``recorder.schema`` and what must be pinned to it.

Most restatements of the tables are derived (``CHAIN_FIELDS`` from ``FrameRecord``, the
Arrow schemas from the SQLAlchemy tables, the export files' schemas from those, the
CHECK lists from their constants). What cannot be derived is held to the schema here,
so a column added to ``recorder/schema.py`` that any part of the code does not know
about fails this file.
"""

from __future__ import annotations

import dataclasses
import sqlite3

import duckdb
import pyarrow as pa
import pytest

from queries import views
from queries.audit import COLUMNS as AUDIT_COLUMNS
from queries.contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA, LIGHT_COLUMNS, arrow_schema
from queries.gaps import COLUMNS as GAPS_COLUMNS
from queries.layout import FILE_SCHEMAS, PARTITION_SCHEMA, TIMESTAMP_COLUMNS, to_file_batch
from queries.source import _SENTINEL
from recorder import migrate
from recorder.chain import CHAIN_FIELDS, LOG_CHAIN_FIELDS
from recorder.records import FrameRecord, LogRecord
from recorder.schema import CONNECTION_EVENTS, RAW_KINDS, connection_log, events, metadata
from recorder.store import open_engine

EVENT_COLUMNS = tuple(c.name for c in events.columns)
LOG_COLUMNS = tuple(c.name for c in connection_log.columns)


def test_records_are_the_tables_columns_in_order() -> None:
    assert ("id", *FrameRecord._fields, "chain_hash") == EVENT_COLUMNS
    assert FrameRecord._fields == CHAIN_FIELDS
    fields = tuple(f.name for f in dataclasses.fields(LogRecord))
    assert (*fields, "chain_hash") == LOG_COLUMNS[1:]
    assert fields == LOG_CHAIN_FIELDS


def test_arrow_schemas_are_the_tables() -> None:
    assert tuple(EVENTS_SCHEMA.names) == EVENT_COLUMNS
    assert tuple(CONNECTION_LOG_SCHEMA.names) == LOG_COLUMNS
    assert EVENTS_SCHEMA.field("trading_day").type == pa.date32()
    assert EVENTS_SCHEMA.field("replayed").type == pa.bool_()
    assert EVENTS_SCHEMA.field("id").type == pa.int64()  # BIGINT, INTEGER on SQLite
    for schema in (EVENTS_SCHEMA, CONNECTION_LOG_SCHEMA):
        for field in schema:  # the SQLite reader needs a typed sentinel for every type
            assert field.type in _SENTINEL, field


def test_a_column_of_an_unmapped_type_fails_loudly() -> None:
    from sqlalchemy import Column, Float, MetaData, Table

    odd = Table("odd", MetaData(), Column("x", Float))
    with pytest.raises(TypeError, match="no Arrow type"):
        arrow_schema(odd)


def test_export_files_hold_every_column_but_the_partitions() -> None:
    for table, store in (("events", EVENTS_SCHEMA), ("connection_log", CONNECTION_LOG_SCHEMA)):
        kept = [n for n in store.names if n not in PARTITION_SCHEMA.names]
        renamed = [TIMESTAMP_COLUMNS.get(n, (n,))[0] for n in kept]
        assert FILE_SCHEMAS[table].names == renamed
    for name in TIMESTAMP_COLUMNS:  # every renamed column exists
        assert name in EVENTS_SCHEMA.names or name in CONNECTION_LOG_SCHEMA.names


def test_file_batches_keep_every_value() -> None:
    row = {name: None for name in EVENTS_SCHEMA.names}
    row.update(id=7, account_id="0042", session_id="s", received_at_ns=1, server_ts_ms=2,
               sequence=3, msg_type="heartbeat", replayed=True, raw_kind="text", raw="{}",
               chain_hash="h")  # fmt: skip
    batch = pa.RecordBatch.from_pylist([row], schema=EVENTS_SCHEMA)
    written = to_file_batch(batch, "events")
    for name in EVENTS_SCHEMA.names:
        if name in PARTITION_SCHEMA.names:
            continue
        column = written.column(TIMESTAMP_COLUMNS.get(name, (name,))[0])
        if name in TIMESTAMP_COLUMNS:
            column = column.view(pa.int64())
        assert column.to_pylist() == [row[name]], name


def test_column_subsets_name_only_stored_columns() -> None:
    for subset in (LIGHT_COLUMNS, AUDIT_COLUMNS, GAPS_COLUMNS, views.NOTICE_COLUMNS):
        assert set(subset) <= set(EVENT_COLUMNS), subset
    assert set(EVENT_COLUMNS) - set(LIGHT_COLUMNS) == {"raw_kind", "raw", "chain_hash"}


def test_sql_views_show_every_stored_column() -> None:
    con = duckdb.connect()
    con.register("_events", pa.table({n: [] for n in EVENTS_SCHEMA.names}, EVENTS_SCHEMA))
    con.register("_log", pa.table({n: [] for n in LOG_COLUMNS}, CONNECTION_LOG_SCHEMA))
    views.define_views(con, payload=True)
    for view, stored in (("events", EVENT_COLUMNS), ("connection_log", LOG_COLUMNS)):
        shown = {row[0] for row in con.execute(f"DESCRIBE {view}").fetchall()}
        assert set(stored) <= shown, (view, set(stored) - shown)


def test_the_migrated_store_has_the_models_checks(tmp_path: object) -> None:
    """alembic's model comparison does not compare CHECK constraints: compare them here."""
    engine = open_engine(f"sqlite:///{tmp_path}/store.db")
    migrate.upgrade(engine)
    engine.dispose()
    con = sqlite3.connect(f"{tmp_path}/store.db")
    sql = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    con.close()
    for table in metadata.sorted_tables:
        for check in (c for c in table.constraints if hasattr(c, "sqltext")):
            assert str(check.sqltext) in sql[table.name], (table.name, str(check.sqltext))
    assert all(f"'{event}'" in sql["connection_log"] for event in CONNECTION_EVENTS)
    assert all(f"'{kind}'" in sql["events"] for kind in RAW_KINDS)
