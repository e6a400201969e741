"""A recorded trading day with injected faults, written through the recorder's Appender.

2024-06-10, America/New_York (EDT: local = UTC - 4 h). Two accounts.

Account ``100000`` (four sessions):

* ``A-s1`` 09:30:00.200 subscribed (empty replay) … closed 09:35:00.020 after an
  error-notice "Auth expired". Live: seq 1-5, 7, 8. **Seq 6 (fill T2) is missed live.**
* ``A-s2`` 09:35:05 opened, subscribe rejected, closed: no coverage.
* ``A-s3`` 09:36:00.200 subscribed; its replay re-delivers seq 1-8 (**healing seq 6**);
  live seq 9-11, 14-18. **Seq 12-13 (fill T4 of order O2 and a position-update) are never
  received by anyone: a permanent hole and a missing fill.** An unparseable frame, a
  heartbeat at 09:40:00, then no ``closed`` row: **unclean end** (recorder killed).
* ``A-s4`` 09:45:00.200 subscribed, replay of seq 1-11 and 14-18, heartbeats at 09:46,
  09:47, then **nothing until 09:55 (a silence of 480 s)**, heartbeats 09:55-09:59,
  closed 10:00:00 "shutdown".

Orders of 100000: O1 AAPL buy 100 (fills T1 40 @ 189.47, T2 60 @ 189.50; start position
10, last position-update 110), O2 MSFT sell-short 30 (fill T3 10 @ 420.10 received; T4
20 @ 420.25 lost; final order-update says filled 30; last position-update -30), O3 NVDA
buy 50 canceled unfilled, and fill T5 TSLA buy 5 @ 180.00 of unknown order ORPHAN-9.

Account ``0042`` (leading zero kept): ``B-s1`` 09:30:00.100 subscribed … closed
09:33:00.000 "liveness timeout"; ``B-s2`` 09:33:01.100 subscribed, replays seq 1-4,
closed 09:35:00.000 "shutdown". Order P1 SPY buy 10 @ 530.25 from a start of -5; the
position-update's average_cost is 123456789.123456789 (more digits than a double holds).

Latencies of live frames (receipt minus server timestamp) are 2 ms except where noted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from recorder.appender import Appender
from recorder.records import FrameRecord, LogRecord

from .frames import DAY, A, B, frame

__all__ = ["AFTER_THE_DAY_NS", "DAY", "LOST", "TZ", "UNPARSEABLE", "A", "B", "Day", "build",
           "ny", "record"]  # fmt: skip

TZ = ZoneInfo("America/New_York")
AFTER_THE_DAY_NS = 1_718_236_800 * 10**9  # 2024-06-13T00:00:00Z: "now" for the tests
UNPARSEABLE = "this is not json {"


def ny(hh: int, mm: int, ss: int, ms: int = 0) -> int:
    """UTC epoch ns of local New York time hh:mm:ss.ms on DAY."""
    local = dt.datetime(2024, 6, 10, hh, mm, ss, tzinfo=TZ)
    return int(local.timestamp()) * 10**9 + ms * 10**6


def frame_text(ts_ms: int, payload: dict[str, Any], seq: int | None = None) -> str:
    """The frame as the server sends it; values "#num:…" become bare JSON numbers."""
    document: dict[str, Any] = {"timestamp": ts_ms}
    if seq is not None:
        document["sequence"] = seq
    document["payload"] = payload
    text = json.dumps(document, separators=(",", ":"))
    return re.sub(r'"#num:([^"]+)"', r"\1", text)


def order(acct: str, oid: str, version: int, status: str, symbol: str, side: str, qty: str,
          price: str, filled: str, running: str, avg: str | None = None,
          ) -> dict[str, Any]:  # fmt: skip
    data: dict[str, Any] = {
        "created_at": 1718026200000, "updated_at": 1718026200000 + version, "order_id": oid,
        "version": version, "account_id": acct, "account_number": f"ACC{acct}",
        "state": "open" if status in ("new", "partially-filled") else "closed",
        "status": status, "symbol": symbol, "order_type": "limit", "side": side,
        "quantity": qty, "price": price, "time_in_force": "day", "filled_quantity": filled,
        "running_position": running,
    }  # fmt: skip
    if avg is not None:
        data["average_price"] = f"#num:{avg}"
    return {"type": "order-update", "data": data}


def trade(acct: str, tid: str, oid: str, symbol: str, side: str, qty: str, price: str,
          running: str) -> dict[str, Any]:  # fmt: skip
    return {"type": "trade-notice", "data": {
        "created_at": 1718026200000, "account_id": acct, "account_number": f"ACC{acct}",
        "trade_id": tid, "order_id": oid, "symbol": symbol, "side": side, "quantity": qty,
        "price": price, "running_position": running,
    }}  # fmt: skip


def position(acct: str, symbol: str, qty: str, cost: str) -> dict[str, Any]:
    return {"type": "position-update", "data": {
        "account_id": acct, "account_number": f"ACC{acct}", "symbol": symbol, "quantity": qty,
        "average_cost": f"#num:{cost}",
    }}  # fmt: skip


# Sequenced frames of each account: seq -> (server time ns, payload).
A_SEQ: dict[int, tuple[int, dict[str, Any]]] = {
    1: (ny(9, 31, 0), order(A, "O1", 1, "new", "AAPL", "buy", "100", "189.50", "0", "10")),
    2: (ny(9, 31, 0, 100), order(A, "O1", 2, "partially-filled", "AAPL", "buy", "100",
                                 "189.50", "40", "50", "189.47")),
    3: (ny(9, 31, 0, 110), trade(A, "T1", "O1", "AAPL", "buy", "40", "189.47", "50")),
    4: (ny(9, 31, 0, 120), position(A, "AAPL", "50", "189.47")),
    5: (ny(9, 33, 0), order(A, "O1", 3, "filled", "AAPL", "buy", "100", "189.50", "100",
                            "110", "189.488")),
    6: (ny(9, 33, 0, 10), trade(A, "T2", "O1", "AAPL", "buy", "60", "189.50", "110")),
    7: (ny(9, 33, 0, 20), position(A, "AAPL", "110", "189.488")),
    8: (ny(9, 34, 0), order(A, "O2", 1, "new", "MSFT", "sell-short", "30", "420.10", "0", "0")),
    9: (ny(9, 37, 0), order(A, "O2", 2, "partially-filled", "MSFT", "sell-short", "30",
                            "420.10", "10", "-10", "420.10")),
    10: (ny(9, 37, 0, 10), trade(A, "T3", "O2", "MSFT", "sell-short", "10", "420.10", "-10")),
    11: (ny(9, 37, 0, 20), position(A, "MSFT", "-10", "420.10")),
    12: (ny(9, 37, 30), trade(A, "T4", "O2", "MSFT", "sell-short", "20", "420.25", "-30")),
    13: (ny(9, 37, 30, 10), position(A, "MSFT", "-30", "420.20")),
    14: (ny(9, 38, 0), order(A, "O2", 3, "filled", "MSFT", "sell-short", "30", "420.10",
                             "30", "-30", "420.2")),
    15: (ny(9, 38, 0, 10), position(A, "MSFT", "-30", "420.2")),
    16: (ny(9, 38, 30), trade(A, "T5", "ORPHAN-9", "TSLA", "buy", "5", "180.00", "5")),
    17: (ny(9, 39, 0), order(A, "O3", 1, "new", "NVDA", "buy", "50", "120.00", "0", "0")),
    18: (ny(9, 39, 0, 500), order(A, "O3", 2, "canceled", "NVDA", "buy", "50", "120.00",
                                  "0", "0")),
}  # fmt: skip
B_SEQ: dict[int, tuple[int, dict[str, Any]]] = {
    1: (ny(9, 31, 0), order(B, "P1", 1, "new", "SPY", "buy", "10", "530.25", "0", "-5")),
    2: (ny(9, 31, 0, 100), order(B, "P1", 2, "filled", "SPY", "buy", "10", "530.25", "10",
                                 "5", "530.25")),
    3: (ny(9, 31, 0, 110), trade(B, "U1", "P1", "SPY", "buy", "10", "530.25", "5")),
    4: (ny(9, 31, 0, 120), position(B, "SPY", "5", "123456789.123456789")),
}  # fmt: skip
#: Sequences never received by anyone (the permanent hole, with the missing fill T4).
LOST = (12, 13)


@dataclass
class Day:
    """What was written (frames per account) so tests can find row ids."""

    frames: list[FrameRecord]
    logs: list[LogRecord]


class _Builder:
    def __init__(self) -> None:
        self.frames: list[FrameRecord] = []
        self.logs: list[LogRecord] = []

    def log(self, session: str, acct: str, at: int, event: str, detail: str | None = None) -> None:
        self.logs.append(LogRecord(session, acct, at, event, detail))

    def raw(self, acct: str, session: str, at: int, ts_ms: int | None, seq: int | None,
            msg_type: str | None, text: str, replayed: bool = False) -> None:  # fmt: skip
        self.frames.append(frame(acct, seq, at_ns=at, session_id=session, server_ts_ms=ts_ms,
                                 msg_type=msg_type, replayed=replayed, raw=text))  # fmt: skip

    def unsequenced(self, acct: str, session: str, at: int, payload: dict[str, Any],
                    latency_ms: int = 2) -> None:  # fmt: skip
        ts = at // 10**6 - latency_ms
        self.raw(acct, session, at, ts, None, payload["type"], frame_text(ts, payload))

    def live(self, acct: str, session: str, table: dict[int, tuple[int, dict[str, Any]]],
             seq: int, latency_ms: int = 2) -> None:  # fmt: skip
        server_ns, payload = table[seq]
        ts = server_ns // 10**6
        at = server_ns + latency_ms * 10**6
        self.raw(acct, session, at, ts, seq, payload["type"], frame_text(ts, payload, seq))

    def replay(self, acct: str, session: str, table: dict[int, tuple[int, dict[str, Any]]],
               seqs: list[int], first_at: int) -> None:  # fmt: skip
        for k, seq in enumerate(seqs):
            server_ns, payload = table[seq]
            ts = server_ns // 10**6
            self.raw(acct, session, first_at + k * 10**6, ts, seq, payload["type"],
                     frame_text(ts, payload, seq), replayed=True)  # fmt: skip


def ack(acct: str, success: bool = True) -> dict[str, Any]:
    details = "Subscribed successfully" if success else "Invalid or expired token"
    return {"type": "subscribe-activity-ack", "account_id": acct, "success": success,
            "details": details}  # fmt: skip


HEARTBEAT = {"type": "heartbeat"}
REPLAY_COMPLETE = {"type": "replay-complete"}
NOTICE = {"type": "error-notice", "details": "Auth expired; please reconnect"}


def build() -> Day:
    b = _Builder()
    # -- account 100000 -------------------------------------------------------------------
    b.log("A-s1", A, ny(9, 30, 0), "opened")
    b.log("A-s1", A, ny(9, 30, 0, 200), "subscribed")
    b.unsequenced(A, "A-s1", ny(9, 30, 0, 200), ack(A), latency_ms=5)
    b.log("A-s1", A, ny(9, 30, 0, 300), "replay-complete")
    b.unsequenced(A, "A-s1", ny(9, 30, 0, 300), REPLAY_COMPLETE)
    b.live(A, "A-s1", A_SEQ, 1, latency_ms=1)
    for seq in (2, 3, 4):
        b.live(A, "A-s1", A_SEQ, seq)
    b.unsequenced(A, "A-s1", ny(9, 32, 0), HEARTBEAT, latency_ms=1)
    for seq in (5, 7, 8):  # 6 is missed live
        b.live(A, "A-s1", A_SEQ, seq)
    b.unsequenced(A, "A-s1", ny(9, 35, 0), NOTICE, latency_ms=25)
    b.log("A-s1", A, ny(9, 35, 0, 20), "closed", "1000: Auth expired; please reconnect")

    b.log("A-s2", A, ny(9, 35, 5), "opened")
    b.unsequenced(A, "A-s2", ny(9, 35, 5, 100), ack(A, success=False))
    b.log("A-s2", A, ny(9, 35, 5, 100), "subscribe-rejected", "Invalid or expired token")
    b.log("A-s2", A, ny(9, 35, 5, 150), "closed", "subscribe rejected")

    b.log("A-s3", A, ny(9, 36, 0), "opened")
    b.log("A-s3", A, ny(9, 36, 0, 200), "subscribed")
    b.unsequenced(A, "A-s3", ny(9, 36, 0, 200), ack(A))
    b.replay(A, "A-s3", A_SEQ, list(range(1, 9)), ny(9, 36, 0, 300))
    b.log("A-s3", A, ny(9, 36, 0, 400), "replay-complete")
    b.unsequenced(A, "A-s3", ny(9, 36, 0, 400), REPLAY_COMPLETE)
    for seq in (9, 10, 11, 14, 15, 16, 17, 18):
        b.live(A, "A-s3", A_SEQ, seq)
    b.raw(A, "A-s3", ny(9, 39, 30), None, None, None, UNPARSEABLE)
    b.unsequenced(A, "A-s3", ny(9, 40, 0), HEARTBEAT)
    # ... and no "closed": the recorder was killed.

    b.log("A-s4", A, ny(9, 45, 0), "opened")
    b.log("A-s4", A, ny(9, 45, 0, 200), "subscribed")
    b.unsequenced(A, "A-s4", ny(9, 45, 0, 200), ack(A))
    replayed = [s for s in A_SEQ if s not in LOST]
    b.replay(A, "A-s4", A_SEQ, replayed, ny(9, 45, 0, 300))
    b.log("A-s4", A, ny(9, 45, 0, 500), "replay-complete")
    b.unsequenced(A, "A-s4", ny(9, 45, 0, 500), REPLAY_COMPLETE)
    b.unsequenced(A, "A-s4", ny(9, 46, 0), HEARTBEAT, latency_ms=3)
    b.unsequenced(A, "A-s4", ny(9, 47, 0), HEARTBEAT)
    for minute in (55, 56, 57, 58, 59):  # silent from 09:47 to 09:55
        b.unsequenced(A, "A-s4", ny(9, minute, 0), HEARTBEAT)
    b.log("A-s4", A, ny(10, 0, 0), "closed", "shutdown")

    # -- account 0042 ---------------------------------------------------------------------
    b.log("B-s1", B, ny(9, 30, 0), "opened")
    b.log("B-s1", B, ny(9, 30, 0, 100), "subscribed")
    b.unsequenced(B, "B-s1", ny(9, 30, 0, 100), ack(B))
    b.log("B-s1", B, ny(9, 30, 0, 150), "replay-complete")
    b.unsequenced(B, "B-s1", ny(9, 30, 0, 150), REPLAY_COMPLETE)
    for seq in (1, 2, 3, 4):
        b.live(B, "B-s1", B_SEQ, seq)
    b.unsequenced(B, "B-s1", ny(9, 32, 0), HEARTBEAT)
    b.log("B-s1", B, ny(9, 33, 0), "closed", "liveness timeout")

    b.log("B-s2", B, ny(9, 33, 1), "opened")
    b.log("B-s2", B, ny(9, 33, 1, 100), "subscribed")
    b.unsequenced(B, "B-s2", ny(9, 33, 1, 100), ack(B))
    b.replay(B, "B-s2", B_SEQ, [1, 2, 3, 4], ny(9, 33, 1, 200))
    b.log("B-s2", B, ny(9, 33, 1, 300), "replay-complete")
    b.unsequenced(B, "B-s2", ny(9, 33, 1, 300), REPLAY_COMPLETE)
    b.unsequenced(B, "B-s2", ny(9, 34, 0), HEARTBEAT)
    b.log("B-s2", B, ny(9, 35, 0), "closed", "shutdown")

    b.frames.sort(key=lambda f: f.received_at_ns)
    b.logs.sort(key=lambda log: log.at_ns)
    return Day(b.frames, b.logs)


def record(engine: Engine) -> Day:
    """Append the day to the (migrated) store behind ``engine``, in batches of 7 frames."""
    day = build()
    appender = Appender(engine)
    logs = list(day.logs)
    for start in range(0, len(day.frames), 7):
        batch = day.frames[start : start + 7]
        until = batch[-1].received_at_ns
        due = [log for log in logs if log.at_ns <= until]
        logs = [log for log in logs if log.at_ns > until]
        appender.append(batch, due)
    appender.append([], logs)
    return day
