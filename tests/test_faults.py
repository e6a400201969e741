"""Faults the recorder must survive, each injected for real (see README "Guarantees under faults").

Processes are real ``studio-recorder run`` children killed with SIGKILL; the database is
locked by another process, cut off behind a TCP proxy, filled up or made immutable; the
upstream is the simulator on a real port. After each fault: nothing lost (every sequenced
frame of the day stored, byte for byte), nothing written twice, every chain verifies,
and the fault was visible (``/healthz`` 503 with a reason, a metric, a log line).
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg.errors
import pytest
import trio
import trio.testing
from sqlalchemy import Engine, text

from recorder.dberrors import is_transient
from recorder.envelope import decode_raw
from recorder.health import judge
from recorder.ownership import PostgresOwnership
from recorder.simulator import SimConfig, SimEndpoints, Simulator
from recorder.status import ENDED_UNCLEANLY
from recorder.store import normalize_url, open_engine
from recorder.writerprocess import QUEUE_MAX_RECORDS
from tests.support import stores
from tests.support.cli import run
from tests.support.config import QUICK, SECRET, write_config
from tests.support.faults import (
    TcpProxy,
    chattr,
    fill_disk,
    hold_exclusive_lock,
    mount_tmpfs,
    umount,
)
from tests.support.processes import RecorderProcess, free_port, recorder_process, rss_bytes
from tests.support.recording import start
from tests.support.stores import assert_no_loss_no_duplicates, migrated
from tests.support.waiting import wait_until

A = "100000"
query = functools.partial(run, "queries")


def status(config: Path) -> dict[str, Any]:
    """``studio-recorder status --json`` (the document; exit 0 asserted)."""
    result = run("recorder", "status", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


wait_for = functools.partial(wait_until, poll_s=0.1)


def sqlite_store(tmp_path: Path) -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path}/store.db"
    return url, migrated(url)


def fault_config(
    tmp_path: Path,
    endpoints: SimEndpoints,
    url: str,
    metrics_port: int | None = None,
    **recorder: float,
) -> Path:
    """A config for the simulator with quick timeouts (``recorder`` overrides them)."""
    listen = "" if metrics_port is None else f"127.0.0.1:{metrics_port}"
    return write_config(tmp_path / "recorder.toml", [A], url, endpoints=endpoints,
                        metrics_listen=listen, recorder=QUICK | recorder)  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_kill_9_mid_stream_then_restart_refills_the_day(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=100))
    url, engine = sqlite_store(tmp_path)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = fault_config(tmp_path, endpoints, url)
            async with recorder_process(config, tmp_path / "first.log") as first:
                await wait_for(lambda: len(stores.frames(engine, A)) >= 300, timeout_s=60)
                running = status(config)
                assert running["recorder"]["running"] is True
                assert running["recorder"]["pid"] == first.pid
                assert running["accounts"][0]["session_state"] in ("subscribed", "replay-complete")
                await first.kill9()  # mid-stream: frames in flight and in its queue are gone
                # Its writer process commits what it holds and exits on its own, and only
                # then is the store's lock free (it shares the recorder's).
                await first.writer_exit()
            # status knows nobody records any more: the session ended uncleanly.
            killed_status = status(config)
            assert killed_status["recorder"]["running"] is False
            assert killed_status["accounts"][0]["session_state"] == ENDED_UNCLEANLY
            assert killed_status["accounts"][0]["last_close_reason"] is None
            with sqlite3.connect(tmp_path / "store.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert query("verify", "--db", url).returncode == 0  # what the killed one left
            sent_before_restart = await _restart_until_refilled(config, engine, sim, tmp_path)
            nursery.cancel_scope.cancel()
    # What the killed process had not stored (in its memory, in flight, or sent while nobody
    # recorded) came back with the restart's day replay. What it stored is taken from its own
    # session's rows in the final store, not from a read right after the kill: under load that
    # read once ended at sequence 307 while the killed session's rows end at 312 (a commit cut
    # short by SIGKILL can reach other connections late; nothing is lost or doubled).
    _assert_refilled_after_a_kill(engine, sim, url, sent_before_restart)
    stored = stores.frames(engine, A)
    sent = set(sim.sent_log(A))
    assert all(decode_raw(r["raw_kind"], r["raw"]) in sent for r in stored)  # no half rows
    sessions = list(dict.fromkeys(r["session_id"] for r in stores.log(engine, A)))
    day = str(stored[0]["trading_day"])
    gaps = json.loads(query("gaps", "--db", url, "--day", day, "--json").stdout)
    coverage = gaps["accounts"][0]["coverage_gaps"]
    unclean = [g for g in coverage if g["reason"] == "unclean end"]
    assert len(unclean) == 1
    assert unclean[0]["after_session"] == sessions[0]
    assert gaps["accounts"][0]["sequence_gaps"] == []
    audit = json.loads(query("audit", "--db", url, "--day", day, "--json").stdout)
    account = audit["accounts"][0]
    assert account["unclean_sessions"] == 1
    assert account["chain_ok"] is True
    assert [s["clean"] for s in account["session_list"]] == [False, True]
    engine.dispose()


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_kill_9_of_the_writer_process_stops_the_recorder_then_restart_refills_the_day(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=100))
    url, engine = sqlite_store(tmp_path)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = fault_config(tmp_path, endpoints, url)
            async with recorder_process(config, tmp_path / "first.log") as first:
                writer = await first.writer()
                await wait_for(lambda: len(stores.frames(engine, A)) >= 300, timeout_s=60)
                writer.kill()  # SIGKILL, mid-stream: its batch in flight is gone
                with trio.fail_after(10):  # the recorder stops at once, non-zero
                    assert await first.process.wait() == 1
            stderr = first.log_text().splitlines()
            assert stderr[-1] == (
                "studio-recorder: error: the writer process ended (killed by SIGKILL); stopping "
                "the recorder (frames not yet committed come back with the day's replay on the "
                "next start)"
            )
            assert "Traceback" not in first.log_text()
            assert status(config)["recorder"]["running"] is False
            with sqlite3.connect(tmp_path / "store.db") as db:
                assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert query("verify", "--db", url).returncode == 0  # what the killed one left
            sent_before_restart = await _restart_until_refilled(config, engine, sim, tmp_path)
            nursery.cancel_scope.cancel()
    _assert_refilled_after_a_kill(engine, sim, url, sent_before_restart)
    engine.dispose()


async def _restart_until_refilled(
    config: Path, engine: Engine, sim: Simulator, tmp_path: Path
) -> int:
    """After a kill: a second's pause (the day goes on while nobody records it), then a
    second recorder until it stored 200 frames past what was sent meanwhile, stopped with
    SIGTERM (exit 0). Returns how many frames the day had when it started."""
    await trio.sleep(1.0)
    sent_before_restart = len(sim.day_log(A))
    async with recorder_process(config, tmp_path / "second.log") as second:
        await wait_for(lambda: _max_sequence(engine) >= sent_before_restart + 200, timeout_s=60)
        assert await second.terminate() == 0
    return sent_before_restart


def _assert_refilled_after_a_kill(
    engine: Engine, sim: Simulator, url: str, sent_before_restart: int
) -> None:
    """Two sessions, the first cut by a kill: nothing lost or doubled, what the first had not
    committed came back replayed, the first's end is unclean, and the chains verify."""
    stored = stores.frames(engine, A)
    assert_no_loss_no_duplicates(stored, sim.day_log(A), upto=_max_sequence(engine))
    first_session = stored[0]["session_id"]
    stored_by_first = max(r["sequence"] or 0 for r in stored if r["session_id"] == first_session)
    missed = range(stored_by_first + 1, sent_before_restart + 1)
    refilled = [r for r in stored if r["sequence"] in missed]
    assert len(refilled) == len(missed) > 0
    assert all(r["replayed"] for r in refilled)
    log = stores.log(engine, A)
    sessions = list(dict.fromkeys(r["session_id"] for r in log))
    assert sessions[0] == first_session
    assert len(sessions) == 2
    assert "closed" not in [r["event"] for r in log if r["session_id"] == first_session]
    assert [r["event"] for r in log if r["session_id"] == sessions[1]][-1] == "closed"
    verify = query("verify", "--db", url, "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def _healthy(recorder: RecorderProcess) -> bool:
    try:
        return (await recorder.health())[0] == 200
    except httpx.TransportError:  # not listening yet
        return False


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_sqlite_locked_by_another_process_blocks_readers_and_is_reported(
    tmp_path: Path,
) -> None:
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=100))
    url, engine = sqlite_store(tmp_path)
    port = free_port()
    queue_max = 300
    unhealthy: list[dict[str, object]] = []
    depths: list[float] = []
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = fault_config(
                tmp_path,
                endpoints,
                url,
                metrics_port=port,
                queue_max_frames=queue_max,
                liveness_timeout_s=4,  # shorter than the readers wait: not mistaken for silence
            )
            async with recorder_process(config, tmp_path / "rec.log", port) as recorder:
                await wait_for(lambda: _healthy(recorder), timeout_s=30)
                await wait_for(lambda: len(stores.frames(engine, A)) >= 100, timeout_s=30)
                async with hold_exclusive_lock(tmp_path / "store.db", 12) as locker:
                    while locker.returncode is None:
                        status, body = await recorder.health()
                        metrics = await recorder.metrics()
                        depths.append(metrics["studio_recorder_queue_depth"])
                        if status == 503:
                            unhealthy.append({**body, "metrics": metrics})
                        await trio.sleep(0.2)
                await wait_for(lambda: _healthy(recorder), timeout_s=30)
                recovered = await recorder.metrics()
                written = len(stores.frames(engine, A))
                await wait_for(lambda: len(stores.frames(engine, A)) >= written + 100, timeout_s=30)
                assert await recorder.terminate() == 0
            nursery.cancel_scope.cancel()
    assert unhealthy, "/healthz never reported the locked store"
    reasons = [r for body in unhealthy for r in body["reasons"]]  # type: ignore[attr-defined]
    assert any("store writes failing" in r and "database is locked" in r for r in reasons)
    assert any(b["metrics"]["studio_recorder_store_failing"] == 1.0 for b in unhealthy)  # type: ignore[index]
    # The queue filled up to its bound and stayed there: readers waited, memory stayed put.
    assert max(depths) == queue_max
    assert recovered["studio_recorder_store_failing"] == 0.0
    assert recovered["studio_recorder_store_retries_total"] >= 1
    logged = [line.get("event") for line in recorder.logs()]
    assert "store-write-failed" in logged
    assert logged.index("store-write-recovered") > logged.index("store-write-failed")
    stored = stores.frames(engine, A)
    assert len({r["session_id"] for r in stored}) == 1  # the connection was never dropped
    assert [decode_raw(r["raw_kind"], r["raw"]) for r in stored] == sim.sent_log(A)[: len(stored)]
    assert_no_loss_no_duplicates(
        stored, sim.day_log(A), upto=max(r["sequence"] or 0 for r in stored)
    )
    assert query("verify", "--db", url).returncode == 0


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Engine]:
    """The test's PostgreSQL store, migrated; its connections closed afterwards."""
    engine = migrated(pg_url)
    yield engine
    engine.dispose()


