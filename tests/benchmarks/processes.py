"""The processes of one benchmark run: the frame server, the drain client, the recorder.

Each is a child process of the harness (``sys.executable -m ...``), so none of
them shares a GIL with another or with the harness's store polling. The
recorder is the real ``studio-recorder run --config`` (``python -m recorder``),
its resident memory sampled by a thread while it runs.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

_SAMPLE_S = 0.05


ROOT = Path(__file__).resolve().parents[2]


def _repo_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class ServerProcess:
    """``python -m tests.benchmarks.server``; its JSON lines arrive on :attr:`events`."""

    def __init__(
        self,
        frames: int,
        accounts: int,
        frame_bytes: int,
        *,
        rate: float = 0.0,
        self_test: bool = True,
    ) -> None:
        args = [
            sys.executable,
            "-m",
            "tests.benchmarks.server",
            "--frames",
            str(frames),
            "--accounts",
            str(accounts),
            "--frame-bytes",
            str(frame_bytes),
        ]
        if rate > 0:
            args += ["--mode", "live", "--rate", str(rate)]
        if not self_test:
            args.append("--no-self-test")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, text=True, env=_repo_env(), cwd=ROOT
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        self.ready = self.wait("ready", timeout_s=600)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.startswith("{"):
                self.events.put(json.loads(line))

    def wait(self, event: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self.events.empty()):
                raise RuntimeError(f"the benchmark server did not report {event!r}")
            try:
                message = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if message["event"] == event:
                return message

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run_drain(url: str, accounts: list[str], per_account: int) -> dict[str, Any]:
    args = [
        sys.executable,
        "-m",
        "tests.benchmarks.drain",
        "--url",
        url,
        "--accounts",
        ",".join(accounts),
        "--frames-per-account",
        str(per_account),
    ]
    result = subprocess.run(
        args, capture_output=True, text=True, env=_repo_env(), cwd=ROOT, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"drain client failed: {result.stderr.strip()[-2000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def write_config(
    path: Path,
    ready: dict[str, Any],
    store_url: str,
    *,
    signing_key: Path | None = None,
    checkpoint_interval_s: float | None = None,
    **recorder: Any,
) -> Path:
    """A recorder config pointing at the benchmark server and ``store_url`` (signing its
    checkpoints with ``signing_key`` when given, every ``checkpoint_interval_s``)."""
    settings = {"liveness_timeout_s": 600, "subscribe_timeout_s": 60, **recorder}
    lines = [
        "[studio]",
        f'url = "{ready["ws_url"]}"',
        f'token_url = "{ready["token_url"]}"',
        'client_id = "bench"',
        f"accounts = {json.dumps(ready['accounts'])}",
        "[store]",
        f"url = {json.dumps(store_url)}",
        "[recorder]",
        *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
        "[metrics]",
        'listen = ""',
    ]
    if signing_key is not None:
        lines += ["[signing]", f"key_file = {json.dumps(str(signing_key))}"]
        if checkpoint_interval_s is not None:
            lines.append(f"checkpoint_interval_s = {checkpoint_interval_s}")
    path.write_text("\n".join(lines) + "\n")
    return path


class RecorderProcess:
    """The real recorder (``python -m recorder run --config``), RSS sampled every 50 ms."""

    def __init__(self, config: Path, log_path: Path) -> None:
        env = {**_repo_env(), "STUDIO_CLIENT_SECRET": "bench-secret"}
        self.log = log_path.open("w")
        args = [
            sys.executable,
            "-m",
            "recorder",
            "run",
            "--config",
            str(config),
            "--log-level",
            "WARNING",
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.ps = psutil.Process(self.proc.pid)
        self.peak_rss = 0
        self.window_peak_rss = 0  # reset by :meth:`reset_window`
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.ps.memory_info().rss
            except psutil.Error:
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.window_peak_rss = max(self.window_peak_rss, rss)
            self._stop.wait(_SAMPLE_S)

    def reset_window(self) -> None:
        self.window_peak_rss = 0

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, then wait: the recorder's exit code (0 on a clean shutdown)."""
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return int(self.proc.returncode)
