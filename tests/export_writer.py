"""A minimal export writer for tests, following the export layout contract exactly.

Stands in for ``studio-query export`` (built separately) so that ``--from-export`` and
``verify --from-export`` can be tested now: per account of the day, an events file
and a connection_log file (every row of every session overlapping the day) under
Hive partitions, zstd, rows in id order, and the day's manifest. To be replaced by
the real export in these tests once it lands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from queries.contract import CONNECTION_LOG_SCHEMA, EVENTS_SCHEMA
from queries.source import StoreReader
from recorder.tradingday import day_bounds_ns

EVENTS_FILE_SCHEMA = pa.schema([
    ("id", pa.int64()), ("session_id", pa.string()),
    ("received_at", pa.timestamp("ns", tz="UTC")), ("server_ts", pa.timestamp("ms", tz="UTC")),
    ("sequence", pa.int64()), ("msg_type", pa.string()), ("replayed", pa.bool_()),
    ("raw_kind", pa.string()), ("raw", pa.string()), ("chain_hash", pa.string()),
])  # fmt: skip
LOG_FILE_SCHEMA = pa.schema([
    ("id", pa.int64()), ("session_id", pa.string()), ("at", pa.timestamp("ns", tz="UTC")),
    ("event", pa.string()), ("detail", pa.string()),
])  # fmt: skip


def _path(table: str, day: dt.date, account: str) -> str:
    return f"{table}/trading_day={day}/account_id={quote(account, safe='-._')}/part-0.parquet"


def _write(out: Path, rel: str, table: pa.Table) -> dict[str, object]:
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "rows": table.num_rows}


def write_export(url: str, day: dt.date, out: Path, timezone: str = "America/New_York") -> dict:
    """Export ``day`` of the store at ``url`` into ``out``; returns the manifest."""
    from zoneinfo import ZoneInfo

    start, end = day_bounds_ns(day, ZoneInfo(timezone))
    with StoreReader(url) as reader:
        events = pa.Table.from_batches(list(reader.events(day=day)), schema=EVENTS_SCHEMA)
        log = pa.Table.from_batches(list(reader.connection_log()), schema=CONNECTION_LOG_SCHEMA)
        anchors = {}
        for account in sorted(set(events.column("account_id").to_pylist())):
            first = min(
                i
                for i, a in zip(
                    events["id"].to_pylist(), events["account_id"].to_pylist(), strict=True
                )
                if a == account
            )  # fmt: skip
            anchors[account] = reader.chain_anchor(account, first)
    sessions: dict[str, list[int]] = {}
    closed: dict[str, int] = {}
    for row in log.to_pylist():
        sessions.setdefault(row["session_id"], []).append(row["at_ns"])
        if row["event"] == "closed":
            closed.setdefault(row["session_id"], row["at_ns"])
    overlapping = {
        s for s, ats in sessions.items() if min(ats) < end and closed.get(s, end) >= start
    }
    log = log.filter(pc.is_in(log["session_id"], pa.array(sorted(overlapping), pa.string())))
    accounts = sorted(set(events["account_id"].to_pylist()) | set(log["account_id"].to_pylist()))
    manifest: dict = {
        "format": "studio-recorder-export", "format_version": 1, "trading_day": day.isoformat(),
        "timezone": timezone, "schema_version": "0001", "tool_version": "0.1.0",
        "id_range": None, "accounts": {}, "files": [],
    }  # fmt: skip
    for account in accounts:
        mine = events.filter(pc.equal(events["account_id"], account))
        rows = pa.table({
            "id": mine["id"], "session_id": mine["session_id"],
            "received_at": pc.cast(mine["received_at_ns"], pa.timestamp("ns", tz="UTC")),
            "server_ts": pc.cast(mine["server_ts_ms"], pa.timestamp("ms", tz="UTC")),
            "sequence": mine["sequence"], "msg_type": mine["msg_type"],
            "replayed": mine["replayed"], "raw_kind": mine["raw_kind"], "raw": mine["raw"],
            "chain_hash": mine["chain_hash"],
        }, schema=EVENTS_FILE_SCHEMA)  # fmt: skip
        theirs = log.filter(pc.equal(log["account_id"], account))
        log_rows = pa.table({
            "id": theirs["id"], "session_id": theirs["session_id"],
            "at": pc.cast(theirs["at_ns"], pa.timestamp("ns", tz="UTC")),
            "event": theirs["event"], "detail": theirs["detail"],
        }, schema=LOG_FILE_SCHEMA)  # fmt: skip
        ids = rows["id"].to_pylist()
        hashes = rows["chain_hash"].to_pylist()
        manifest["accounts"][account] = {
            "events": rows.num_rows, "connection_log": log_rows.num_rows,
            "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None,
            "chain_anchor": anchors.get(account, "0" * 64),
            "first_chain_hash": hashes[0] if hashes else None,
            "last_chain_hash": hashes[-1] if hashes else None,
        }  # fmt: skip
        for table, data in (("events", rows), ("connection_log", log_rows)):
            if data.num_rows:
                rel = _path(table, day, account)
                facts = _write(out, rel, data)
                manifest["files"].append({"path": rel, "table": table, "account_id": account,
                                          **facts})  # fmt: skip
    all_ids = events["id"].to_pylist()
    manifest["id_range"] = {"first": min(all_ids), "last": max(all_ids)} if all_ids else None
    manifest["files"].sort(key=lambda f: f["path"])
    (out / "manifest").mkdir(parents=True, exist_ok=True)
    text = json.dumps(manifest, indent=2, sort_keys=True)
    (out / "manifest" / f"trading_day={day}.json").write_text(text)
    return manifest
