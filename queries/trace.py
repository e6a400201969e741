"""``studio-query trace``: the life of one order, the question a compliance officer gets most.

Every frame concerning the order — its order-updates and the trade-notices that name it —
over a range of days (or all of them), in receipt order, once per sequence (with how many
copies were received, live and replayed), and what it came to: status by status, each fill
with quantity and price, and the final state.

The store is asked for the frames of those two types whose text holds the order id (and
any frame not stored as text); DuckDB then parses them with the same ``activity`` view as
every report and keeps those whose ``order_id`` is the one asked for. An export is read the
same way, file by file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from recorder.instants import NS_PER_MS, iso_ns
from recorder.store import safe_url

from .contract import EVENTS_SCHEMA
from .datasource import DataSource
from .duck import check_accounts, open_rows, zone
from .errors import UsageError
from .exportdir import ExportDir
from .objectstore import archived_copy, archived_days
from .render import cell, table
from .source import StoreReader

#: The message types that concern an order.
TYPES: Final = ("order-update", "trade-notice")


def trace(
    source: DataSource,
    order_id: str,
    days: Sequence[dt.date] | None = None,
    accounts: Sequence[str] = (),
) -> dict[str, Any]:
    """The trace report of ``order_id`` (JSON-ready; see the README for its fields) over
    ``days`` (every day when None). QueryError for an unreadable source or unknown account."""
    if not order_id.strip():
        raise UsageError("an order id cannot be blank")
    tz = zone(source.timezone)
    rows = _candidates(source, order_id, days, accounts)
    with open_rows(rows, source=_name(source), tz=tz) as ws:
        found = ws.rows(_FRAMES_SQL, [order_id])
    frames = []
    for row in found:
        frame = dict(zip(_COLUMNS, row, strict=True))
        server_ms = frame.pop("server_ts_ms")
        frames.append({
            **{k: frame[k] for k in _COLUMNS[:4]},
            "received_at": iso_ns(frame.pop("received_at_ns")),
            "server_time": None if server_ms is None else iso_ns(server_ms * NS_PER_MS, 3),
            **{k: frame[k] for k in _COLUMNS[6:]},
        })  # fmt: skip
    return {
        "order_id": order_id,
        "source": _name(source),
        "from": days[0] if days else None,
        "to": days[-1] if days else None,
        "accounts": sorted({f["account_id"] for f in frames}),
        "frames": frames,
        "final": _final(frames),
    }


_COLUMNS: Final = (
    "account_id", "trading_day", "sequence", "msg_type", "received_at_ns", "server_ts_ms",
    "copies", "live_copies", "replayed_copies", "ids", "status", "version", "symbol", "side",
    "quantity", "price", "filled_quantity", "average_price", "trade_id",
)  # fmt: skip
# The first copy of each sequence (``activity``) whose order is the one asked for, with
# every stored copy of that sequence counted.
_FRAMES_SQL: Final = """
SELECT a.account_id, a.trading_day, a.sequence, a.msg_type, a.received_at_ns, a.server_ts_ms,
       c.copies, c.live, c.replayed, c.ids, a.status, a.version, a.symbol, a.side, a.quantity,
       a.price, a.filled_quantity, a.average_price, a.trade_id
FROM activity AS a JOIN (
    SELECT account_id, trading_day, sequence, count(*) AS copies,
           count(*) FILTER (WHERE NOT replayed) AS live,
           count(*) FILTER (WHERE replayed) AS replayed,
           list(id ORDER BY id) AS ids
    FROM _events WHERE sequence IS NOT NULL GROUP BY ALL
) AS c USING (account_id, trading_day, sequence)
WHERE a.order_id = ? AND a.msg_type IN ('order-update', 'trade-notice')
ORDER BY a.received_at_ns, a.id
"""


def _final(frames: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The order's last version (highest version, then sequence) and what its fills add to."""
    updates = [f for f in frames if f["msg_type"] == "order-update"]
    fills = [f for f in frames if f["msg_type"] == "trade-notice"]
    if not updates and not fills:
        return None
    last = max(updates, key=lambda f: (f["version"] or -1, f["sequence"])) if updates else None
    filled = sum((f["quantity"] or Decimal(0) for f in fills), Decimal(0))
    return {
        "account_id": (last or fills[-1])["account_id"],
        "symbol": (last or fills[-1])["symbol"],
        "side": (last or fills[-1])["side"],
        "status": last["status"] if last else None,
        "quantity": last["quantity"] if last else None,
        "filled_quantity": last["filled_quantity"] if last else None,
        "average_price": last["average_price"] if last else None,
        "fills": len(fills),
        "fills_quantity": filled,
        # False when the fills recorded do not add up to what the order says was filled
        "fills_match": None if last is None else last["filled_quantity"] == filled,
    }


