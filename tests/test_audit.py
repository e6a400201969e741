"""The audit of the recorded faulty day (tests/support/simday.py), every number by hand."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from queries.audit import COLUMNS, audit, render_audit
from queries.duck import open_store
from tests.support.simday import AFTER_THE_DAY_NS, DAY, A, B, record

Z = "2024-06-10T"


@pytest.fixture
def day_url(engine: Engine) -> str:
    record(engine)
    return engine.url.render_as_string(hide_password=False)


def run(url: str, payload: bool = False) -> dict[str, dict[str, Any]]:
    columns = None if payload else COLUMNS
    with open_store(url, day=DAY, payload=payload, columns=columns, now_ns=AFTER_THE_DAY_NS) as ws:
        report = audit(ws)
    assert report["trading_day"] == DAY
    assert report["timezone"] == "America/New_York"
    assert "CHAIN BROKEN" not in render_audit(report)
    return {a["account_id"]: a for a in report["accounts"]}


def test_frame_counts(day_url: str) -> None:
    a = run(day_url)[A]
    # A-s1 11 frames, A-s2 1, A-s3 20 (8 replayed), A-s4 25 (16 replayed).
    assert a["frames"] == 57
    assert (a["replayed_frames"], a["live_frames"], a["unparseable_frames"]) == (24, 33, 1)
    assert a["live_sequenced_frames"] == 15  # 7 in A-s1, 8 in A-s3
    assert a["by_type"] == {
        "error-notice": 1, "heartbeat": 9, "order-update": 20, "position-update": 10,
        "replay-complete": 3, "subscribe-activity-ack": 4, "trade-notice": 9,
    }  # fmt: skip
    b = run(day_url)[B]
    assert (b["frames"], b["replayed_frames"], b["live_frames"], b["unparseable_frames"]) == (
        14, 4, 10, 0,
    )  # fmt: skip
    assert b["by_type"] == {
        "heartbeat": 2, "order-update": 4, "position-update": 2, "replay-complete": 2,
        "subscribe-activity-ack": 2, "trade-notice": 2,
    }  # fmt: skip


def test_sessions_rejections_notices(day_url: str) -> None:
    a = run(day_url)[A]
    assert (a["sessions"], a["unclean_sessions"], a["rejected_subscribes"]) == (4, 1, 1)
    assert a["error_notices"] == [
        {"at": Z + "13:35:00.000000000Z", "details": "Auth expired; please reconnect"}
    ]
    listed = [(s["session_id"], s["clean"], s["frames"], s["close_detail"])
              for s in a["session_list"]]  # fmt: skip
    assert listed == [
        ("A-s1", True, 11, "1000: Auth expired; please reconnect"),
        ("A-s2", True, 1, "subscribe rejected"),
        ("A-s3", False, 20, None),
        ("A-s4", True, 25, "shutdown"),
    ]
    assert a["session_list"][1]["subscribed"] is None
    assert a["session_list"][1]["subscribe_rejections"] == 1
    b = run(day_url)[B]
    assert (b["sessions"], b["unclean_sessions"], b["rejected_subscribes"]) == (2, 0, 0)
    assert b["error_notices"] == []


def test_latency_over_live_frames_only(day_url: str) -> None:
    a = run(day_url)[A]
    # 32 live frames with a server timestamp (the unparseable one has none): two of 1 ms,
    # 27 of 2 ms, then 3, 5 and 25 ms. Nearest rank: p50 = 16th = 2, p99 = 32nd = 25.
    # Replayed frames (minutes late) are excluded.
    assert a["latency_ms"] == {"p50": 2.0, "p99": 25.0, "max": 25.0, "frames": 32}
    assert run(day_url)[B]["latency_ms"] == {"p50": 2.0, "p99": 2.0, "max": 2.0, "frames": 10}


def test_first_last_frame_and_chain(day_url: str) -> None:
    accounts = run(day_url)
    assert accounts[A]["first_frame_at"] == Z + "13:30:00.200000000Z"
    assert accounts[A]["last_frame_at"] == Z + "13:59:00.000000000Z"
    assert accounts[B]["first_frame_at"] == Z + "13:30:00.100000000Z"
    assert accounts[B]["last_frame_at"] == Z + "13:34:00.000000000Z"
    for account, rows in ((A, 57), (B, 14)):
        assert accounts[account]["chain_ok"] is True
        assert accounts[account]["chain_rows"] == rows
        assert accounts[account]["chain_problems"] == []


def test_same_report_with_payload_loaded(day_url: str) -> None:
    assert run(day_url, payload=True) == run(day_url, payload=False)


def test_an_account_without_frames(day_url: str) -> None:
    with open_store(day_url, day=DAY, configured=["777"], payload=False) as ws:
        silent = {a["account_id"]: a for a in audit(ws)["accounts"]}["777"]
    assert (silent["frames"], silent["sessions"], silent["chain_ok"]) == (0, 0, True)
    assert silent["latency_ms"] == {"p50": None, "p99": None, "max": None, "frames": 0}
    assert silent["first_frame_at"] is None
