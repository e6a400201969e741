"""Ad-hoc SQL over the views, and what the views hold on the recorded faulty day."""

from __future__ import annotations

import base64
import json
from decimal import Decimal as D

import pytest
from sqlalchemy import Engine

from queries.duck import open_store
from queries.errors import QueryError
from queries.sqlcmd import render_csv, render_json, render_table, run_sql
from queries.views import VIEWS
from recorder.appender import Appender
from tests.support.frames import frame
from tests.support.simday import DAY, A, ny, record


@pytest.fixture
def day_url(engine: Engine) -> str:
    record(engine)
    return engine.url.render_as_string(hide_password=False)


def rows(url: str, sql: str) -> list[dict[str, object]]:
    with open_store(url, day=DAY) as ws:
        return run_sql(ws, sql).to_pylist()


def test_every_view_and_its_rows(day_url: str) -> None:
    counts = rows(day_url, " UNION ALL ".join(
        f"SELECT '{name}' AS view, count(*) AS n FROM {name}" for name in VIEWS
    ))  # fmt: skip
    # 57 + 14 frames; 16 + 4 distinct sequences; orders O1-O3, P1; fills T1, T2, T3, T5, U1;
    # last positions AAPL, MSFT, SPY; log rows 14 (A) + 8 (B).
    assert {r["view"]: r["n"] for r in counts} == {
        "events": 71, "activity": 20, "orders": 4, "fills": 5, "positions": 3,
        "connection_log": 22,
    }  # fmt: skip


def test_activity_keeps_the_first_received_copy(day_url: str) -> None:
    sql = (
        "SELECT sequence, session_id, replayed FROM activity "
        "WHERE account_id = '100000' AND sequence IN (1, 6) ORDER BY sequence"
    )
    found = rows(day_url, sql)
    assert found == [
        {"sequence": 1, "session_id": "A-s1", "replayed": False},
        {"sequence": 6, "session_id": "A-s3", "replayed": True},  # missed live, replayed
    ]


def test_payload_columns_are_exact_decimals(day_url: str) -> None:
    fill = rows(day_url, "SELECT quantity, price, notional, signed_quantity, typeof(price) AS t "
                         "FROM fills WHERE trade_id = 'T3'")  # fmt: skip
    assert fill == [{"quantity": D(10), "price": D("420.10"), "notional": D("4201.00"),
                     "signed_quantity": D(-10), "t": "DECIMAL(38,9)"}]  # fmt: skip
    # average_cost 123456789.123456789 has more digits than a double: kept exactly.
    assert rows(day_url, "SELECT average_cost FROM positions WHERE account_id = '0042'") == [
        {"average_cost": D("123456789.123456789")}
    ]
    o1 = "SELECT average_price, status, version FROM orders WHERE order_id = 'O1'"
    assert rows(day_url, o1) == [{"average_price": D("189.488"), "status": "filled", "version": 3}]


def test_outputs(day_url: str) -> None:
    sql = (
        "SELECT trade_id, received_at, quantity FROM fills "
        "WHERE trade_id IN ('T1', 'U1') ORDER BY trade_id"
    )
    with open_store(day_url, day=DAY) as ws:
        result = run_sql(ws, sql)
    assert json.loads(render_json(result)) == [
        {"trade_id": "T1", "received_at": "2024-06-10T13:31:00.112000000Z", "quantity": "40"},
        {"trade_id": "U1", "received_at": "2024-06-10T13:31:00.112000000Z", "quantity": "10"},
    ]
    assert render_csv(result).splitlines() == [
        "trade_id,received_at,quantity",
        "T1,2024-06-10T13:31:00.112000000Z,40",
        "U1,2024-06-10T13:31:00.112000000Z,10",
    ]
    text = render_table(result)
    assert text.splitlines()[0].split() == ["trade_id", "received_at", "quantity"]
    assert text.endswith("(2 rows)")


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELEC 1", "SQL error: Parser Error"),
        ("SELECT * FROM no_such_view", "SQL error: Catalog Error"),
        ("SELECT * FROM read_csv('/etc/hostname')", "SQL error"),
        ("COPY events TO 'leak.csv'", "SQL error"),
        ("   ", "empty SQL"),
    ],
)
def test_bad_sql(day_url: str, sql: str, fragment: str) -> None:
    with open_store(day_url, day=DAY) as ws, pytest.raises(QueryError, match=fragment):
        run_sql(ws, sql)


def test_whole_store_without_a_day(day_url: str) -> None:
    with open_store(day_url, day=None) as ws:
        assert run_sql(ws, "SELECT count(*) AS n FROM events").to_pylist() == [{"n": 71}]


def test_base64_frames_are_decoded_for_payload_columns(engine: Engine) -> None:
    text = ('{"timestamp":1718026260000,"sequence":SEQ,"payload":{"type":"position-update",'
            '"data":{"symbol":"IBM","quantity":"QTY","average_cost":1.25}}}')  # fmt: skip

    def raw(seq: int, kind: str, qty: str) -> str:
        body = text.replace("SEQ", str(seq)).replace("QTY", qty)
        return base64.b64encode(body.encode()).decode() if kind != "text" else body

    Appender(engine).append([
        frame("7", seq, at_ns=ny(9, 31, seq), session_id="s", server_ts_ms=1718026260000,
              msg_type="position-update", replayed=False, raw_kind=kind, raw=raw(seq, kind, qty))
        for seq, kind, qty in ((1, "binary", "3"), (2, "text-base64", "4"),
                               (3, "binary", "not-a-number"))
    ])  # fmt: skip
    url = engine.url.render_as_string(hide_password=False)
    found = rows(url, "SELECT sequence, raw_kind, quantity, average_cost FROM activity "
                      "ORDER BY sequence")  # fmt: skip
    assert found == [
        {"sequence": 1, "raw_kind": "binary", "quantity": D(3), "average_cost": D("1.25")},
        {"sequence": 2, "raw_kind": "text-base64", "quantity": D(4), "average_cost": D("1.25")},
        {"sequence": 3, "raw_kind": "binary", "quantity": None, "average_cost": D("1.25")},
    ]


def test_unparseable_frames_have_null_payload_columns(day_url: str) -> None:
    assert rows(day_url, f"SELECT count(*) AS n FROM events WHERE account_id = '{A}' "
                         "AND msg_type IS NULL") == [{"n": 1}]  # fmt: skip
