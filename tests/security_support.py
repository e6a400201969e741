"""Shared by the security tests: the command lines as processes, a recorded frame."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from recorder.records import FrameRecord

ROOT = Path(__file__).resolve().parent.parent
SECRET = "client-secret-7e3a9d1f"
A, B = "100000", "0042"
DAY = "2024-06-10"
NOON_NS = 1_718_035_200 * 10**9  # 2024-06-10T12:00:00-04:00


def cli_env() -> dict[str, str]:
    """The test's environment without any STUDIO_* setting (each test says what it uses)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STUDIO_")}


def run(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` (``recorder`` or ``queries``), as a real process."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env=cli_env() if env is None else env, check=False,
    )  # fmt: skip


def frame(account: str, n: int) -> FrameRecord:
    """Fill ``n`` of ``account`` on DAY, as the recorder stores it (sequence ``n``)."""
    raw = json.dumps(
        {"timestamp": NOON_NS // 10**6 + n, "sequence": n,
         "payload": {"type": "trade-notice", "data": {"account_id": account, "trade_id": f"T{n}",
                     "order_id": "O1", "symbol": "AAPL", "side": "buy", "quantity": "1",
                     "price": "10.00", "running_position": str(n)}}}
    )  # fmt: skip
    return FrameRecord(
        account, f"s-{account}", NOON_NS + n * 10**6, NOON_NS // 10**6 + n, n,
        "trade-notice", dt.date.fromisoformat(DAY), False, "text", raw,
    )  # fmt: skip
