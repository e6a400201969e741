"""Reconciliation of the recorded faulty day (tests/support/simday.py), every number by hand."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from queries.duck import open_store
from queries.errors import QueryError
from queries.positionsfile import read_positions
from queries.reconcile import reconcile, render_reconcile
from queries.render import to_json
from tests.support.simday import DAY, A, B, record


@pytest.fixture
def day_url(engine: Engine) -> str:
    record(engine)
    return engine.url.render_as_string(hide_password=False)


def run(url: str, positions: Path | None = None) -> dict[str, Any]:
    with open_store(url, day=DAY) as ws:
        report = reconcile(ws, positions_file=positions)
    assert report["trading_day"] == DAY
    render_reconcile(report)
    return report


def accounts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["account_id"]: a for a in report["accounts"]}


def symbols(account: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["symbol"]: s for s in account["symbols"]}


def test_symbols_of_account_100000(day_url: str) -> None:
    s = symbols(accounts(run(day_url))[A])
    assert sorted(s) == ["AAPL", "MSFT", "NVDA", "TSLA"]
    # AAPL: T1 40 @ 189.47 (live) + T2 60 @ 189.50 (missed live, healed by replay):
    # 7578.80 + 11370.00 = 18948.80; VWAP 189.488. Start 10, last position-update 110.
    assert s["AAPL"] == {
        "symbol": "AAPL", "bought": D(100), "sold": D(0), "net": D(100),
        "notional_bought": D("18948.80"), "notional_sold": D(0),
        "vwap_bought": D("189.488"), "vwap_sold": None, "fills": 2,
        "start_position": D(10), "last_position": D(110), "consistent": True,
    }  # fmt: skip
    # MSFT: only T3 (10 @ 420.10) arrived; T4 (20) was lost: 0 - 10 != -30.
    assert s["MSFT"] == {
        "symbol": "MSFT", "bought": D(0), "sold": D(10), "net": D(-10),
        "notional_bought": D(0), "notional_sold": D("4201.00"),
        "vwap_bought": None, "vwap_sold": D("420.1"), "fills": 1,
        "start_position": D(0), "last_position": D(-30), "consistent": False,
    }  # fmt: skip
    # NVDA: an order canceled unfilled, no position-update; TSLA: a fill of an unknown order.
    assert (s["NVDA"]["net"], s["NVDA"]["start_position"], s["NVDA"]["last_position"]) == (
        D(0), D(0), None,
    )  # fmt: skip
    assert s["NVDA"]["consistent"] is False
    assert (s["TSLA"]["bought"], s["TSLA"]["notional_bought"], s["TSLA"]["vwap_bought"]) == (
        D(5), D("900.00"), D(180),
    )  # fmt: skip
    assert (s["TSLA"]["start_position"], s["TSLA"]["last_position"]) == (D(0), None)


def test_orders_and_breaks_of_account_100000(day_url: str) -> None:
    a = accounts(run(day_url))[A]
    assert a["orders"] == {"canceled": 1, "filled": 2}
    assert a["order_count"] == 3
    found = [(b["kind"], b["symbol"], b["order_id"]) for b in a["breaks"]]
    assert found == [
        ("order-fill-mismatch", "MSFT", "O2"),  # final filled 30, fills sum to 10
        ("unknown-order", "TSLA", "ORPHAN-9"),
        ("position-not-explained", "MSFT", None),
        ("no-position-update", "NVDA", None),
        ("no-position-update", "TSLA", None),
    ]
    mismatch = a["breaks"][0]
    assert (mismatch["order_filled_quantity"], mismatch["fills_quantity"]) == (D(30), D(10))
    assert "final filled_quantity 30 but its 1 fill(s) sum to 10" in mismatch["detail"]
    unexplained = a["breaks"][2]
    assert (unexplained["expected"], unexplained["actual"]) == (D(-10), D(-30))
    assert "unexplained -20" in unexplained["detail"]


def test_account_0042_is_consistent(day_url: str) -> None:
    b = accounts(run(day_url))[B]
    assert b["symbols"] == [{
        "symbol": "SPY", "bought": D(10), "sold": D(0), "net": D(10),
        "notional_bought": D("5302.50"), "notional_sold": D(0), "vwap_bought": D("530.25"),
        "vwap_sold": None, "fills": 1, "start_position": D(-5), "last_position": D(5),
        "consistent": True,
    }]  # fmt: skip
    assert b["orders"] == {"filled": 1}
    assert b["breaks"] == []


def test_decimals_render_as_exact_strings(day_url: str) -> None:
    text = to_json(run(day_url))
    assert '"notional_bought": "18948.8"' in text
    assert '"vwap_bought": "189.488"' in text
    assert '"start_position": "-5"' in text


def test_broker_positions_file(day_url: str, tmp_path: Path) -> None:
    broker = tmp_path / "eod.csv"
    broker.write_text(
        "account_id,symbol,quantity\n"
        "100000,AAPL,110\n100000,MSFT,-30\n100000,NVDA,0\n"
        "0042,SPY,7\n0042,QQQ,100\n9999,IBM,1\n"
    )
    report = run(day_url, positions=broker)
    assert report["positions_file"] == {
        "path": str(broker), "rows": 6,
        "accounts_filtered_out": [], "accounts_unrecorded": ["9999"],
    }  # fmt: skip
    # The broker holds positions in an account we never recorded: the most serious break.
    unrecorded = accounts(report)["9999"]
    assert [x["kind"] for x in unrecorded["breaks"]] == ["account-not-recorded", "positions-file"]
    assert unrecorded["symbols"][0]["broker_quantity"] == D(1)
    a, b = accounts(report)[A], accounts(report)[B]
    # AAPL, MSFT (the broker agrees with the last position-update) and NVDA (0 = 0) match;
    # TSLA has no broker row (0) but the recorder computes 0 + 5 = 5.
    diffs = [(x["symbol"], x["broker_quantity"], x["recorded_quantity"])
             for x in a["breaks"] if x["kind"] == "positions-file"]  # fmt: skip
    assert diffs == [("TSLA", None, D(5))]
    diffs = [(x["symbol"], x["broker_quantity"], x["recorded_quantity"])
             for x in b["breaks"] if x["kind"] == "positions-file"]  # fmt: skip
    assert diffs == [("QQQ", D(100), None), ("SPY", D(7), D(5))]
    assert symbols(b)["SPY"]["broker_quantity"] == D(7)
    assert symbols(b)["QQQ"]["last_position"] is None


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "empty positions file"),
        ("account,symbol,quantity\n1,A,1\n", "line 1: header lacks account_id"),
        ("account_id,symbol,quantity\n1,A,ten\n", "line 2: quantity 'ten' is not a decimal"),
        ("account_id,symbol,quantity\n1,A,NaN\n", "line 2: quantity 'NaN' is not a finite"),
        ("account_id,symbol,quantity\n1,A,1\n1,A,2\n", "line 3: 1 A appears twice"),
        ("account_id,symbol,quantity\n1,A\n", "line 2: 2 fields, header has 3"),
        ("account_id,symbol,quantity\n,A,1\n", "line 2: empty account_id or symbol"),
        ('account_id,symbol,quantity\n1,"A,1\n', "not valid CSV"),
    ],
)
def test_malformed_positions_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "p.csv"
    path.write_text(content)
    with pytest.raises(QueryError, match=fragment):
        read_positions(path)


def test_positions_file_keeps_leading_zeros_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("\ufeffsymbol,quantity,account_id,note\nSPY, 7.50 ,0042,x\n\n")
    assert read_positions(path) == {("0042", "SPY"): D("7.50")}
    with pytest.raises(QueryError, match="positions file not found"):
        read_positions(tmp_path / "absent.csv")


def test_reconcile_needs_payloads(day_url: str) -> None:
    with (
        open_store(day_url, day=DAY, payload=False) as ws,
        pytest.raises(QueryError, match="payload"),
    ):
        reconcile(ws)