def _events(engine: Engine) -> list[str]:
    return [r["event"] for r in stores.log(engine, A)]


def _terminate_backends(admin: Engine, application_name: str, ports: set[int]) -> int:
    """pg_terminate_backend of the recorder's own backends only: those connected through the
    test's proxy (its upstream ports) under the test's application_name."""
    with admin.connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :app AND client_port = ANY(:ports)"
            ),
            {"app": application_name, "ports": sorted(ports)},
        ).scalar_one()
        conn.commit()
    return int(killed)


@pytest.mark.timeout(300)
@pytest.mark.slow
@pytest.mark.postgres
async def test_postgres_terminated_and_unreachable_is_retried_and_reported(
    pg_url: str, pg_store: Engine, tmp_path: Path
) -> None:
    direct = normalize_url(pg_url)
    admin = pg_store
    application_name = f"studio-recorder-faults-{uuid.uuid4().hex[:8]}"
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=50))
    port = free_port()
    seen: dict[str, list[dict[str, object]]] = {"terminated": [], "cut": []}
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            proxy = await nursery.start(
                TcpProxy((direct.host or "127.0.0.1", direct.port or 5432)).run
            )
            via_proxy = direct.set(host="127.0.0.1", port=proxy.port).update_query_dict(
                {"application_name": application_name}
            )
            endpoints = await nursery.start(sim.serve)
            config = fault_config(
                tmp_path,
                endpoints,
                via_proxy.render_as_string(hide_password=False),
                metrics_port=port,
                queue_max_frames=100,  # full during the outage: sessions end with readers waiting
            )
            async with recorder_process(config, tmp_path / "rec.log", port) as recorder:
                await wait_for(lambda: _healthy(recorder), timeout_s=30)
                await wait_for(lambda: len(stores.frames(admin, A)) >= 100, timeout_s=30)
                # 1. Its backends are terminated (an operator, a failover, a server restart).
                assert _terminate_backends(admin, application_name, proxy.open_ports()) >= 1
                # The lost ownership lock is noticed at the next check (5 s): the session
                # stops, the lock is won back, a new session's replay refills the day.
                await wait_for(lambda: _events(admin).count("subscribed") >= 2, timeout_s=60)
                await wait_for(lambda: _healthy(recorder), timeout_s=60)
                # 2. The server becomes unreachable: connections cut, new ones refused.
                await proxy.cut()
                with trio.move_on_after(10):
                    while True:
                        status, body = await recorder.health()
                        if status == 503:
                            metrics = await recorder.metrics()
                            seen["cut"].append({**body, "metrics": metrics})
                        await trio.sleep(0.3)
                # (the test's own direct connection still works)
                assert len(stores.frames(admin, A)) > 0
                await proxy.restore()
                written = len(stores.frames(admin, A))
                await wait_for(lambda: _healthy(recorder), timeout_s=60)
                await wait_for(lambda: len(stores.frames(admin, A)) >= written + 200, timeout_s=60)
                recovered = await recorder.metrics()
                assert await recorder.terminate() == 0
            nursery.cancel_scope.cancel()
    assert seen["cut"], "/healthz never reported the unreachable store"
    reasons = [r for body in seen["cut"] for r in body["reasons"]]  # type: ignore[attr-defined]
    assert any("store writes failing" in r for r in reasons)
    assert any(f"account {A} is not subscribed" in r for r in reasons)
    assert any(b["metrics"]["studio_recorder_store_failing"] == 1.0 for b in seen["cut"])  # type: ignore[index]
    assert recovered["studio_recorder_store_failing"] == 0.0
    logged = [line.get("event") for line in recorder.logs()]
    assert "store-write-failed" in logged
    assert "ownership-lost" in logged
    assert logged.index("store-write-recovered") > logged.index("store-write-failed")
    stored = stores.frames(admin, A)
    assert_no_loss_no_duplicates(
        stored, sim.day_log(A), upto=max(r["sequence"] or 0 for r in stored)
    )
    journal = stores.log(admin, A)
    closed = [r["detail"] for r in journal if r["event"] == "closed"]
    assert len(closed) == _events(admin).count("opened") >= 3  # every session's end journalled
    assert closed[0] == "ownership lost: the lock connection to the store failed"
    assert closed[-1] == "shutdown"
    verify = query("verify", "--db", pg_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def _store_outage(
    tmp_path: Path,
    database: Path,
    inject: Callable[[], None],
    undo: Callable[[], None],
    *,
    rate_per_s: float = 100,
) -> tuple[RecorderProcess, list[dict[str, Any]], Simulator]:
    """Record, ``inject`` a store fault, watch /healthz until it reports it, ``undo`` it, see
    the recorder recover and stop it; returns the 503 bodies (each with its metrics)."""
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=rate_per_s))
    url = f"sqlite:///{database}"
    engine = migrated(url)
    port = free_port()
    unhealthy: list[dict[str, Any]] = []
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = fault_config(tmp_path, endpoints, url, metrics_port=port)
            async with recorder_process(config, tmp_path / "rec.log", port) as recorder:
                await wait_for(lambda: _healthy(recorder), timeout_s=30)
                await wait_for(lambda: len(stores.frames(engine, A)) >= 100, timeout_s=30)
                inject()
                try:
                    with trio.fail_after(60):
                        while len(unhealthy) < 5:  # reported, and still reported a second later
                            status, body = await recorder.health()
                            if status == 503:
                                unhealthy.append({**body, "metrics": await recorder.metrics()})
                            await trio.sleep(0.2)
                finally:
                    undo()
                written = len(stores.frames(engine, A))
                await wait_for(lambda: _healthy(recorder), timeout_s=60)
                await wait_for(lambda: len(stores.frames(engine, A)) >= written + 100, timeout_s=60)
                assert await recorder.terminate() == 0
            nursery.cancel_scope.cancel()
    stored = stores.frames(engine, A)
    engine.dispose()
    assert len({r["session_id"] for r in stored}) == 1  # the connection was never dropped
    assert [decode_raw(r["raw_kind"], r["raw"]) for r in stored] == sim.sent_log(A)[: len(stored)]
    last = max(r["sequence"] or 0 for r in stored)
    assert_no_loss_no_duplicates(stored, sim.day_log(A), upto=last)
    verify = query("verify", "--db", url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert any(b["metrics"]["studio_recorder_store_failing"] == 1.0 for b in unhealthy)
    logged = [line.get("event") for line in recorder.logs()]
    assert logged.index("store-write-recovered") > logged.index("store-write-failed")
    return recorder, unhealthy, sim


def _reasons(unhealthy: list[dict[str, Any]]) -> list[str]:
    return [reason for body in unhealthy for reason in body["reasons"]]


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_disk_full_holds_the_batch_reports_it_and_recovers(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    problem = mount_tmpfs(small, "16m")
    if problem is not None:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {problem}")
    ballast = small / "ballast"
    try:
        recorder, unhealthy, _ = await _store_outage(
            tmp_path,
            small / "store.db",
            lambda: fill_disk(ballast),
            ballast.unlink,
            rate_per_s=1000,  # the WAL reuses its space for a while: write a lot, quickly
        )
    finally:
        umount(small)
    assert any("database or disk is full" in r for r in _reasons(unhealthy))
    failed = [line for line in recorder.logs() if line.get("event") == "store-write-failed"]
    assert "SQLITE_FULL" in failed[0]["msg"]


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_read_only_database_file_holds_the_batch_reports_it_and_recovers(
    tmp_path: Path,
) -> None:
    database = tmp_path / "store.db"
    probe = tmp_path / "probe"
    probe.touch()
    problem = chattr("+i", probe)
    chattr("-i", probe)
    if problem is not None:
        pytest.skip(f"chattr +i is not available here: {problem}")
    files = (database, tmp_path / "store.db-wal")  # not -shm: it is mapped in memory

    def freeze() -> None:
        assert chattr("+i", *files) is None

    def thaw() -> None:
        assert chattr("-i", *files) is None

    try:
        _, unhealthy, _ = await _store_outage(tmp_path, database, freeze, thaw)
    finally:
        chattr("-i", *files)
    reasons = _reasons(unhealthy)
    assert any("store writes failing" in r and "SQLITE_IOERR" in r for r in reasons), reasons


async def test_invalid_utf8_text_frame_is_refused_recorded_and_reconnects(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    sim_config = SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=2)
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A,), sim_config=sim_config)
        await wait_until(lambda: len(run.frames(A)) >= 20)
        run.sim.send_invalid_utf8(
            A, b'{"timestamp":1,"payload":{"type":"heartbeat","x":"\xc3\x28"}}'
        )
        await wait_until(lambda: run.events_of(A).count("replay-complete") == 2)
        await wait_until(lambda: len(run.frames(A)) >= 80)
        await run.stop()
    closed = [r["detail"] for r in run.log(A) if r["event"] == "closed"]
    # wsproto refuses the frame (RFC 6455: a text frame must be UTF-8) and fails the
    # connection with 1007; the journal says why, and the recorder reconnects.
    assert closed[0].startswith("protocol error 1007 INVALID_FRAME_PAYLOAD_DATA: ")
    assert "utf-8" in closed[0]
    assert closed[1] == "shutdown"
    assert run.recorder.state.accounts[A].reconnects_by_reason["error"] == 1
    stored = run.frames(A)
    sent = set(run.sim.sent_log(A))
    assert all(decode_raw(r["raw_kind"], r["raw"]) in sent for r in stored)
    last = max(r["sequence"] or 0 for r in stored)
    assert_no_loss_no_duplicates(stored, run.sim.day_log(A), upto=last)


