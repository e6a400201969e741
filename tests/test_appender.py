"""The writer's database half: batches, chain heads, and retries that never duplicate."""

import datetime as dt

from sqlalchemy import Engine, select

from recorder.appender import Appender
from recorder.chain import GENESIS_HASH, verify_chain
from recorder.records import FrameRecord, LogRecord
from recorder.schema import connection_log
from tests.support.frames import UNPARSED, frame
from tests.support.stores import frames as stored


def test_batches_chain_per_account_and_survive_a_restart(engine: Engine) -> None:
    appender = Appender(engine)
    appender.append([frame("A", 1), frame("B", 1), frame("A", 2)],
                    [LogRecord("s-1", "A", 1, "opened")])  # fmt: skip
    # A new appender (a restarted recorder) continues the chains from the store.
    Appender(engine).append([frame("A", 3), frame("B", 2)])
    for account, count in (("A", 3), ("B", 2)):
        rows = stored(engine, account)
        assert len(rows) == count
        broken, head, checked = verify_chain(rows, GENESIS_HASH)
        assert broken is None
        assert checked == count
        assert head == rows[-1]["chain_hash"]
    with engine.connect() as conn:
        assert conn.execute(select(connection_log.c.event)).scalars().all() == ["opened"]


def test_resync_recognises_a_committed_batch(engine: Engine) -> None:
    appender = Appender(engine)
    batch = [frame("A", 1), frame("A", 2)]
    appender.chain(batch)  # what append() does before its transaction: heads loaded
    Appender(engine).append(batch)  # committed by "someone" whose acknowledgement we lost
    assert appender.resync(batch) is True
    appender.append([frame("A", 3)])
    assert verify_chain(stored(engine, "A"))[0] is None


def test_resync_reports_an_uncommitted_batch(engine: Engine) -> None:
    appender = Appender(engine)
    appender.append([frame("A", 1)])
    assert appender.resync([frame("A", 2)]) is False
    appender.append([frame("A", 2)])
    rows = stored(engine, "A")
    assert [r["sequence"] for r in rows] == [1, 2]
    assert verify_chain(rows)[0] is None


def test_a_batch_larger_than_one_insert_statement_is_stored_in_order(engine: Engine) -> None:
    # SQLite inserts SQLITE_ROWS_PER_INSERT rows per statement, then the rest: cover both,
    # with two days, replayed and live rows, and a frame without sequence or timestamp.
    from recorder.appender import SQLITE_ROWS_PER_INSERT

    count = 2 * SQLITE_ROWS_PER_INSERT + 7
    batch = []
    for n in range(count):
        f = frame("A" if n % 3 else "B", n)
        day = dt.date(2024, 6, 10) if n < count // 2 else dt.date(2024, 6, 11)
        f = f._replace(trading_day=day, replayed=n % 2 == 0)
        if n == 5:
            f = f._replace(**UNPARSED, raw="not json")
        batch.append(f)
    Appender(engine).append(batch)
    for account in ("A", "B"):
        rows = stored(engine, account)
        expected = [f for f in batch if f.account_id == account]
        assert [tuple(r[c] for c in FrameRecord._fields) for r in rows] == expected
        assert verify_chain(rows)[0] is None
