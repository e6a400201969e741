"""The SQL views analytics and ``studio-query sql`` query, over ``_events`` and ``_log``.

``events`` and ``connection_log`` are the store's tables with readable timestamps;
``activity`` is every sequenced frame once (the first copy received: lowest ``id`` per
account, trading day and sequence) with its ``payload.data`` fields parsed by DuckDB's
built-in JSON functions; ``orders`` (last version of each order), ``fills`` (one per
``trade_id``) and ``positions`` (last position-update per symbol) build on it.

Quantities and prices are ``DECIMAL(38,9)`` cast from their decimal strings (a value
that is not a decimal becomes null). ``average_price``/``average_cost`` are JSON
numbers, which DuckDB's JSON reader rounds through a double: their own text is taken
from the frame instead (and checked to be the number the JSON parser saw). Frames
stored as base64 (``raw_kind`` ``binary``/``text-base64``) are decoded first; a frame
that is not valid JSON has null payload columns.
"""

from __future__ import annotations

from typing import Final

import duckdb

#: The views every workspace with payload defines, for ``studio-query sql``.
VIEWS: Final = ("events", "activity", "orders", "fills", "positions", "connection_log")

_DEC: Final = "DECIMAL(38,9)"
# payload.data fields parsed into ``activity`` (name, path, SQL type or None for text).
_FIELDS: Final = (
    ("order_id", None),
    ("trade_id", None),
    ("symbol", None),
    ("side", None),
    ("quantity", _DEC),
    ("price", _DEC),
    ("filled_quantity", _DEC),
    ("running_position", _DEC),
    ("status", None),
    ("state", None),
    ("version", "BIGINT"),
    ("order_type", None),
    ("time_in_force", None),
    ("reference_id", None),
    ("order_update_reason", None),
    ("stop_price", _DEC),
    ("average_price", "exact"),
    ("average_cost", "exact"),
    ("created_at", "BIGINT"),
    ("updated_at", "BIGINT"),
    ("account_id", None),
    ("account_number", None),
    ("text", None),
)
_RENAMED: Final = {
    "created_at": "created_at_ms",
    "updated_at": "updated_at_ms",
    "account_id": "data_account_id",
}
_NUMBER_RE: Final = r"\s*:\s*(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"


def _activity_sql() -> str:
    paths = ", ".join(f"'$.payload.data.{name}'" for name, _ in _FIELDS)
    columns = []
    for index, (name, kind) in enumerate(_FIELDS, start=1):
        value = f"f[{index}]"
        if kind == "exact":
            # The number's own text when it is the same number DuckDB parsed; else DuckDB's.
            text = f"regexp_extract(frame_text, '\"{name}\"{_NUMBER_RE}', 1)"
            value = (
                f"CASE WHEN {value} IS NULL THEN NULL "
                f"WHEN try_cast({text} AS DOUBLE) = try_cast({value} AS DOUBLE) "
                f"THEN try_cast({text} AS {_DEC}) ELSE try_cast({value} AS {_DEC}) END"
            )
        elif kind is not None:
            value = f"try_cast({value} AS {kind})"
        columns.append(f"{value} AS {_RENAMED.get(name, name)}")
    return f"""
    SELECT id, account_id, session_id, received_at_ns, make_timestamp_ns(received_at_ns)
           AS received_at, server_ts_ms, sequence, msg_type, trading_day, replayed,
           {", ".join(columns)},
           CASE f[4] WHEN 'buy' THEN 1 WHEN 'sell' THEN -1 WHEN 'sell-short' THEN -1 END
           AS side_sign,
           raw_kind
    FROM (
        SELECT *, try(json_extract_string(frame_text, [{paths}])) AS f
        FROM (
            SELECT *, CASE raw_kind WHEN 'text' THEN raw
                      ELSE try(decode(from_base64(raw))) END AS frame_text
            FROM _events
            WHERE id IN (SELECT min(id) FROM _events WHERE sequence IS NOT NULL
                         GROUP BY account_id, trading_day, sequence)
        )
    )"""


