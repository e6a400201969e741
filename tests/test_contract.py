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
from hypothesis import example, given
from hypothesis import strategies as st

from queries import views
from queries.audit import COLUMNS as AUDIT_COLUMNS
from queries.contract import (
    CONNECTION_LOG_SCHEMA,
    EVENTS_SCHEMA,
    LIGHT_COLUMNS,
    SCHEMAS,
    arrow_schema,
)
from queries.gaps import COLUMNS as GAPS_COLUMNS
from queries.layout import (
    DERIVED_TIMESTAMPS,
    FILE_SCHEMAS,
    PARTITION_SCHEMA,
    derived_timestamp,
    to_file_batch,
)
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


def test_export_files_hold_the_stores_columns_then_microsecond_timestamps() -> None:
    """Format version 2: the store's columns with the store's names and types, less the
    partition column, then one UTC microsecond timestamp per epoch integer."""
    assert PARTITION_SCHEMA.names == ["trading_day"]
    for table, store in SCHEMAS.items():
        kept = [f for f in store if f.name not in PARTITION_SCHEMA.names]
        derived = [DERIVED_TIMESTAMPS[f.name][0] for f in store if f.name in DERIVED_TIMESTAMPS]
        schema = FILE_SCHEMAS[table]
        assert schema.names == [f.name for f in kept] + derived, table
        assert list(schema)[: len(kept)] == kept  # names and types exactly the store's
        assert {schema.field(n).type for n in derived} == {pa.timestamp("us", tz="UTC")}
    assert FILE_SCHEMAS["events"].field("account_id").type == pa.string()
    assert [DERIVED_TIMESTAMPS[n][0] for n in ("received_at_ns", "server_ts_ms", "at_ns")] == [
        "received_at", "server_ts", "logged_at"
    ]  # fmt: skip
    for store_name, (name, unit) in DERIVED_TIMESTAMPS.items():
        assert store_name.endswith(f"_{unit}")  # the unit the store's name says
        assert any(store_name in s.names and name not in s.names for s in SCHEMAS.values())


def test_every_file_column_can_be_named_bare_in_duckdb() -> None:
    reserved = {
        word
        for (word,) in duckdb.sql(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category != 'unreserved'"
        ).fetchall()
    }
    assert "at" in reserved  # why connection_log's timestamp is logged_at, not at
    for table, schema in FILE_SCHEMAS.items():
        assert not set(schema.names) & reserved, table


def test_file_batches_keep_every_value() -> None:
    row = {name: None for name in EVENTS_SCHEMA.names}
    row.update(id=7, account_id="0042", session_id="s", received_at_ns=1_718_035_200_123_456_789,
               server_ts_ms=1_718_035_200_123, sequence=3, msg_type="heartbeat", replayed=True,
               raw_kind="text", raw="{}", chain_hash="h")  # fmt: skip
    batch = pa.RecordBatch.from_pylist([row], schema=EVENTS_SCHEMA)
    written = to_file_batch(batch, "events")
    for name in EVENTS_SCHEMA.names:
        if name not in PARTITION_SCHEMA.names:
            assert written.column(name).to_pylist() == [row[name]], name
    micros = [written.column(n).view(pa.int64()).to_pylist() for n in ("received_at", "server_ts")]
    assert micros == [[1_718_035_200_123_456], [1_718_035_200_123_000]]


_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(st.lists(st.none() | _INT64, max_size=20))
@example([-1, -999, -1000, -1001, 0, 999, 1000, 1001, None])
def test_derived_nanoseconds_are_truncated_toward_the_past(values: list[int | None]) -> None:
    derived = derived_timestamp(pa.array(values, pa.int64()), "ns")
    assert derived.type == pa.timestamp("us", tz="UTC")
    floored = [None if v is None else v // 1000 for v in values]
    assert derived.view(pa.int64()).to_pylist() == floored


@given(st.lists(st.none() | _INT64, max_size=20))
@example([-(2**63), -(2**63) // 1000, 2**63 // 1000, 2**63 // 1000 + 1, 2**63 - 1, None])
def test_derived_milliseconds_are_exact_or_null_beyond_64_bits(values: list[int | None]) -> None:
    derived = derived_timestamp(pa.array(values, pa.int64()), "ms")
    exact = [None if v is None or abs(v * 1000) >= 2**63 else v * 1000 for v in values]
    assert derived.view(pa.int64()).to_pylist() == exact


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
