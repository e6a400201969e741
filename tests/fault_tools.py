"""Fault injection for tests/test_faults.py: real processes, real sockets, real databases.

* :class:`RecorderProcess` — ``python -m recorder run`` as a child process (JSON logs to a
  file, ``/healthz`` and ``/metrics`` on a free port), killable with SIGKILL.
* :func:`hold_exclusive_lock` — another *process* holding ``BEGIN EXCLUSIVE`` on a SQLite file.
* :class:`TcpProxy` — a trio TCP relay between the recorder and PostgreSQL that a test can
  cut (every connection closed, new ones refused) and restore.
* :func:`rss_bytes`, :func:`query` (``studio-query`` as a process), store readers.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio
from sqlalchemy import Engine, select

from recorder.envelope import decode_raw
from recorder.schema import connection_log, events
from recorder.simulator import SimEndpoints

SECRET = "fault-secret-5e1a"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(
    path: Path,
    endpoints: SimEndpoints,
    db_url: str,
    accounts: list[str],
    *,
    metrics_port: int | None = None,
    **recorder: float | int,
) -> Path:
    """A recorder TOML for the simulator, with quick timeouts (override with ``recorder``)."""
    settings: dict[str, float | int] = {
        "liveness_timeout_s": 10,
        "subscribe_timeout_s": 5,
        "backoff_initial_s": 0.2,
        "backoff_max_s": 2,
        **recorder,
    }
    listen = f"127.0.0.1:{metrics_port}" if metrics_port is not None else ""
    path.write_text(
        f'[studio]\nurl = "{endpoints.ws_url}"\ntoken_url = "{endpoints.token_url}"\n'
        f'client_id = "sim-client"\naccounts = {json.dumps(accounts)}\n'
        f'[store]\nurl = "{db_url}"\n'
        "[recorder]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()) + "[metrics]\n"
        f'listen = "{listen}"\n'
    )
    return path


@dataclass
class RecorderProcess:
    """One ``studio-recorder run`` process; its stderr (JSON lines) goes to ``log_path``."""

    process: trio.Process
    log_path: Path
    metrics_port: int | None

    @classmethod
    async def start(cls, config: Path, log_path: Path, metrics_port: int | None) -> RecorderProcess:
        env = {**os.environ, "STUDIO_CLIENT_SECRET": SECRET}
        command = [sys.executable, "-m", "recorder", "run", "--config", str(config)]
        with log_path.open("ab") as log:
            process = await trio.lowlevel.open_process(
                [*command, "--log-format", "json"],
                env=env,
                stderr=log,
            )
        return cls(process, log_path, metrics_port)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    async def health(self) -> tuple[int, dict[str, Any]]:
        response = await http_get(f"http://127.0.0.1:{self.metrics_port}/healthz")
        return response.status_code, response.json()

    async def metrics(self) -> dict[str, float]:
        """Unlabelled and labelled samples: ``{"name{labels}": value}``."""
        text = (await http_get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    async def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self) -> int:
        """SIGTERM, then the exit code (a clean shutdown is 0)."""
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            return await self.process.wait()

    async def ensure_dead(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()


@asynccontextmanager
async def recorder_process(
    config: Path, log_path: Path, metrics_port: int | None = None
) -> AsyncIterator[RecorderProcess]:
    """A recorder process that never outlives the block, whatever happens to the test."""
    recorder = await RecorderProcess.start(config, log_path, metrics_port)
    try:
        yield recorder
    finally:
        await recorder.ensure_dead()


async def http_get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


async def wait_for(condition: Any, *, timeout_s: float, poll_s: float = 0.1) -> None:
    """Poll a (sync or async) condition until true; fail the test after ``timeout_s``."""
    with trio.fail_after(timeout_s):
        while True:
            result = condition()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return
            await trio.sleep(poll_s)


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (not its children)."""
    return int(psutil.Process(pid).memory_info().rss)


