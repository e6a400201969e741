"""``studio-query trace --order-id``: every frame of one order in receipt order, once per
sequence with its copies counted, and what the order came to — from a store or its export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from queries.export import export_day
from recorder.appender import Appender
from tests.support.cli import run
from tests.support.frames import frame
from tests.support.simday import DAY, A, record


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _trace(*args: object) -> dict[str, Any]:
    result = run("queries", "trace", *args, "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_an_order_with_a_lost_fill(engine: Engine, tmp_path: Path) -> None:
    """O2 of the simulated day: its fill T4 (sequence 12) was never received."""
    record(engine)
    report = _trace("--db", _url(engine), "--order-id", "O2")
    frames = report["frames"]
    assert [(f["sequence"], f["msg_type"], f["status"]) for f in frames] == [
        (8, "order-update", "new"),
        (9, "order-update", "partially-filled"),
        (10, "trade-notice", None),
        (14, "order-update", "filled"),
    ]
    assert [f["received_at"] for f in frames] == sorted(f["received_at"] for f in frames)
    # seq 8 was received live, then replayed by two later sessions
    assert (frames[0]["copies"], frames[0]["live_copies"], frames[0]["replayed_copies"]) == (
        3,
        1,
        2,
    )
    assert len(frames[0]["ids"]) == 3
    assert frames[2]["trade_id"] == "T3"
    assert (frames[2]["quantity"], frames[2]["price"]) == ("10", "420.1")
    assert report["accounts"] == [A]
    final = report["final"]
    assert (final["status"], final["filled_quantity"], final["fills"]) == ("filled", "30", 1)
    assert (final["fills_quantity"], final["fills_match"]) == ("10", False)
    text = run("queries", "trace", "--db", _url(engine), "--order-id", "O2").stdout
    assert text.startswith("Order O2: 4 frames\n")
    assert text.rstrip().endswith("1 fills for 10: THE FILLS DO NOT ADD UP")

    export_day(_url(engine), DAY, tmp_path / "export")
    exported = _trace("--from-export", tmp_path / "export", "--order-id", "O2",
                      "--from", DAY, "--to", DAY)  # fmt: skip
    assert {**exported, "source": None, "from": None, "to": None} == {**report, "source": None}


def test_an_order_id_is_matched_whole(engine: Engine) -> None:
    """X1's trace holds none of X12's frames, though its id is a prefix of X12's."""
    frames = [
        frame(A, n, msg_type="order-update", data={"order_id": order, "status": "new"})
        for n, order in enumerate(["X1", "X12", "X1", "X123"], start=1)
    ]
    Appender(engine).append(frames, [])
    report = _trace("--db", _url(engine), "--order-id", "X1")
    assert [f["sequence"] for f in report["frames"]] == [1, 3]
    assert _trace("--db", _url(engine), "--order-id", "nothing")["frames"] == []


def test_bad_input_is_one_line(sqlite_url: str) -> None:
    from tests.support.stores import migrated

    migrated(sqlite_url)
    for args, code, message in (
        (("--order-id", " "), 2, "an order id cannot be blank"),
        (("--order-id", "O1", "--from", "2024-06-10"), 2, "give both --from and --to"),
        (("--order-id", "O1", "--account", "nobody"), 1, "unknown account 'nobody'"),
    ):
        result = run("queries", "trace", "--db", sqlite_url, *args)
        assert result.returncode == code, result.stderr
        assert message in result.stderr
        assert result.stderr.count("\n") == 1