def _name(source: DataSource) -> str:
    return str(source.export_dir) if source.export_dir is not None else safe_url(str(source.url))


def _candidates(
    source: DataSource, order_id: str, days: Sequence[dt.date] | None, accounts: Sequence[str]
) -> Iterator[pa.RecordBatch]:
    wanted = list(accounts) or None
    if source.export_dir is not None:
        export = ExportDir(source.export_dir)
        held = export.days()
        chosen = [d for d in held if days is None or d in set(days)]
        export.check_accounts(accounts, chosen)
        yield from _from_export(export, chosen, wanted, order_id)
        return
    assert source.url is not None
    with StoreReader(source.url) as reader:
        check_accounts(reader, accounts, source.configured)
        stored = set(reader.days())
        if days is not None:
            asked: list[dt.date | None] = [*days]
        else:  # every day: the store's, and the archive's it no longer (or never) held
            asked = [None, *sorted(set(archived_days(source.archive)) - stored)]
        for day in asked:
            copy = None if day is None or day in stored else archived_copy(source.archive, day)
            if day is None or copy is None:
                yield from reader.events(day=day, accounts=wanted, msg_types=TYPES,
                                         containing=order_id)  # fmt: skip
                continue
            directory, done = copy
            try:
                yield from _from_export(ExportDir(directory), [day], wanted, order_id)
            finally:
                done()


def _from_export(
    export: ExportDir, days: Sequence[dt.date], accounts: list[str] | None, order_id: str
) -> Iterator[pa.RecordBatch]:
    """The frames of ``days`` in ``export`` that may concern the order (as the store's
    reader narrows them: text frames holding its id, and every binary one)."""
    for batch in export.batches("events", days, accounts, EVENTS_SCHEMA.names, TYPES):
        text = pc.equal(batch.column("raw_kind"), "text")
        holds = pc.match_substring(batch.column("raw"), order_id)
        yield batch.filter(pc.or_(pc.invert(text), holds))


def render_trace(report: dict[str, Any]) -> str:
    """The trace as text for people: the order's frames, then its final state."""
    span = f" from {report['from']} to {report['to']}" if report["from"] else ""
    lines = [f"Order {report['order_id']}{span}: {len(report['frames'])} frames"]
    lines.append(
        table(
            ["received_at", "server_time", "account", "seq", "type", "status", "quantity",
             "price", "filled", "trade_id", "copies (live/replayed)"],
            [(f["received_at"], f["server_time"], f["account_id"], f["sequence"],
              f["msg_type"], f["status"], f["quantity"], f["price"], f["filled_quantity"],
              f["trade_id"], f"{f['copies']} ({f['live_copies']}/{f['replayed_copies']})")
             for f in report["frames"]],
        )
    )  # fmt: skip
    final = report["final"]
    if final is None:
        lines.append("No frame of this order was recorded.")
    else:
        lines.append(
            f"Final: {cell(final['status'])}, {cell(final['filled_quantity'])} of "
            f"{cell(final['quantity'])} {cell(final['symbol'])} {cell(final['side'])} filled "
            f"(average {cell(final['average_price'])}); {final['fills']} fills for "
            f"{cell(final['fills_quantity'])}"
            + ("" if final["fills_match"] is not False else ": THE FILLS DO NOT ADD UP")
        )
    return "\n".join(lines)
