"""End-of-day reconciliation, per account and symbol, from de-duplicated activity.

Fills are the day's ``trade-notice`` frames, de-duplicated on ``trade_id`` (replays
re-deliver them); orders are the last version of each ``order_id``; positions the
last ``position-update`` of each symbol (views ``fills``, ``orders``, ``positions``
of :mod:`queries.duck`). Per symbol:

* ``bought``/``sold`` (both positive), ``net = bought - sold``, notionals
  (Σ quantity × price), VWAPs (notional / quantity, rounded half-even to 9 decimal
  places; null when nothing was bought or sold), ``fills``;
* ``start_position`` from the symbol's earliest frame of the day by sequence: an
  order-update's ``running_position`` minus its signed ``filled_quantity``, or a
  trade-notice's ``running_position`` minus its signed ``quantity`` (buy +, sell
  and sell-short −); when the day has no order or fill of the symbol, its first
  ``position-update`` (a carried position);
* ``last_position``: the last ``position-update`` quantity (null when none);
* ``consistent``: ``start_position + net == last_position``.

Breaks: ``position-not-explained``, ``no-position-update``,
``unknown-start-position``, ``order-fill-mismatch`` (an order's final
``filled_quantity`` differs from the sum of its fills), ``unknown-order`` (a fill of
an order with no order-update that day), ``unknown-side``, and with a broker
positions file ``positions-file`` (every difference from it) and
``account-not-recorded`` (an account the file holds positions of, of which the store has
nothing that day, unless ``--account`` left it out). Money and quantities stay ``Decimal``.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from .duck import Workspace
from .errors import QueryError
from .positionsfile import read_positions
from .render import decimal_text, table

VWAP_QUANTUM = Decimal("0.000000001")


def _vwap(notional: Decimal, quantity: Decimal) -> Decimal | None:
    if not quantity:
        return None
    with decimal.localcontext() as context:
        context.prec = 80
        return (notional / quantity).quantize(VWAP_QUANTUM, rounding=decimal.ROUND_HALF_EVEN)


def _by_key(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r[0], r[1]): r[2:] for r in rows}


def _break(
    kind: str, symbol: str | None, order_id: str | None, detail: str, **extra: Any
) -> dict[str, Any]:
    return {"kind": kind, "symbol": symbol, "order_id": order_id, "detail": detail, **extra}


def reconcile(ws: Workspace, *, positions_file: str | Path | None = None) -> dict[str, Any]:
    """The reconciliation report of the workspace's day (JSON-ready; see the README).

    Needs a workspace with payloads (``open_store(..., payload=True)``, the default).
    Raises QueryError for a malformed positions file.
    """
    if not ws.payload:
        raise QueryError(
            "reconcile needs the frames' payloads: open the workspace with payload=True"
        )
    ws.freeze()
    day = [ws.day]
    facts = _Facts(
        stats=_fill_stats(ws, day),
        starts=_start_positions(ws, day),
        carried=_carried_positions(ws, day),
        lasts=_by_key(
            ws.rows("SELECT account_id, symbol, quantity FROM positions WHERE trading_day = ?", day)
        ),
        order_symbols=_by_key(
            ws.rows(
                "SELECT DISTINCT account_id, symbol FROM orders WHERE symbol IS NOT NULL "
                "AND trading_day = ?",
                day,
            )
        ),
        statuses=_order_statuses(ws, day),
        breaks=_order_fill_breaks(ws, day),
    )
    _fill_breaks(ws, day, facts.breaks)
    broker = read_positions(positions_file) if positions_file is not None else None
    accounts = [_account_report(facts, account, broker) for account in ws.accounts]
    report: dict[str, Any] = {"trading_day": ws.day, "timezone": ws.tz.key, "accounts": accounts}
    if broker is not None:
        outside = sorted({a for a, _ in broker} - set(ws.accounts))
        # Named with --account: left out on purpose. Otherwise the store has nothing of the
        # account that day: the broker holds positions we never recorded, the worst break.
        unrecorded = [] if ws.filtered else outside
        for account in unrecorded:
            entry = _account_report(facts, account, broker)
            entry["breaks"].insert(0, _unrecorded_break(account, ws.day))
            accounts.append(entry)
        report["positions_file"] = {
            "path": str(positions_file),
            "rows": len(broker),
            "accounts_filtered_out": outside if ws.filtered else [],
            "accounts_unrecorded": unrecorded,
        }
    return report


def _unrecorded_break(account: str, day: object) -> dict[str, Any]:
    return _break(
        "account-not-recorded",
        None,
        None,
        f"the positions file has account {account}, of which nothing was recorded on {day}",
    )


# -- facts: one query each ------------------------------------------------------------------

_Keyed = dict[tuple[str, str], tuple[Any, ...]]


@dataclass(frozen=True)
class _Facts:
    """What the day's de-duplicated activity says, keyed by (account, symbol)."""

    stats: _Keyed  # bought, sold, notional bought, notional sold, fills
    starts: _Keyed  # the position before the day's first order or fill
    carried: _Keyed  # the first position-update (for symbols without orders or fills)
    lasts: _Keyed  # the last position-update
    order_symbols: _Keyed
    statuses: dict[str, dict[str, int]]  # account → order status → orders
    breaks: dict[str, list[dict[str, Any]]]  # account → breaks found by the queries


