"""``studio-recorder run`` as a child process, and what a test needs to watch one: a free port
for its ``/healthz`` and ``/metrics``, HTTP probes, its memory, its JSON log."""

from __future__ import annotations

import json
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

from .cli import cli_env
from .config import SECRET


def _ephemeral_ports() -> range:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a child process to bind.

    Chosen at random below the kernel's ephemeral range (which ``bind(("", 0))`` and every
    outgoing connection draw from), so no other test's connection or port-0 listener takes it
    between this check and the child's bind, even with tests running in parallel.
    """
    candidates = [p for p in range(20_000, 32_768) if p not in _EPHEMERAL]
    for port in [*random.sample(candidates, min(200, len(candidates))), 0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


def port_of(url: str) -> int:
    """The port of ``ws://127.0.0.1:PORT/…`` or ``http://127.0.0.1:PORT/…``."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def recorder_env(**extra: str) -> dict[str, str]:
    """The environment of a recorder process: no STUDIO_* setting of the test's own, the
    client secret, and ``extra``."""
    return {**cli_env(), "STUDIO_CLIENT_SECRET": SECRET, **extra}


async def http_get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.get(url)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (the recorder and its writer)."""
    process = psutil.Process(pid)
    total = 0
    for each in [process, *process.children(recursive=True)]:
        with suppress(psutil.NoSuchProcess):
            total += each.memory_info().rss
    return total


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def writer_of(pid: int) -> psutil.Process | None:
    """The writer process (``python -m recorder.writermain``) of the recorder ``pid``."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if "recorder.writermain" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


@dataclass
class RecorderProcess:
    """One ``studio-recorder run`` process; its stderr (the log) goes to ``log_path``."""

    process: trio.Process
    log_path: Path
    metrics_port: int | None
    _writer: psutil.Process | None = None

    @classmethod
    async def start(
        cls,
        config: Path,
        log_path: Path,
        metrics_port: int | None = None,
        *,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = ("--log-format", "json"),
    ) -> RecorderProcess:
        """Start it with ``--config config`` and ``args``; ``env`` defaults to
        :func:`recorder_env`."""
        command = [sys.executable, "-m", "recorder", "run", "--config", str(config), *args]
        with log_path.open("ab") as log:
            process = await trio.lowlevel.open_process(
                command, env=recorder_env() if env is None else env, stderr=log
            )
        return cls(process, log_path, metrics_port)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def log_text(self) -> str:
        return self.log_path.read_text()

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines so far."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]

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

    async def writer(self, timeout_s: float = 30) -> psutil.Process:
        """The recorder's writer process (waits until it has started)."""
        with trio.fail_after(timeout_s):
            while (found := writer_of(self.pid)) is None:
                assert self.process.returncode is None, "the recorder exited"
                await trio.sleep(0.05)
        self._writer = found
        return found

    async def kill9(self) -> None:
        """SIGKILL the recorder (the reading process) alone; its writer lives on, commits
        what it holds and exits by itself (see :meth:`writer_exit`)."""
        if self._writer is None:
            self._writer = writer_of(self.pid)
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def writer_exit(self, timeout_s: float = 30) -> None:
        """Wait until the writer process is gone (TooSlowError after ``timeout_s``)."""
        writer = self._writer
        assert writer is not None, "no writer process was seen"
        with trio.fail_after(timeout_s):
            while _alive(writer):
                await trio.sleep(0.05)

    async def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM, then the exit code (a clean shutdown is 0)."""
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(timeout_s):
            return await self.process.wait()

    async def ensure_dead(self) -> None:
        if self._writer is None and self.process.returncode is None:
            self._writer = writer_of(self.pid)
        if self.process.returncode is None:
            self.process.kill()
            with trio.CancelScope(shield=True):
                await self.process.wait()
        if self._writer is not None:  # it exits once the recorder is gone; never leave it
            try:
                self._writer.wait(10)
            except psutil.TimeoutExpired:
                self._writer.kill()
            except psutil.NoSuchProcess:
                pass


@asynccontextmanager
async def recorder_process(
    config: Path,
    log_path: Path,
    metrics_port: int | None = None,
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = ("--log-format", "json"),
) -> AsyncIterator[RecorderProcess]:
    """A recorder process (see :meth:`RecorderProcess.start`) that never outlives the block,
    whatever happens to the test."""
    recorder = await RecorderProcess.start(config, log_path, metrics_port, env=env, args=args)
    try:
        yield recorder
    finally:
        await recorder.ensure_dead()
