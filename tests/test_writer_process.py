"""The writer in its own process, driven by a recorder in the test's process (real time).

The real-process faults (kill -9 of either process, SIGTERM) are in test_faults.py and
test_cli_recorder.py; here: the hand-over keeps every record and its order, the writer's
reports reach the recorder's state, signed checkpoints are made in the writer process
(which runs at a lower CPU priority than the reader), and a writer that fails stops the
recorder with its one line.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import psutil
import pytest
import trio
from sqlalchemy import Engine, text

from recorder.signing import write_new_key
from recorder.writermain import WRITER_NICE
from recorder.writerprocess import WriterFailed
from tests.support.cli import run
from tests.support.processes import writer_of
from tests.support.recording import start
from tests.support.stores import assert_no_loss_no_duplicates
from tests.support.waiting import wait_until

A, B = "100000", "100001"


@pytest.mark.timeout(120)
async def test_a_signed_recording_through_the_writer_process_is_whole_and_attested(
    engine: Engine, tmp_path: Path
) -> None:
    verifier = write_new_key(tmp_path / "signing-key")
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            running = await start(
                nursery, tmp_path, accounts=(A, B), engine=engine, writer="process",
                signing={"key_file": str(tmp_path / "signing-key"), "checkpoint_interval_s": 1},
            )  # fmt: skip
            state = running.recorder.state
            # The writer yields a busy CPU to the reader: it runs at a lower priority.
            writer = writer_of(os.getpid())
            assert writer is not None
            assert writer.nice() == min(19, psutil.Process().nice() + WRITER_NICE)
            await wait_until(lambda: min(len(running.frames(a)) for a in (A, B)) > 40)
            running.sim.drop_connections(A)  # a session ends: its closed row, a checkpoint
            await wait_until(lambda: running.events_of(A).count("subscribed") >= 2)
            await wait_until(lambda: len(running.frames(A)) > 100)
            # What the writer process committed reaches this process's state (status,
            # /healthz, /metrics read it), and the window drains as commits are reported.
            await wait_until(lambda: state.writer.rows_written >= 100 and state.queue_depth() < 50)
            assert state.writer.batches > 0
            assert state.writer.checkpoints > 0
            assert state.writer.last_commit_at is not None
            await running.stop()
    for account in (A, B):  # the day as the server sent it, up to where reading stopped
        stored = running.frames(account)
        last = max(r["sequence"] or 0 for r in stored)
        assert_no_loss_no_duplicates(stored, running.sim.day_log(account), upto=last)
    total = sum(len(running.frames(a)) for a in (A, B))
    assert state.writer.rows_written == total  # the final report came before the writer exited
    # Lifecycle rows keep their place among the frames: every session opens, subscribes and
    # closes in that order, and its closed row comes after its last frame.
    for account in (A, B):
        frames, log = running.frames(account), running.log(account)
        for session in dict.fromkeys(r["session_id"] for r in log):
            events = [r["event"] for r in log if r["session_id"] == session]
            assert events[:2] == ["opened", "subscribed"]
            assert events[-1] == "closed"
            closed_at = next(r["at_ns"] for r in log if r["session_id"] == session
                             and r["event"] == "closed")  # fmt: skip
            mine = [f["received_at_ns"] for f in frames if f["session_id"] == session]
            assert max(mine) <= closed_at
    url = engine.url.render_as_string(False)
    verify = run("queries", "verify", "--db", url, "--public-key", verifier, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    for account in json.loads(verify.stdout)["accounts"]:
        assert account["attested"] is True
        assert account["unattested_rows"] == 0


@pytest.mark.timeout(120)
async def test_a_writer_that_fails_stops_the_recorder_with_its_one_line(
    engine: Engine, tmp_path: Path
) -> None:
    """Not a store outage (retried) but a store the writer cannot write at all: the writer
    process reports it and exits 1, and the recorder stops with that line."""
    failed: list[BaseException] = []
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            running = await start(nursery, tmp_path, accounts=(A,), engine=engine,
                                  writer="process", failed=failed)  # fmt: skip
            await wait_until(lambda: len(running.frames(A)) > 10)
            with engine.begin() as conn:  # what no retry can mend
                conn.execute(text("ALTER TABLE events RENAME TO events_gone"))
            with trio.fail_after(30):
                await running.recorder_done.wait()
            running.sim_scope.cancel()
    (error,) = failed
    assert isinstance(error, WriterFailed)
    assert str(error).startswith("the writer failed: ")
    assert "events" in str(error)
    assert str(error).endswith(
        "; stopping the recorder (frames not yet committed come back with the day's replay "
        "on the next start)"
    )


@pytest.mark.timeout(120)
async def test_a_writer_killed_while_the_queue_is_full_stops_the_recorder_at_once(
    tmp_path: Path,
) -> None:
    """The store is locked, so the writer holds its window and the queue fills; sessions wait
    for room. Killed then, the writer takes nobody's records any more: the recorder must not
    wait for room (its sessions recording their closed rows) but stop with the writer's line."""
    failed: list[BaseException] = []
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            running = await start(nursery, tmp_path, accounts=(A,), writer="process",
                                  queue_max_frames=20, failed=failed)  # fmt: skip
            state = running.recorder.state
            await wait_until(lambda: state.writer.rows_written > 0)
            locker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # every write fails now, and is retried
            try:
                await wait_until(lambda: state.queue_depth() == 20 and state.writer.retries > 0)
                writer = writer_of(os.getpid())
                assert writer is not None
                writer.kill()
                with trio.fail_after(10):  # at once, not after a shutdown grace per session
                    await running.recorder_done.wait()
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            running.sim_scope.cancel()
    (error,) = failed
    assert isinstance(error, WriterFailed)
    assert str(error).startswith("the writer process ended (killed by SIGKILL)")