def _fill_stats(ws: Workspace, day: list[Any]) -> _Keyed:
    return _by_key(
        ws.rows(
            """
        SELECT account_id, symbol,
               coalesce(sum(quantity) FILTER (WHERE side_sign = 1), 0),
               coalesce(sum(quantity) FILTER (WHERE side_sign = -1), 0),
               coalesce(sum(notional) FILTER (WHERE side_sign = 1), 0),
               coalesce(sum(notional) FILTER (WHERE side_sign = -1), 0),
               count(*)
        FROM fills WHERE symbol IS NOT NULL AND trading_day = ? GROUP BY account_id, symbol
        """,
            day,
        )
    )


def _start_positions(ws: Workspace, day: list[Any]) -> _Keyed:
    return _by_key(
        ws.rows(
            """
        SELECT account_id, symbol, arg_min(start, sequence) FROM (
            SELECT account_id, symbol, sequence,
                   running_position - side_sign * filled_quantity AS start
            FROM activity WHERE msg_type = 'order-update' AND symbol IS NOT NULL
              AND trading_day = $1
            UNION ALL
            SELECT account_id, symbol, sequence, running_position - signed_quantity
            FROM fills WHERE symbol IS NOT NULL AND trading_day = $1)
        GROUP BY account_id, symbol
        """,
            day,
        )
    )


def _carried_positions(ws: Workspace, day: list[Any]) -> _Keyed:
    return _by_key(
        ws.rows(
            "SELECT account_id, symbol, arg_min(quantity, sequence) FROM activity "
            "WHERE msg_type = 'position-update' AND symbol IS NOT NULL AND trading_day = ? "
            "GROUP BY account_id, symbol",
            day,
        )
    )


def _order_statuses(ws: Workspace, day: list[Any]) -> dict[str, dict[str, int]]:
    statuses: dict[str, dict[str, int]] = {}
    for account, status, n in ws.rows(
        "SELECT account_id, coalesce(status, '(none)'), count(*) FROM orders "
        "WHERE trading_day = ? GROUP BY ALL ORDER BY ALL",
        day,
    ):
        statuses.setdefault(account, {})[status] = n
    return statuses


