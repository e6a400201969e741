"""Faults injected for real: another process holding SQLite's write lock, a TCP link to
PostgreSQL that can be cut, a full file system, an immutable file."""

from __future__ import annotations

import errno
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

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
    with ballast.open("wb", buffering=0) as out:  # no buffer left to flush at close
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