_VIEW_SQL: Final = {
    "events": """
    SELECT id, account_id, session_id, received_at_ns, make_timestamp_ns(received_at_ns)
           AS received_at, server_ts_ms, epoch_ms(server_ts_ms) AS server_ts, sequence,
           msg_type, trading_day, replayed, raw_kind, raw, chain_hash
    FROM _events""",
    "orders": """
    SELECT a.account_id, a.trading_day, a.order_id, a.symbol, a.side, a.order_type,
           a.time_in_force, a.status, a.state, a.version, a.quantity, a.price, a.stop_price,
           a.filled_quantity, a.average_price, a.running_position, a.reference_id,
           a.order_update_reason, a.text, a.created_at_ms, a.updated_at_ms,
           a.sequence AS last_sequence, last.updates
    FROM activity AS a JOIN (
        -- The last version of each order (highest version, then highest sequence).
        SELECT max_by(id, struct_pack(v := coalesce(version, -1), s := sequence)) AS id,
               count(*) AS updates
        FROM activity WHERE msg_type = 'order-update' AND order_id IS NOT NULL
        GROUP BY account_id, trading_day, order_id
    ) AS last ON last.id = a.id""",
    "fills": """
    SELECT f.account_id, f.trading_day, f.sequence, f.id, f.received_at_ns, f.received_at,
           f.trade_id, f.order_id, coalesce(f.symbol, o.symbol) AS symbol, f.side,
           f.side_sign, f.quantity, f.price, f.quantity * f.price AS notional,
           f.side_sign * f.quantity AS signed_quantity, f.running_position, f.created_at_ms,
           o.order_id IS NULL AS unknown_order
    FROM activity AS f
    LEFT JOIN orders AS o
      ON o.account_id = f.account_id AND o.trading_day = f.trading_day
     AND o.order_id = f.order_id
    WHERE f.id IN (
        -- One row per trade_id (the first by sequence): replays re-deliver fills.
        SELECT min_by(id, sequence) FROM activity WHERE msg_type = 'trade-notice'
        GROUP BY account_id, trading_day, coalesce(trade_id, '#' || sequence))""",
    "positions": """
    SELECT account_id, trading_day, symbol, quantity, average_cost, sequence, id,
           received_at_ns, received_at
    FROM activity
    WHERE id IN (
        SELECT max_by(id, sequence) FROM activity
        WHERE msg_type = 'position-update' AND symbol IS NOT NULL
        GROUP BY account_id, trading_day, symbol)""",
    "connection_log": """
    SELECT id, session_id, account_id, at_ns, make_timestamp_ns(at_ns) AS at, event, detail,
           chain_hash
    FROM _log""",
}


#: Frames whose raw text is kept even in a light workspace (table ``_notices``).
NOTICE_TYPES: Final = ("error-notice",)
NOTICE_COLUMNS: Final = ("id", "account_id", "received_at_ns", "msg_type", "raw_kind", "raw")


def define_views(con: duckdb.DuckDBPyConnection, payload: bool) -> None:
    con.execute(f"CREATE VIEW connection_log AS {_VIEW_SQL['connection_log']}")
    if not payload:
        return
    types = ", ".join(f"'{t}'" for t in NOTICE_TYPES)
    con.execute(
        f"CREATE VIEW _notices AS SELECT {', '.join(NOTICE_COLUMNS)} FROM _events "
        f"WHERE msg_type IN ({types})"
    )
    con.execute(f"CREATE VIEW events AS {_VIEW_SQL['events']}")
    con.execute(f"CREATE VIEW activity AS {_activity_sql()}")
    for name in ("orders", "fills", "positions"):
        con.execute(f"CREATE VIEW {name} AS {_VIEW_SQL[name]}")