def _order_fill_breaks(ws: Workspace, day: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """``order-fill-mismatch`` breaks: an order's final filled quantity is not its fills'."""
    breaks: dict[str, list[dict[str, Any]]] = {}
    for account, order_id, symbol, final, filled, n in ws.rows(
        """
        SELECT o.account_id, o.order_id, o.symbol, o.filled_quantity,
               coalesce(f.filled, 0), coalesce(f.n, 0)
        FROM orders AS o LEFT JOIN (
            SELECT account_id, trading_day, order_id, sum(quantity) AS filled, count(*) AS n
            FROM fills GROUP BY ALL) AS f
          ON f.account_id = o.account_id AND f.trading_day = o.trading_day
         AND f.order_id = o.order_id
        WHERE o.trading_day = ? AND o.filled_quantity IS DISTINCT FROM coalesce(f.filled, 0)
        ORDER BY o.account_id, o.order_id
        """,
        day,
    ):
        breaks.setdefault(account, []).append(
            _break(
                "order-fill-mismatch",
                symbol,
                order_id,
                f"order {order_id}: final filled_quantity {_text(final)} but its {n} fill(s) "
                f"sum to {_text(filled)}",
                order_filled_quantity=final,
                fills_quantity=filled,
            )
        )
    return breaks


def _fill_breaks(ws: Workspace, day: list[Any], breaks: dict[str, list[dict[str, Any]]]) -> None:
    """Add ``unknown-order`` and ``unknown-side`` breaks (fills that cannot be placed)."""
    for account, symbol, order_id, trade_id, quantity, side, unknown in ws.rows(
        "SELECT account_id, symbol, order_id, trade_id, quantity, side, unknown_order "
        "FROM fills WHERE trading_day = ? AND (unknown_order OR side_sign IS NULL) "
        "ORDER BY account_id, sequence",
        day,
    ):
        if unknown:
            found = _break(
                "unknown-order",
                symbol,
                order_id,
                f"fill {trade_id} ({_text(quantity)}) of order {order_id}, which has no "
                f"order-update today",
                trade_id=trade_id,
            )
        else:
            found = _break(
                "unknown-side",
                symbol,
                order_id,
                f"fill {trade_id} has side {side!r}: counted neither bought nor sold",
                trade_id=trade_id,
            )
        breaks.setdefault(account, []).append(found)


# -- the report -----------------------------------------------------------------------------


def _account_report(
    facts: _Facts, account: str, broker: dict[tuple[str, str], Decimal] | None
) -> dict[str, Any]:
    recorded = {
        key
        for keyed in (facts.stats, facts.starts, facts.carried, facts.lasts, facts.order_symbols)
        for key in keyed
        if key[0] == account
    }
    keys = set(recorded)
    if broker is not None:
        keys |= {k for k in broker if k[0] == account}
    account_breaks = list(facts.breaks.get(account, []))
    symbols = []
    for key in sorted(keys):
        entry, found = _symbol(
            key[1],
            facts.stats.get(key),
            facts.starts.get(key),
            facts.carried.get(key),
            facts.lasts.get(key),
        )
        if key in recorded:  # a symbol only the broker's file names has no frames to check
            account_breaks.extend(found)
        if broker is not None:
            entry["broker_quantity"] = broker.get(key)
            account_breaks.extend(_against_broker(entry, broker.get(key)))
        symbols.append(entry)
    statuses = facts.statuses.get(account, {})
    return {
        "account_id": account,
        "symbols": symbols,
        "orders": statuses,
        "order_count": sum(statuses.values()),
        "breaks": account_breaks,
    }


def _symbol(
    symbol: str,
    stats: tuple[Any, ...] | None,
    start: tuple[Any, ...] | None,
    carried: tuple[Any, ...] | None,
    last: tuple[Any, ...] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    zero = Decimal(0)
    bought, sold, notional_bought, notional_sold, fills = stats or (zero, zero, zero, zero, 0)
    net = bought - sold
    start_position = start[0] if start else (carried[0] if carried else None)
    last_position = last[0] if last else None
    found = []
    if start_position is None:
        consistent = False
        found.append(
            _break(
                "unknown-start-position",
                symbol,
                None,
                f"{symbol}: no frame of the day gives its starting position",
            )
        )
    elif last_position is None:
        consistent = False
        found.append(
            _break(
                "no-position-update",
                symbol,
                None,
                f"{symbol}: no position-update today; start {_text(start_position)} + net "
                f"{_text(net)} = {_text(start_position + net)} is unconfirmed",
            )
        )
    else:
        consistent = start_position + net == last_position
        if not consistent:
            found.append(
                _break(
                    "position-not-explained",
                    symbol,
                    None,
                    f"{symbol}: start {_text(start_position)} + net fills {_text(net)} = "
                    f"{_text(start_position + net)}, but the last position-update says "
                    f"{_text(last_position)} "
                    f"(unexplained {_text(last_position - start_position - net)})",
                    expected=start_position + net,
                    actual=last_position,
                )
            )
    entry = {
        "symbol": symbol,
        "bought": bought,
        "sold": sold,
        "net": net,
        "notional_bought": notional_bought,
        "notional_sold": notional_sold,
        "vwap_bought": _vwap(notional_bought, bought),
        "vwap_sold": _vwap(notional_sold, sold),
        "fills": fills,
        "start_position": start_position,
        "last_position": last_position,
        "consistent": consistent,
    }
    return entry, found


def _against_broker(entry: dict[str, Any], broker: Decimal | None) -> list[dict[str, Any]]:
    """A ``positions-file`` break when the broker's quantity differs from the recorder's."""
    recorded = entry["last_position"]
    if recorded is None and entry["start_position"] is not None:
        recorded = entry["start_position"] + entry["net"]
    theirs = broker if broker is not None else Decimal(0)
    if recorded is not None and recorded == theirs:
        return []
    if recorded is None and broker is None:
        return []
    symbol = entry["symbol"]
    said = "no row" if broker is None else _text(broker)
    ours = "nothing today" if recorded is None else _text(recorded)
    return [
        _break(
            "positions-file",
            symbol,
            None,
            f"{symbol}: broker file says {said}, recorder says {ours}",
            broker_quantity=broker,
            recorded_quantity=recorded,
        )
    ]


def _text(value: Decimal | None) -> str:
    return "null" if value is None else decimal_text(value)


#: The columns of a symbol's line, as (header, key of the report's ``symbols`` entry).
SYMBOL_COLUMNS: Final = (
    ("symbol", "symbol"), ("bought", "bought"), ("sold", "sold"), ("net", "net"),
    ("vwap_bought", "vwap_bought"), ("vwap_sold", "vwap_sold"), ("fills", "fills"),
    ("start", "start_position"), ("last", "last_position"), ("consistent", "consistent"),
)  # fmt: skip


def render_reconcile(report: dict[str, Any]) -> str:
    """The reconciliation report as text for people."""
    lines = [f"Reconciliation of {report['trading_day']} ({report['timezone']})"]
    for a in report["accounts"]:
        lines.append("")
        orders = ", ".join(f"{k} {v}" for k, v in a["orders"].items()) or "none"
        lines.append(f"Account {a['account_id']}: orders {a['order_count']} ({orders})")
        lines.append(
            table(
                [header for header, _ in SYMBOL_COLUMNS],
                [tuple(s[key] for _, key in SYMBOL_COLUMNS) for s in a["symbols"]],
            )
        )
        lines.append(f" breaks ({len(a['breaks'])}):")
        lines.extend(f"  {b['kind']}: {b['detail']}" for b in a["breaks"])
    if "positions_file" in report and report["positions_file"]["accounts_filtered_out"]:
        skipped = ", ".join(report["positions_file"]["accounts_filtered_out"])
        lines.append(f"\nAccounts in the positions file left out by --account: {skipped}")
    return "\n".join(lines)


def reconcile_totals(reports: list[dict[str, Any]]) -> str:
    """The totals of several days' reconciliation reports, per account, as text."""
    sums: dict[str, list[int]] = {}
    for report in reports:
        for a in report["accounts"]:
            total = sums.setdefault(a["account_id"], [0, 0, 0])
            total[0] += a["order_count"]
            total[1] += sum(s["fills"] for s in a["symbols"])
            total[2] += len(a["breaks"])
    return f"Totals over {len(reports)} days\n" + table(
        ["account", "orders", "fills", "breaks"],
        [(account, *t) for account, t in sorted(sums.items())],
    )
