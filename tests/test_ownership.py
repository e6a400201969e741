"""One writer per account: PostgreSQL advisory locks, chains that never fork, SQLite's file lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing
from sqlalchemy import text

from recorder.appender import Appender
from recorder.auth import TokenSource
from recorder.backoff import Backoff
from recorder.chain import verify_chain
from recorder.connection import default_connect
from recorder.context import AccountContext, SessionSettings
from recorder.credentials import Secret
from recorder.ownership import PostgresOwnership
from recorder.records import LogRecord, Record
from recorder.simulator import SimConfig, Simulator
from recorder.simulator.config import DEFAULT_AUDIENCE
from recorder.state import AccountState
from recorder.store import normalize_url, open_engine
from recorder.supervisor import supervise_account
from recorder.tradingday import TradingDayCache
from tests.support.cli import run_process
from tests.support.config import SECRET, write_config
from tests.support.frames import frame
from tests.support.processes import recorder_process
from tests.support.recording import start
from tests.support.stores import frames as rows_of
from tests.support.stores import log, migrated
from tests.support.waiting import wait_until

A = "100000"


@pytest.mark.postgres
def test_two_appenders_on_one_account_extend_one_linear_chain(pg_url: str) -> None:
    engine = migrated(pg_url)
    first, second = Appender(engine), Appender(engine)
    first.head(A)
    second.head(A)  # both start from the same (genesis) head: a fork unless serialised

    def write(appender: Appender, tag: str) -> None:
        for batch in range(20):
            frames = [
                frame(A, n, session_id=tag, replayed=False, raw=f"{tag}-{batch}-{n}")
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
    engine = migrated(pg_url)
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


@pytest.mark.postgres
async def test_a_lost_lock_connection_stops_the_session_until_the_lock_is_won_back(
    pg_url: str, recorder_clock: trio.testing.MockClock
) -> None:
    # Only the ownership lock's connection fails (its own application_name): the session
    # it guards stops at the next check, journals why, and the account is won back.
    application_name = f"studio-recorder-lock-{uuid.uuid4().hex[:8]}"
    admin = open_engine(pg_url)
    engine = open_engine(
        normalize_url(pg_url).update_query_dict({"application_name": application_name})
    )
    ownership = PostgresOwnership(engine)
    account = AccountState(A)
    send, receive = trio.open_memory_channel[Record](10_000)
    records: list[Record] = []
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=5))

    async def collect() -> None:
        async for record in receive:
            records.append(record)

    def closed() -> list[str | None]:
        return [r.detail for r in records if isinstance(r, LogRecord) and r.event == "closed"]

    def terminate_lock_connection() -> int:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :app"
                ),
                {"app": application_name},
            ).scalar_one()
            conn.commit()
        return int(killed)

    try:
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                endpoints = await nursery.start(sim.serve)
                context = AccountContext(
                    account=account,
                    session=SessionSettings(endpoints.ws_url, 10.0, 60.0),
                    tokens=TokenSource(
                        endpoints.token_url, "sim-client", Secret(SECRET), DEFAULT_AUDIENCE
                    ),
                    sink=send,
                    trading_day=TradingDayCache(ZoneInfo("America/New_York")),
                    connect=default_connect(None),
                    shutdown=trio.Event(),
                    backoff=Backoff(1.0, 60.0),
                    ownership=ownership,
                )
                nursery.start_soon(collect)
                nursery.start_soon(ownership.watch)
                nursery.start_soon(supervise_account, context)
                await wait_until(lambda: account.subscribed)
                lost = ownership.lost(A)
                assert not lost.is_set()
                assert await trio.to_thread.run_sync(terminate_lock_connection) == 1
                await wait_until(lambda: bool(closed()))
                assert lost.is_set()
                await wait_until(lambda: account.sessions == 2 and account.subscribed)
                assert not ownership.lost(A).is_set()  # won back: a fresh event
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await ownership.close()
        engine.dispose()
        admin.dispose()
    assert closed()[0] == "ownership lost: the lock connection to the store failed"
    assert account.reconnects == 0  # no backoff: straight back to winning the lock


def owner_config(tmp_path: Path, name: str, ws_url: str, token_url: str, db_url: str) -> Path:
    return write_config(tmp_path / f"{name}.toml", [A], db_url, url=ws_url, token_url=token_url)


@pytest.mark.postgres
async def test_kill_9_of_the_owner_hands_the_account_to_the_standby(
    pg_url: str, tmp_path: Path
) -> None:
    engine = migrated(pg_url)
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=50))
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = {
                name: owner_config(tmp_path, name, endpoints.ws_url, endpoints.token_url, pg_url)
                for name in ("owner", "standby")
            }
            # The owner wins the lock first (it records), then the standby stands by, before
            # the owner is killed. (A fixed 1.5 s sleep was too short for a process to start
            # on a loaded machine.)
            async with recorder_process(config["owner"], tmp_path / "owner.log") as owner:
                while not rows_of(engine, A):
                    await trio.sleep(0.1)
                async with recorder_process(config["standby"], tmp_path / "standby.log") as standby:
                    while '"standby"' not in standby.log_text():
                        await trio.sleep(0.1)
                    while len(rows_of(engine, A)) < 100:
                        await trio.sleep(0.1)
                    await owner.kill9()
                    killed_at = len(rows_of(engine, A))
                    while len(rows_of(engine, A)) < killed_at + 100:
                        await trio.sleep(0.2)
                    assert await standby.terminate() == 0
            nursery.cancel_scope.cancel()
    standby_log = [json.loads(line) for line in (tmp_path / "standby.log").read_text().splitlines()]
    events_seen = [line.get("event") for line in standby_log]
    assert events_seen.index("standby") < events_seen.index("takeover")
    rows = rows_of(engine, A)
    assert verify_chain(rows)[0] is None
    log_rows = log(engine)
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
    migrated(f"sqlite:///{db}")
    config = owner_config(
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
            second = run_process("recorder", "run", "--config", config, env=env, timeout_s=60)
        finally:
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=30)
    assert second.returncode == 1
    assert f"another recorder (pid {first.pid}) is writing" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.returncode == 0


@pytest.mark.postgres
async def test_presence_sees_the_ownership_lock_of_a_postgresql_recorder(pg_url: str) -> None:
    from recorder.ownership import PostgresOwnership
    from recorder.presence import store_presence
    from tests.support.stores import migrated

    engine = migrated(pg_url)
    ownership = PostgresOwnership(engine)
    try:
        assert not store_presence(engine, ("7",))["7"].running
        assert await ownership.acquire("7")
        seen = store_presence(engine, ("7", "8"))
        assert (seen["7"].running, seen["8"].running) == (True, False)
    finally:
        await ownership.close()
    assert not store_presence(engine, ("7",))["7"].running
    engine.dispose()
