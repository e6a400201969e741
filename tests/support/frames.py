"""Frames as the recorder stores them (``FrameRecord``), built one way for every test."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Final

from recorder.records import FrameRecord

#: Two accounts: a plain one, and one whose leading zero must survive everywhere.
A: Final = "100000"
B: Final = "0042"
#: The trading day most tests record (America/New_York, EDT: local = UTC - 4 h).
DAY: Final = dt.date(2024, 6, 10)
NOON_NS: Final = 1_718_035_200 * 10**9  # 2024-06-10T12:00:00-04:00
_NS_PER_MS: Final = 1_000_000

#: The fields of a frame the recorder could not parse (no timestamp, sequence or type).
UNPARSED: Final[dict[str, Any]] = {"server_ts_ms": None, "sequence": None, "msg_type": None}


def frame(
    account: str = A,
    n: int | None = 1,
    *,
    at_ns: int | None = None,
    day: dt.date = DAY,
    msg_type: str | None = "order-update",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> FrameRecord:
    """Frame ``n`` of ``account`` on ``day``, as the recorder stores it.

    Received at ``at_ns`` (default: noon of DAY plus ``n`` ms) in session ``s-ACCOUNT``; the
    server timestamp is a millisecond before receipt; sequence ``n``; even ``n`` are replays
    (so both kinds occur); a text frame whose JSON payload of type ``msg_type`` carries
    ``data`` (default: the account and some non-ASCII text). ``fields`` override any
    ``FrameRecord`` field (``raw``, ``raw_kind``, ``session_id``, ``server_ts_ms``, ...).
    """
    received = NOON_NS + (n or 0) * _NS_PER_MS if at_ns is None else at_ns
    server_ts = received // _NS_PER_MS - 1
    payload = {"type": msg_type, "data": {"account_id": account, "note": "é ✓"} | (data or {})}
    raw = json.dumps({"timestamp": server_ts, "sequence": n, "payload": payload},
                     ensure_ascii=False, separators=(",", ":"))  # fmt: skip
    values: dict[str, Any] = {
        "account_id": account,
        "session_id": f"s-{account}",
        "received_at_ns": received,
        "server_ts_ms": server_ts,
        "sequence": n,
        "msg_type": msg_type,
        "trading_day": day,
        "replayed": n is not None and n % 2 == 0,
        "raw_kind": "text",
        "raw": raw,
    }
    return FrameRecord(**(values | fields))


def fill(account: str, n: int) -> FrameRecord:
    """Fill ``T<n>`` of order O1 (buy 1 AAPL at 10.00, running position ``n``), live, sequence
    ``n``, received ``n`` ms after noon of DAY."""
    trade = {"trade_id": f"T{n}", "order_id": "O1", "symbol": "AAPL", "side": "buy",
             "quantity": "1", "price": "10.00", "running_position": str(n)}  # fmt: skip
    return frame(account, n, msg_type="trade-notice", data=trade, replayed=False)