_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@asynccontextmanager
async def hold_exclusive_lock(database: Path, seconds: float) -> AsyncIterator[trio.Process]:
    """Another process takes ``BEGIN EXCLUSIVE`` on ``database`` and holds it ``seconds``;
    yields once the lock is held. The caller may wait for the process to exit (lock gone)."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _LOCKER, str(database), str(seconds)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        with trio.fail_after(60):
            line = await process.stdout.receive_some(64)
        assert line.startswith(b"locked"), line
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


@dataclass
class TcpProxy:
    """Relays 127.0.0.1:<port> to ``target``; :meth:`cut` drops everything and refuses."""

    target: tuple[str, int]
    port: int = 0
    _open: dict[trio.SocketStream, int] = field(default_factory=dict)  # upstream → local port
    _listeners: list[trio.SocketListener] = field(default_factory=list)
    _streams: set[trio.SocketStream] = field(default_factory=set)
    _serving: trio.CancelScope | None = None
    _nursery: trio.Nursery | None = None

    async def run(self, task_status: trio.TaskStatus[TcpProxy] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(trio.sleep_forever)  # stays open while cut
                await self._listen()
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await self._close_all()

    async def _listen(self) -> None:
        assert self._nursery is not None
        self._listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = self._listeners[0].socket.getsockname()[1]
        self._serving = trio.CancelScope()
        self._nursery.start_soon(self._serve, self._serving, self._listeners)

    async def _serve(self, scope: trio.CancelScope, listeners: list[trio.SocketListener]) -> None:
        with scope:
            await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream(*self.target)
            except OSError:
                return
            async with upstream:
                self._streams |= {client, upstream}
                try:
                    self._open[upstream] = upstream.socket.getsockname()[1]
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
                finally:
                    self._streams -= {client, upstream}
                    self._open.pop(upstream, None)

    @staticmethod
    async def _pump(
        source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while data := await source.receive_some(65536):
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _close_all(self) -> None:
        for resource in [*self._listeners, *self._streams]:
            await trio.aclose_forcefully(resource)

    def open_ports(self) -> set[int]:
        """Local ports of the relayed connections to the target now open (``client_port`` in
        PostgreSQL's ``pg_stat_activity``)."""
        return set(self._open.values())

    async def cut(self) -> None:
        """Close the listener (new connections refused) and every relayed connection."""
        assert self._serving is not None
        self._serving.cancel()
        await self._close_all()

    async def restore(self) -> None:
        """Listen again on the same port."""
        await self._listen()


def rows(engine: Engine, account: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = select(events).where(events.c.account_id == account).order_by(events.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


def log_rows(engine: Engine, account: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        query = (
            select(connection_log)
            .where(connection_log.c.account_id == account)
            .order_by(connection_log.c.id)
        )
        return [dict(r._mapping) for r in conn.execute(query)]


def sequences(frames: list[str]) -> list[int]:
    return [json.loads(frame)["sequence"] for frame in frames]


def assert_no_loss_no_duplicates(
    stored: list[dict[str, Any]], day_log: list[str], *, upto: int | None = None
) -> None:
    """Every sequenced frame of the day (up to ``upto``) stored exactly as sent, and no
    session holds any sequence twice (replays across sessions repeat it by design)."""
    sent = {json.loads(frame)["sequence"]: frame for frame in day_log}
    last = max(sent) if upto is None else upto
    by_sequence: dict[int, set[str | bytes]] = {}
    per_session: dict[str, list[int]] = {}
    for row in stored:
        if row["sequence"] is None:
            continue
        by_sequence.setdefault(row["sequence"], set()).add(decode_raw(row["raw_kind"], row["raw"]))
        per_session.setdefault(row["session_id"], []).append(row["sequence"])
    missing = [n for n in range(1, last + 1) if n not in by_sequence]
    assert not missing, f"{len(missing)} sequences never stored, first {missing[:5]}"
    for n in range(1, last + 1):
        assert by_sequence[n] == {sent[n]}, f"sequence {n} stored differently from what was sent"
    for session, seen in per_session.items():
        assert len(seen) == len(set(seen)), f"session {session} stored a sequence twice"
        assert seen == sorted(seen), f"session {session} stored sequences out of order"


def query(*args: str) -> subprocess.CompletedProcess[str]:
    """``studio-query ARGS`` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "queries", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def mount_tmpfs(path: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` on ``path``; the error text when that is not possible."""
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if result.returncode == 0 else (result.stderr.strip() or "mount failed")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill_disk(ballast: Path) -> None:
    """Write ``ballast`` until its file system is full (ENOSPC)."""
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def chattr(flag: str, *paths: Path) -> str | None:
    """``chattr +i``/``-i`` (immutable: even root cannot write); the error text if it failed."""
    result = subprocess.run(
        ["chattr", flag, *map(str, paths)], capture_output=True, text=True, check=False
    )
    return None if result.returncode == 0 else (result.stderr.strip() or "chattr failed")