async def test_10_mb_text_and_binary_frames_are_stored_exactly(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    text_frame = json.dumps(
        {"timestamp": 7, "payload": {"type": "order-update", "data": {"text": "é✓x" * 2_000_000}}},
        ensure_ascii=False,
    )
    binary_frame = random.Random(3).randbytes(10 * 1024 * 1024)
    assert len(text_frame.encode()) > 10 * 1024 * 1024
    sim_config = SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=2)
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A,), sim_config=sim_config)
        await wait_until(lambda: "replay-complete" in run.events_of(A))
        run.sim.send_raw(A, text_frame)
        run.sim.send_raw(A, binary_frame)
        await wait_until(lambda: any(r["raw_kind"] == "binary" for r in run.frames(A)))
        await wait_until(lambda: len(run.frames(A)) >= 10)  # and the stream goes on
        await run.stop()
    rows_ = run.frames(A)
    big_text = [r for r in rows_ if r["server_ts_ms"] == 7]
    assert len(big_text) == 1
    assert big_text[0]["raw_kind"] == "text"
    assert big_text[0]["raw"] == text_frame
    assert big_text[0]["msg_type"] == "order-update"
    big_binary = [r for r in rows_ if r["raw_kind"] == "binary"]
    assert len(big_binary) == 1
    assert big_binary[0]["msg_type"] is None  # not a text frame: not parsed, kept and flagged
    assert decode_raw("binary", big_binary[0]["raw"]) == binary_frame
    assert run.events_of(A) == ["opened", "subscribed", "replay-complete", "closed"]


