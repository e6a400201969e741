"""Ad-hoc DuckDB SQL over a workspace's views (``studio-query sql``).

The query runs in the workspace's in-memory DuckDB, over the views of
:data:`queries.duck.VIEWS` (``events``, ``activity``, ``orders``, ``fills``,
``positions``, ``connection_log``); the store or export is never written to, and
before the user's SQL runs DuckDB's access to files and the network is switched
off and locked, so a query cannot read or write anything outside the workspace.
Results come back as Arrow and render as a table, JSON (decimals as exact strings,
timestamps as ISO-8601 text) or CSV. A SQL error is a :class:`QueryError` carrying
DuckDB's message.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from recorder.errors import first_line

from .duck import Workspace
from .errors import QueryError, UsageError
from .render import decimal_text, table


def run_sql(ws: Workspace, sql: str) -> pa.Table:
    """Run ``sql`` (one or more statements; the last one's rows are returned)."""
    if not sql.strip():
        raise UsageError('empty SQL: give a query such as "SELECT count(*) FROM events"')
    con = ws.con
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    try:
        result: Any = con.sql(sql)
        if result is None:  # a statement without rows (CREATE, SET, ...)
            return pa.table({})
        return result.to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"SQL error: {first_line(exc)}") from None


def _plain(column: pa.ChunkedArray) -> list[Any]:
    """Python values for output: decimals and temporals as text, the rest as is."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        # Naive timestamps of the views are UTC by construction; others are converted.
        utc = pc.cast(column, pa.timestamp(kind.unit, tz="UTC")) if kind.tz else column
        return [
            None if v is None else v.replace(" ", "T").rstrip("Z") + "Z"
            for v in pc.cast(utc, pa.string()).to_pylist()
        ]
    if pa.types.is_decimal(kind):
        return [None if v is None else decimal_text(v) for v in column.to_pylist()]
    if pa.types.is_temporal(kind):
        return list(pc.cast(column, pa.string()).to_pylist())
    if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return [None if v is None else _jsonable(v) for v in column.to_pylist()]
    return list(column.to_pylist())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _columns(result: pa.Table) -> tuple[list[str], list[list[Any]]]:
    names = result.column_names
    columns = [_plain(result.column(i)) for i in range(result.num_columns)]
    return names, [list(row) for row in zip(*columns, strict=True)]


def render_table(result: pa.Table) -> str:
    names, rows = _columns(result)
    return table(names, rows) + f"\n({len(rows)} row{'s' if len(rows) != 1 else ''})"


def render_json(result: pa.Table) -> str:
    names, rows = _columns(result)
    return json.dumps([dict(zip(names, row, strict=True)) for row in rows], ensure_ascii=False,
                      indent=2, default=str)  # fmt: skip


def render_csv(result: pa.Table) -> str:
    names, rows = _columns(result)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return out.getvalue()
