"""Build a large, correctly chained store fast (sqlite3 executemany, or PostgreSQL COPY).

The recorder's Appender goes through SQLAlchemy per batch, which is right for the
recorder and too slow to build a million-row benchmark store in seconds. This
builder writes the same rows the Appender would (same columns, same chain: every
hash comes from :func:`recorder.chain.next_hash`) straight into a store migrated
by alembic: a SQLite file in big executemany batches, or PostgreSQL with COPY.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from recorder import migrate
from recorder.chain import GENESIS_HASH, chain_log_rows, next_hash
from recorder.store import open_engine

DAY = dt.date(2024, 6, 10)
#: 09:30 New York on DAY, in UTC epoch milliseconds.
OPEN_MS = 1_718_026_200_000
INSERT_BATCH_ROWS = 50_000

_COLUMNS = (
    "account_id", "session_id", "received_at_ns", "server_ts_ms", "sequence", "msg_type",
    "trading_day", "replayed", "raw_kind", "raw", "chain_hash",
)  # fmt: skip


def frame_text(account: str, n: int, ts_ms: int) -> tuple[str, str | None, int | None]:
    """A realistic Activity frame (raw text, msg_type, sequence) for row ``n``."""
    kind = n % 10
    if kind == 9:
        return json.dumps({"timestamp": ts_ms, "payload": {"type": "heartbeat"}}), "heartbeat", None
    symbol = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA")[n % 5]
    if kind < 5:
        data: dict[str, Any] = {
            "created_at": ts_ms - 900, "updated_at": ts_ms - 3, "order_id": f"{12390213 + n}",
            "reference_id": f"ref-{n:08d}", "version": n % 7 + 1, "account_id": account,
            "account_number": "ACC0001", "state": "open", "status": "partially-filled",
            "symbol": symbol, "order_type": "limit", "side": "buy", "quantity": "100",
            "price": f"{150 + n % 97}.{n % 100:02d}", "time_in_force": "day",
            "average_price": 150.25, "filled_quantity": "40",
            "order_update_reason": "execution-report", "running_position": "40",
        }  # fmt: skip
        msg_type = "order-update"
    elif kind < 8:
        data = {
            "created_at": ts_ms - 20, "account_id": account, "account_number": "ACC0001",
            "trade_id": f"{88120017 + n}", "order_id": f"{12390213 + n}", "symbol": symbol,
            "side": "buy", "quantity": "40", "price": f"{150 + n % 97}.47",
            "running_position": "40",
        }  # fmt: skip
        msg_type = "trade-notice"
    else:
        data = {
            "account_id": account, "account_number": "ACC0001", "symbol": symbol,
            "quantity": f"{n % 1000}", "average_cost": 189.47,
        }  # fmt: skip
        msg_type = "position-update"
    envelope = {"timestamp": ts_ms, "sequence": n + 1, "payload": {"type": msg_type, "data": data}}
    return json.dumps(envelope, separators=(",", ":")), msg_type, n + 1


def _rows(rows: int, accounts: list[str]) -> Iterator[tuple[Any, ...]]:
    heads = dict.fromkeys(accounts, GENESIS_HASH)
    counters = dict.fromkeys(accounts, 0)
    for i in range(rows):
        account = accounts[i % len(accounts)]
        n = counters[account]
        counters[account] = n + 1
        ts_ms = OPEN_MS + i * 20  # 1 M rows span about 5.5 hours of the session
        raw, msg_type, sequence = frame_text(account, n, ts_ms)
        row = {
            "account_id": account,
            "session_id": f"session-{account}-1",
            "received_at_ns": ts_ms * 1_000_000 + 1_234_567,
            "server_ts_ms": ts_ms,
            "sequence": sequence,
            "msg_type": msg_type,
            "trading_day": DAY,
            "replayed": False,
            "raw_kind": "text",
            "raw": raw,
        }
        heads[account] = row["chain_hash"] = next_hash(heads[account], row)
        row["trading_day"] = DAY.isoformat()
        yield tuple(row[c] for c in _COLUMNS)


def build_store(url: str, rows: int, accounts: list[str]) -> str:
    """Fill the (new, empty) store at ``url`` with ``rows`` frames on :data:`DAY`; return ``url``.

    ``url`` is a SQLite URL (the file is created) or a PostgreSQL URL (tables are
    created in its ``search_path`` schema). Rows are spread round-robin over
    ``accounts``, each account with one session whose ``opened``/``subscribed``/
    ``closed`` rows are in ``connection_log``.
    """
    engine = open_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    end_ms = OPEN_MS + rows * 20
    log = []
    for account in accounts:
        session = f"session-{account}-1"
        log += [
            (session, account, (OPEN_MS - 5_000) * 1_000_000, "opened", None),
            (session, account, (OPEN_MS - 4_000) * 1_000_000, "subscribed", None),
            (session, account, (end_ms + 1_000) * 1_000_000, "closed", "1000 shutdown"),
        ]
    if engine.url.get_backend_name() == "sqlite":
        assert engine.url.database
        _fill_sqlite(Path(engine.url.database), _rows(rows, accounts), log)
    else:
        _fill_postgresql(url, _rows(rows, accounts), log)
    return url


def _fill_sqlite(path: Path, rows: Iterator[tuple[Any, ...]], log: list[tuple[Any, ...]]) -> None:
    marks = ", ".join("?" for _ in _COLUMNS)
    insert = f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({marks})"
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= INSERT_BATCH_ROWS:
                with conn:
                    conn.executemany(insert, batch)
                batch.clear()
        with conn:
            conn.executemany(insert, batch)
            conn.executemany(
                "INSERT INTO connection_log (session_id, account_id, at_ns, event, detail, "
                "chain_hash) VALUES (?, ?, ?, ?, ?, ?)",
                chain_log_rows(log),
            )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _fill_postgresql(url: str, rows: Iterator[tuple[Any, ...]], log: list[tuple[Any, ...]]) -> None:
    import psycopg

    from recorder.store import normalize_url

    dsn = normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn, conn.cursor() as cursor:
        with cursor.copy(f"COPY events ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        with cursor.copy(
            "COPY connection_log (session_id, account_id, at_ns, event, detail, chain_hash) "
            "FROM STDIN"
        ) as copy:
            for entry in chain_log_rows(log):
                copy.write_row(entry)
        cursor.execute("ANALYZE events")