#: A flood must not grow the recorder without bound: the queue and the window to the writer
#: process full (recorder.window: by count, default 100,000 frames in all, and by bytes).
FLOOD_RSS_LIMIT_BYTES = 250 * 1024 * 1024


@pytest.mark.timeout(300)
@pytest.mark.slow
async def test_flood_while_the_store_is_stalled_keeps_memory_bounded(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=0, heartbeat_s=0))
    day = 105_000  # more than the queue holds
    sim.emit(A, day)  # the whole day arrives at once, as the replay of the first subscribe
    url, engine = sqlite_store(tmp_path)
    port = free_port()
    samples: list[tuple[float, int, float]] = []  # (time, RSS bytes, queue depth)
    with trio.fail_after(240):
        async with trio.open_nursery() as nursery:
            endpoints = await nursery.start(sim.serve)
            config = fault_config(
                tmp_path, endpoints, url, metrics_port=port
            )  # default queue_max_frames: 100,000
            async with (
                hold_exclusive_lock(tmp_path / "store.db", 120) as locker,
                recorder_process(config, tmp_path / "rec.log", port) as recorder,
            ):
                full_since: float | None = None  # since when the depth stopped growing
                last_depth = -1.0
                with trio.fail_after(120):
                    while full_since is None or trio.current_time() - full_since < 3:
                        try:
                            depth = (await recorder.metrics())["studio_recorder_queue_depth"]
                        except httpx.TransportError:
                            depth = 0.0
                        samples.append((trio.current_time(), rss_bytes(recorder.pid), depth))
                        if depth <= QUEUE_MAX_RECORDS or depth != last_depth:
                            full_since = None  # still filling (the queue first, then the window)
                        elif full_since is None:
                            full_since = trio.current_time()
                        last_depth = depth
                        await trio.sleep(0.25)
                assert len(stores.frames(engine, A)) == 0  # nothing could be written meanwhile
                locker.kill()  # the store is back
                await locker.wait()
                await wait_for(lambda: _max_sequence(engine) >= day, timeout_s=120)
                assert await recorder.terminate() == 0
            nursery.cancel_scope.cancel()
    peak = max(rss for _, rss, _ in samples)
    print(f"flood: peak RSS {peak / 2**20:.0f} MiB with {max(d for *_, d in samples):.0f} queued")
    # Readers waited at the bound: the queue full, and the window full by its bytes (about
    # 460 bytes a record in the messages: some 18,000 records in 8 MiB) before its count …
    assert QUEUE_MAX_RECORDS < max(depth for *_, depth in samples) < 100_000
    assert peak < FLOOD_RSS_LIMIT_BYTES  # … so memory stayed bounded …
    at_bound = [rss for at, rss, _ in samples if full_since is not None and at >= full_since]
    assert max(at_bound) - at_bound[0] < 16 * 2**20  # … and flat while more frames waited
    stored = stores.frames(engine, A)
    assert_no_loss_no_duplicates(stored, sim.day_log(A))
    engine.dispose()


