"""Realistic Activity frames for the ingest benchmark, and their WebSocket encoding.

Frames follow the protocol (README, "The protocol the recorder relies on"): sequenced
``order-update`` (50 %),
``trade-notice`` (30 %) and ``position-update`` (20 %) frames, in order lives whose
fills add up to the orders' filled quantities, with server timestamps on :data:`DAY`
(so the export and analytics benchmarks can read the recorded day), plus the
unsequenced ack and ``replay-complete``. Order updates carry a ``text`` field sized
so that the frames average ``frame_bytes``.
Built with string templates (about 1 µs a frame), not ``json.dumps``.
"""

from __future__ import annotations

import struct
from typing import Final

from .store_builder import DAY, OPEN_MS

__all__ = [
    "DAY",
    "account_ids",
    "ack_text",
    "encode_server_frame",
    "frame_texts",
    "replay_complete_text",
]

#: The trading session the frames' timestamps are spread over (09:30 to 16:00 New York).
SESSION_MS: Final = int(6.5 * 3600 * 1000)
SYMBOLS: Final = ("AAPL", "MSFT", "NVDA", "SPY", "TSLA", "AMZN", "META", "QQQ")


def account_ids(count: int) -> list[str]:
    """``count`` account ids, as strings (one with leading zeros, like real ones)."""
    return [f"{100000 + n}" for n in range(count - 1)] + ["0042"]


def _order(account: str, o: int, version: int, status: str, filled: int, ts_ms: int,
           text: str) -> str:  # fmt: skip
    price = f"{150 + o % 97}.{o % 100:02d}"
    state = "closed" if status == "filled" else "open"
    return (
        f'{{"type":"order-update","data":{{"created_at":{ts_ms - 900},"updated_at":{ts_ms - 3},'
        f'"order_id":"{12390213 + o}","reference_id":"ref-{o:08d}","version":{version},'
        f'"account_id":"{account}","account_number":"ACC{account}","state":"{state}",'
        f'"status":"{status}","symbol":"{SYMBOLS[o % 8]}","order_type":"limit","side":"buy",'
        f'"quantity":"100","price":"{price}","time_in_force":"day","average_price":{price},'
        f'"filled_quantity":"{filled}","order_update_reason":"execution-report",'
        f'"running_position":"{filled}"{text}}}}}'
    )


def _fill(account: str, o: int, part: int, quantity: int, ts_ms: int) -> str:
    return (
        f'{{"type":"trade-notice","data":{{"created_at":{ts_ms - 20},"account_id":"{account}",'
        f'"account_number":"ACC{account}","trade_id":"{12390213 + o}-{part}",'
        f'"order_id":"{12390213 + o}","symbol":"{SYMBOLS[o % 8]}","side":"buy",'
        f'"quantity":"{quantity}","price":"{150 + o % 97}.{o % 100:02d}",'
        f'"running_position":"{quantity * part}"}}}}'
    )


def _position(account: str, o: int) -> str:
    return (
        f'{{"type":"position-update","data":{{"account_id":"{account}",'
        f'"account_number":"ACC{account}","symbol":"{SYMBOLS[o % 8]}",'
        f'"quantity":"{o * 100}","average_cost":189.47}}}}'
    )


#: Share of order-update frames (the ones padded to reach the requested size).
ORDER_SHARE: Final = 0.5


def _payload(account: str, n: int, ts_ms: int, text: str) -> str:
    """Frame ``n``: blocks of ten frames hold two orders' lives (new, partial fill, fill,
    filled, fill; new, filled, fill) and two position updates, so fills match orders."""
    block, step = divmod(n, 10)
    o = 2 * block + (step >= 5)
    if step == 0 or step == 5:
        return _order(account, o, 1, "new", 0, ts_ms, text)
    if step == 1:
        return _order(account, o, 2, "partially-filled", 50, ts_ms, text)
    if step == 2:
        return _fill(account, o, 1, 50, ts_ms)
    if step == 3:
        return _order(account, o, 3, "filled", 100, ts_ms, text)
    if step == 4:
        return _fill(account, o, 2, 50, ts_ms)
    if step == 6:
        return _order(account, o, 2, "filled", 100, ts_ms, text)
    if step == 7:
        return _fill(account, o, 1, 100, ts_ms)
    return _position(account, o)


def _envelope(ts_ms: int, sequence: int, payload: str) -> str:
    return f'{{"timestamp":{ts_ms},"sequence":{sequence},"payload":{payload}}}'


def _padding(account: str, frame_bytes: int) -> str:
    """The ``text`` field that brings the average frame to about ``frame_bytes``."""
    sample = [_envelope(OPEN_MS, n + 1, _payload(account, n, OPEN_MS, "")) for n in range(100)]
    mean = sum(len(s) for s in sample) / len(sample)
    extra = round((frame_bytes - mean) / ORDER_SHARE) - len(',"text":""')
    return f',"text":"{"x" * extra}"' if extra > 0 else ""


def frame_texts(account: str, count: int, frame_bytes: int = 400) -> list[str]:
    """``count`` sequenced frames (sequences 1..count) of ``account``, timestamps on DAY."""
    step_ms = max(1, min(80, SESSION_MS // max(1, count)))
    text = _padding(account, frame_bytes)
    return [
        _envelope(OPEN_MS + n * step_ms, n + 1, _payload(account, n, OPEN_MS + n * step_ms, text))
        for n in range(count)
    ]


def ack_text(account: str) -> str:
    return (
        f'{{"timestamp":{OPEN_MS - 2000},"payload":{{"type":"subscribe-activity-ack",'
        f'"account_id":"{account}","success":true,"details":"Subscribed successfully"}}}}'
    )


def replay_complete_text() -> str:
    return f'{{"timestamp":{OPEN_MS - 1000},"payload":{{"type":"replay-complete"}}}}'


_SHORT: Final = struct.Struct(">BB")
_MEDIUM: Final = struct.Struct(">BBH")
_LONG: Final = struct.Struct(">BBQ")


def encode_server_frame(text: str, opcode: int = 0x1) -> bytes:
    """One complete, unmasked (server to client) WebSocket frame holding ``text``."""
    data = text.encode("utf-8")
    size = len(data)
    head = 0x80 | opcode
    if size < 126:
        return _SHORT.pack(head, size) + data
    if size < 65536:
        return _MEDIUM.pack(head, 126, size) + data
    return _LONG.pack(head, 127, size) + data
