"""Reading the store as Arrow: types, order, filters, and the SQLite null-inference trap."""

import datetime as dt

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from queries.contract import EVENTS_SCHEMA
from queries.errors import QueryError
from queries.source import StoreReader, parse_day
from recorder.appender import Appender
from recorder.records import LogRecord
from tests.support.frames import DAY, UNPARSED, frame


def test_reads_every_row_in_id_order_with_the_store_schema(engine: Engine) -> None:
    appender = Appender(engine)
    # Leading rows with null server_ts/sequence/msg_type: the SQLite ADBC inference trap.
    appender.append([frame("0042", n, raw=f"frame {n} é", **({} if n >= 3000 else UNPARSED))
                     for n in range(5000)])  # fmt: skip
    appender.append([frame("7", 1), frame("0042", 9, day=DAY + dt.timedelta(days=1))])
    with StoreReader(engine.url.render_as_string(hide_password=False)) as reader:
        batches = list(reader.events(day=DAY, accounts=["0042"], batch_rows=1024))
        table = pa.Table.from_batches(batches, schema=EVENTS_SCHEMA)
        assert table.num_rows == 5000
        ids = table.column("id").to_pylist()
        assert ids == sorted(ids)
        assert table.column("server_ts_ms").null_count == 3000
        assert table.column("msg_type").to_pylist()[-1] == "order-update"
        assert table.column("raw").to_pylist()[:2] == ["frame 0 é", "frame 1 é"]
        assert table.column("replayed").to_pylist()[:2] == [True, False]
        assert set(table.column("trading_day").to_pylist()) == {DAY}
        assert table.column("account_id").unique().to_pylist() == ["0042"]
        assert reader.count_events(day=DAY) == 5001
        assert reader.accounts(day=DAY) == ["0042", "7"]
        assert reader.accounts() == ["0042", "7"]
        narrow = list(reader.events(day=DAY, accounts=["7"], columns=["id", "raw"]))
        assert narrow[0].schema.names == ["id", "raw"]
        assert reader.chain_anchor("0042", ids[0]) == "0" * 64
        assert reader.chain_anchor("0042", ids[-1] + 1) == table.column("chain_hash")[-1].as_py()
        assert list(reader.events(day=DAY, accounts=[])) == []


def test_connection_log_window(engine: Engine) -> None:
    Appender(engine).append([], [LogRecord("s", "1", t, "opened") for t in (5, 10, 15)])
    with StoreReader(engine.url.render_as_string(hide_password=False)) as reader:
        rows = pa.Table.from_batches(list(reader.connection_log(start_ns=10, end_ns=16)))
        assert rows.column("at_ns").to_pylist() == [10, 15]


def test_missing_database_and_missing_schema(tmp_path: object) -> None:
    with pytest.raises(QueryError, match="database file not found"):
        StoreReader(f"sqlite:///{tmp_path}/absent.db")
    empty = f"{tmp_path}/empty.db"
    open(empty, "w").close()
    with pytest.raises(QueryError, match="no recorder schema"):
        StoreReader(f"sqlite:///{empty}")


@pytest.mark.parametrize("text", ["2024-13-01", "2024-02-30", "24-06-10", "yesterday", ""])
def test_bad_days(text: str) -> None:
    with pytest.raises(QueryError, match="date"):
        parse_day(text)
    assert parse_day("2024-02-29") == dt.date(2024, 2, 29)