def _max_sequence(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(sequence), 0) FROM events")).scalar_one())


def test_the_retry_set_holds_store_outages_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, b BLOB)")
    db.execute("INSERT INTO t VALUES (1, NULL)")
    sqlite_errors: dict[str, sqlite3.Error] = {}

    def caught(name: str, conn: sqlite3.Connection, sql: str, *args: object) -> None:
        with pytest.raises(sqlite3.Error) as info:
            conn.execute(sql, args)
        sqlite_errors[name] = info.value

    caught("duplicate", db, "INSERT INTO t VALUES (1, NULL)")
    caught("no table", db, "SELECT * FROM missing")
    db.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    caught("busy", other, "INSERT INTO t VALUES (2, NULL)")
    db.execute("COMMIT")
    other.execute("PRAGMA query_only = 1")
    caught("read-only", other, "INSERT INTO t VALUES (3, NULL)")
    other.close()
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    caught("full", db, "INSERT INTO t VALUES (4, ?)", b"x" * 100_000)
    db.close()
    names = {name: error.sqlite_errorname for name, error in sqlite_errors.items()}
    assert names["busy"] == "SQLITE_BUSY"
    assert names["read-only"] == "SQLITE_READONLY"
    assert names["full"] == "SQLITE_FULL"
    # A store outage: retried (the batch is held, the queue blocks readers).
    for outage in (
        sqlite_errors["busy"],
        sqlite_errors["read-only"],
        sqlite_errors["full"],
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.DiskFull("could not extend file"),
        psycopg.errors.ReadOnlySqlTransaction("cannot execute COPY in a read-only transaction"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.OperationalError("connection failed"),
    ):
        assert is_transient(outage), outage
    # A bug, a wrong schema or a bad file: not retried, it stops the recorder loudly.
    for bug in (
        sqlite_errors["duplicate"],
        sqlite_errors["no table"],
        psycopg.errors.UniqueViolation("duplicate key"),
        psycopg.errors.UndefinedTable("relation does not exist"),
        ValueError("x"),
    ):
        assert not is_transient(bug), bug


async def test_subscribe_rejected_again_and_again_waits_and_refreshes_the_token_each_time(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    sim_config = SimConfig(accounts=(A,), client_secret=SECRET, rate_per_s=2)
    times: list[float] = []
    reasons: list[str] = []
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A,), sim_config=sim_config, backoff_max_s=30)
        await wait_until(lambda: "subscribed" in run.events_of(A))
        run.sim.reject_next_subscribes(5)  # "success: false" for a long while
        run.sim.drop_connections(A)
        with trio.fail_after(600):
            while True:
                if len(run.sim.subscribes) > len(times) + 1:
                    times.append(trio.current_time())
                    reasons += judge(run.recorder.state, time.monotonic()).reasons
                elif run.events_of(A).count("subscribed") >= 2:
                    break
                await trio.sleep(0.5)
        await run.stop()
    rejected = [s for s in run.sim.subscribes if not s.accepted]
    assert len(rejected) == 5
    assert run.recorder.state.accounts[A].rejected_subscribes == 5
    # Each rejection waits backoff_max_s (no storm) and retries with a fresh token.
    # (times: every subscribe after the first one, polled every 0.5 s)
    assert len(times) == 6
    assert all(b - a >= 29.5 for a, b in itertools.pairwise(times))
    assert len({s.token for s in rejected[1:]}) == 4
    assert run.sim.tokens_issued == 6  # the first token, then one per rejection
    assert any("not subscribed (subscribe rejected: " in r for r in reasons)
    assert run.events_of(A).count("subscribe-rejected") == 5


