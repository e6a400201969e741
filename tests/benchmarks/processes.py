"""The processes of one benchmark run: the frame server, the drain client, the recorder.

Each is a child process of the harness (``sys.executable -m ...``), so none of
them shares a GIL with another or with the harness's store polling. The
recorder is the real ``studio-recorder run --config`` (``python -m recorder``),
its resident memory sampled by a thread while it runs. "The recorder" is a process
tree: the ``run`` process and every process it starts (today none; issue 16 moves
the writer into one), so memory is the sum of their RSS and CPU is read per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

_SAMPLE_S = 0.05
#: How often the sampler looks for new processes in the recorder's tree (a scan of /proc,
#: a few ms: not every sample, so the harness stays off the cores it measures).
_TREE_S = 1.0


ROOT = Path(__file__).resolve().parents[2]


def _repo_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _end(proc: subprocess.Popen[Any], sig: int, timeout_s: float) -> None:
    """Send ``sig`` to ``proc`` if it still runs and wait for it; kill it after ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
        _end(self.proc, signal.SIGTERM, timeout_s=10)


def run_drain(
    url: str, accounts: list[str], per_account: int, *, in_runs: bool = False
) -> dict[str, Any]:
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
        *(["--in-runs"] if in_runs else []),
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


@dataclass(frozen=True)
class ProcessCpu:
    """CPU seconds (user + system) of one process of the recorder, at one moment."""

    role: str
    cpu_s: float
    main_thread_cpu_s: float  # the thread that runs trio's event loop in the recorder


def _role(proc: psutil.Process, root_pid: int) -> str:
    """``recorder`` for the ``run`` process, ``writer`` for its writer process; another
    child by its ``-m`` module or its name."""
    if proc.pid == root_pid:
        return "recorder"
    try:
        cmdline = proc.cmdline()
    except psutil.Error:
        return f"child {proc.pid}"
    if "-m" in cmdline[:-1]:
        if cmdline[cmdline.index("-m") + 1] == "recorder.writermain":
            return "writer"
        return f"{cmdline[cmdline.index('-m') + 1]} {proc.pid}"
    return f"{proc.name()} {proc.pid}"


def _rss_sum(procs: list[psutil.Process]) -> int:
    """The sum of the RSS of ``procs``, those that ended since the list was made left out."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def _cpu(proc: psutil.Process, role: str) -> ProcessCpu:
    times = proc.cpu_times()
    main = next((t for t in proc.threads() if t.id == proc.pid), None)
    return ProcessCpu(
        role=role,
        cpu_s=times.user + times.system,
        main_thread_cpu_s=0.0 if main is None else main.user_time + main.system_time,
    )


class RecorderProcess:
    """The real recorder (``python -m recorder run --config``): the sum of the RSS of its
    processes sampled every 50 ms (:attr:`peak_rss`), their CPU on demand."""

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

    def processes(self) -> list[psutil.Process]:
        """The ``run`` process and every live process it started (children, recursively)."""
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return [self.ps]

    def _sample(self) -> None:
        tree, found_at = self.processes(), time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - found_at > _TREE_S:
                tree, found_at = self.processes(), time.monotonic()
            if not self.ps.is_running():
                return
            rss = _rss_sum(tree)
            self.peak_rss = max(self.peak_rss, rss)
            self.window_peak_rss = max(self.window_peak_rss, rss)
            self._stop.wait(_SAMPLE_S)

    def reset_window(self) -> None:
        self.window_peak_rss = 0

    def rss(self) -> int:
        """The sum of the RSS of the recorder's processes now."""
        return _rss_sum(self.processes())

    def cpu(self) -> dict[int, ProcessCpu]:
        """CPU seconds so far of each live process of the recorder, by pid."""
        out = {}
        for proc in self.processes():
            # One that ended is left out: its CPU cannot be read any more (see phases).
            with contextlib.suppress(psutil.Error):
                out[proc.pid] = _cpu(proc, _role(proc, self.ps.pid))
        return out

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, then wait: the recorder's exit code (0 on a clean shutdown)."""
        self._stop.set()
        _end(self.proc, signal.SIGTERM, timeout_s=60)
        self.log.close()
        return int(self.proc.returncode)


class Profiler:
    """py-spy sampling one process of the recorder into collapsed stacks.

    ``py-spy record --format raw --threads --nonblocking``: one line per distinct stack
    (thread included) with its sample count, readable with
    ``flamegraph.pl`` or by counting frames. ``--gil`` keeps only samples of the thread
    holding the GIL. Non-blocking sampling does not pause the recorder, but py-spy takes
    CPU on the same machine: figures of a profiled run are not comparable with others. One
    profiler per process (``--subprocesses`` merges a child's samples into its parent's
    process and thread names, so the writer process's time could not be told apart).
    """

    def __init__(self, pid: int, out: Path, *, gil: bool = False, rate_hz: int = 100) -> None:
        exe = Path(sys.executable).with_name("py-spy")
        args = [
            str(exe) if exe.exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "--rate",
            str(rate_hz),
            "--output",
            str(out),
        ]
        if gil:
            args.append("--gil")
        self.out = out
        self.log = out.with_suffix(".log").open("w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """SIGINT: py-spy writes its output and exits."""
        _end(self.proc, signal.SIGINT, timeout_s=60)
        self.log.close()
