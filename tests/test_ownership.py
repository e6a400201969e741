"""One writer per account: PostgreSQL advisory locks, chains that never fork, SQLite's file lock."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio
import trio.testing
from sqlalchemy import select

from recorder import migrate
from recorder.appender import Appender
from recorder.chain import verify_chain
from recorder.records import FrameRecord
from recorder.schema import connection_log, events
from recorder.simulator import SimConfig, Simulator
from recorder.store import open_engine

from .harness import SECRET, start, wait_until

A = "100000"


def rows_of(engine: object, account: str) -> list[dict[str, object]]:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        query = select(events).where(events.c.account_id == account).order_by(events.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


@pytest.mark.postgres
def test_two_appenders_on_one_account_extend_one_linear_chain(pg_url: str) -> None:
    engine = open_engine(pg_url)
    migrate.upgrade(engine)
    first, second = Appender(engine), Appender(engine)
    first.head(A)
    second.head(A)  # both start from the same (genesis) head: a fork unless serialised

    def write(appender: Appender, tag: str) -> None:
        for batch in range(20):
            frames = [
                FrameRecord(
                    A,
                    tag,
                    n,
                    n,
                    n,
                    "order-update",
                    dt.date(2024, 6, 10),
                    False,
                    "text",
                    f"{tag}-{batch}-{n}",
                )
                for n in range(25)
            ]
            appender.append(frames)

    threads = [
        threading.Thread(target=write, args=(a, t)) for a, t in ((first, "x"), (second, "y"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    rows = rows_of(engine, A)
    assert len(rows) == 1000
    assert verify_chain(rows)[0] is None  # one chain, whatever the interleaving
    engine.dispose()


@pytest.mark.postgres
async def test_second_recorder_stands_by_and_takes_over(
    pg_url: str, tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    engine = open_engine(pg_url)
    migrate.upgrade(engine)
    sim_config = SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=5)
    async with trio.open_nursery() as nursery:
        first = await start(nursery, tmp_path, accounts=(A,), engine=engine, sim_config=sim_config)
        await wait_until(lambda: "replay-complete" in first.events_of(A))
        second = await start(nursery, tmp_path, accounts=(A,), engine=engine, sim_config=sim_config)
        await wait_until(lambda: second.recorder.state.accounts[A].standby)
        await trio.sleep(30)
        assert second.recorder.state.accounts[A].sessions == 0  # it never connected
        frames_before = len(first.frames(A))
        await first.stop()
        await wait_until(lambda: second.recorder.state.accounts[A].subscribed)
        await wait_until(lambda: len(second.frames(A)) > frames_before + 20)
        await second.stop()
    rows = rows_of(engine, A)
    assert verify_chain(rows)[0] is None
    sessions = list(dict.fromkeys(r["session_id"] for r in rows))
    assert len(sessions) == 2  # the first instance's session, then the second's
    assert not second.recorder.state.accounts[A].standby
    engine.dispose()


def write_config(tmp_path: Path, name: str, ws_url: str, token_url: str, db_url: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[studio]\nurl = "{ws_url}"\ntoken_url = "{token_url}"\nclient_id = "sim-client"\n'
        f'accounts = ["{A}"]\n[store]\nurl = "{db_url}"\n[metrics]\nlisten = ""\n'
    )
    return path


@pytest.mark.postgres
async def test_kill_9_of_the_owner_hands_the_account_to_the_standby(
    pg_url: str, tmp_path: Path
) -> None:
    engine = open_engine(pg_url)
    migrate.upgrade(engine)
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=50))
    env = {**os.environ, "STUDIO_CLIENT_SECRET": SECRET}
    processes: list[trio.Process] = []
    logs = []
    try:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                endpoints = await nursery.start(sim.serve)
                for name in ("owner", "standby"):
                    config = write_config(
                        tmp_path, name, endpoints.ws_url, endpoints.token_url, pg_url
                    )
                    log = (tmp_path / f"{name}.log").open("wb")
                    logs.append(log)
                    processes.append(
                        await trio.lowlevel.open_process(
                            [
                                sys.executable,
                                "-m",
                                "recorder",
                                "run",
                                "--config",
                                str(config),
                                "--log-format",
                                "json",
                            ],
                            env=env,
                            stderr=log,
                        )
                    )
                    # The owner wins the lock first (it records), then the standby stands
                    # by, before the owner is killed. (A fixed 1.5 s sleep was too short for
                    # a process to start on a loaded machine.)
                    while name == "owner" and not rows_of(engine, A):
                        await trio.sleep(0.1)
                    while (
                        name == "standby"
                        and '"standby"' not in (tmp_path / "standby.log").read_text()
                    ):
                        await trio.sleep(0.1)
                while len(rows_of(engine, A)) < 100:
                    await trio.sleep(0.1)
                processes[0].send_signal(signal.SIGKILL)
                await processes[0].wait()
                killed_at = len(rows_of(engine, A))
                while len(rows_of(engine, A)) < killed_at + 100:
                    await trio.sleep(0.2)
                processes[1].send_signal(signal.SIGTERM)
                assert await processes[1].wait() == 0
                nursery.cancel_scope.cancel()
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
        for log in logs:
            log.close()
    standby_log = [json.loads(line) for line in (tmp_path / "standby.log").read_text().splitlines()]
    events_seen = [line.get("event") for line in standby_log]
    assert events_seen.index("standby") < events_seen.index("takeover")
    rows = rows_of(engine, A)
    assert verify_chain(rows)[0] is None
    with engine.connect() as conn:
        log_rows = [dict(r._mapping) for r in conn.execute(select(connection_log))]
    sessions = {r["session_id"] for r in log_rows}
    closed = {r["session_id"] for r in log_rows if r["event"] == "closed"}
    assert len(sessions - closed) == 1  # the killed owner's session never closed
    stored = {r["sequence"] for r in rows if r["sequence"] is not None}
    sent = [json.loads(f)["sequence"] for f in sim.day_log(A)]
    assert sent == list(range(1, len(sent) + 1))
    # Nothing is missing below the newest stored frame: what the owner held in memory when
    # it was killed came back with the standby's day replay.
    assert set(range(1, max(stored) + 1)) <= stored
    engine.dispose()


def test_second_recorder_on_one_sqlite_store_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    migrate.upgrade(open_engine(f"sqlite:///{db}"))
    config = write_config(
        tmp_path, "a", "ws://127.0.0.1:9/ws", "http://127.0.0.1:9/t", f"sqlite:///{db}"
    )
    env = {**os.environ, "STUDIO_CLIENT_SECRET": "x"}
    with subprocess.Popen(
        [sys.executable, "-m", "recorder", "run", "--config", str(config)],
        env=env,
        stderr=subprocess.DEVNULL,
    ) as first:
        try:
            lock = Path(f"{db}.lock")
            for _ in range(100):
                if lock.exists() and lock.read_text().strip() == str(first.pid):
                    break
                threading.Event().wait(0.1)
            second = subprocess.run(
                [sys.executable, "-m", "recorder", "run", "--config", str(config)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=30)
    assert second.returncode == 1
    assert f"another recorder (pid {first.pid}) is writing" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.returncode == 0
