"""The writer holds and retries a batch while the store is unavailable; nothing lost or doubled."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import trio
from sqlalchemy import func, select

from recorder import migrate
from recorder.appender import Appender
from recorder.chain import verify_chain
from recorder.recordqueue import RecordQueue
from recorder.records import LogRecord
from recorder.schema import connection_log, events
from recorder.state import WriterState
from recorder.store import open_engine
from recorder.writer import Writer
from tests.support.frames import frame


async def test_batches_respect_max_rows_and_drain_on_close(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/w.db")
    migrate.upgrade(engine)
    state = WriterState()
    send = RecordQueue(1000)
    writer = Writer(Appender(engine), send, state, max_rows=10, max_delay_s=0.05)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            async with send:
                for n in range(95):
                    await send.send(frame("100000", n))
                await send.send(LogRecord("s-1", "100000", 1, "opened"))
        # closing the queue drained everything
    assert state.rows_written == 95
    assert state.log_rows_written == 1
    assert state.batches >= 10  # max_rows=10 → at least ten transactions
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(events).order_by(events.c.id))]
    assert [r["sequence"] for r in rows] == list(range(95))
    assert verify_chain(rows)[0] is None


async def test_retries_while_sqlite_is_locked_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = open_engine(f"sqlite:///{path}", sqlite_busy_timeout_ms=50)
    migrate.upgrade(engine)
    # Another process-like connection holds an exclusive lock for a while.
    blocker = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(1.5)
        blocker.execute("COMMIT")
        blocker.close()
        released.set()

    state = WriterState()
    send = RecordQueue(1000)
    writer = Writer(Appender(engine), send, state, max_rows=100, max_delay_s=0.01)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            nursery.start_soon(trio.to_thread.run_sync, release_later)
            async with send:
                for n in range(50):
                    await send.send(frame("100000", n))
                while state.retries == 0:
                    await trio.sleep(0.05)
                assert state.failing is not None
                assert "locked" in state.failing
                await send.send(LogRecord("s-1", "100000", 2, "closed", "shutdown"))
    assert released.is_set()
    assert state.failing is None  # recovered
    assert state.retries >= 1
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(events)).scalar_one()
        logs = conn.execute(select(func.count()).select_from(connection_log)).scalar_one()
        rows = [dict(r._mapping) for r in conn.execute(select(events).order_by(events.c.id))]
    assert count == 50  # nothing lost, nothing written twice
    assert logs == 1
    assert [r["sequence"] for r in rows] == list(range(50))
    assert verify_chain(rows)[0] is None


async def test_a_batch_that_waited_through_a_commit_goes_at_once(
    tmp_path: Path, recorder_clock: trio.abc.Clock
) -> None:
    """The batch delay runs from the first record's receipt: a fresh frame waits for company
    (up to max_delay_s), one that queued while the store was busy is written at once."""
    engine = open_engine(f"sqlite:///{tmp_path}/w.db")
    migrate.upgrade(engine)
    state = WriterState()
    send = RecordQueue(1000)
    committed_at: list[float] = []
    writer = Writer(Appender(engine), send, state, max_rows=10, max_delay_s=300.0,
                    on_batch=lambda _s: committed_at.append(trio.current_time()))  # fmt: skip
    with trio.fail_after(3000):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            async with send:
                start = trio.current_time()
                await send.send(frame("100000", 1, at_ns=time.time_ns()))
                while not committed_at:
                    await trio.sleep(1)
                assert committed_at[0] - start >= 250.0  # waited for company
                await send.send(frame("100000", 2, at_ns=time.time_ns() - 400 * 10**9))
                while len(committed_at) < 2:
                    await trio.sleep(0.001)
                assert committed_at[1] - committed_at[0] < 100.0  # it waited 400 s already
    assert state.rows_written == 2