def test_every_test_the_readme_guarantees_table_names_exists() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    section = readme.split("## Guarantees under faults", 1)[1].split("\n## ", 1)[0]
    named = 0
    current = None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(test_\w+)`", section):
        current = path or current
        assert current is not None
        source = (root / current).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.M), f"{current}::{name}"
        named += 1
    assert named >= 25


@pytest.mark.postgres
async def test_ownership_locks_of_stores_in_other_schemas_do_not_collide(pg_url: str) -> None:
    # Advisory locks are database-wide: a store in another schema of the same database (a
    # second deployment, a parallel test run) must not make this one stand by.
    url = normalize_url(pg_url)
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = open_engine(url.difference_update_query(["options"]))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other_schema}"'))
    other_url = url.update_query_dict({"options": f"-csearch_path={other_schema}"})
    engines = [open_engine(url), open_engine(url), open_engine(other_url)]
    owners = [PostgresOwnership(engine) for engine in engines]
    try:
        with trio.fail_after(30):
            assert await owners[0].acquire(A)
            assert not await owners[1].acquire(A)  # same store: one owner
            assert owners[1].unavailable is None  # a real standby, not an error
            assert await owners[2].acquire(A)  # another store: its own lock
    finally:
        for owner in owners:
            await owner.close()
        for engine in engines:
            engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{other_schema}" CASCADE'))
        admin.dispose()
