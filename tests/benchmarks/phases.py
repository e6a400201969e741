"""The measurements of one ingest benchmark run, one function each.

Clocks: every process stamps with ``time.time_ns()`` (one machine, one clock),
so "first frame sent" (the server), "last frame received" (the drain client)
and "row visible in the store" (the harness) compare directly.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from . import analytics_speed, export_speed
from .processes import (
    ProcessCpu,
    Profiler,
    RecorderProcess,
    ServerProcess,
    run_drain,
    write_config,
)
from .stores import Watcher

MB = 1024 * 1024
POLL_S = 0.02  # store polling while ingesting (bounds the end-time error)
LATENCY_POLL_S = 0.005  # store polling while measuring latency
#: Unsequenced frames the server adds per account: the ack and ``replay-complete``.
EXTRA_ROWS_PER_ACCOUNT = 2


def limit(
    frames: int, accounts: int, frame_bytes: int, *, self_test: bool = True, in_runs: bool = False
) -> dict[str, Any]:
    """The drain client's rate over the same stream: the machine's limit (and the server's
    own rate into a discarding socket, unless not ``self_test``); ``in_runs``: the drain
    reads as the recorder's sessions do (``tests.benchmarks.drain --in-runs``)."""
    server = ServerProcess(frames, accounts, frame_bytes, self_test=self_test)
    try:
        ready = server.ready
        per_account = ready["frames"] // accounts
        drained = run_drain(ready["ws_url"], ready["accounts"], per_account, in_runs=in_runs)
        done = server.wait("done", timeout_s=60)
    finally:
        server.stop()
    sent = ready["frames"]
    seconds = (drained["last_rx_ns"] - done["first_sent_ns"]) / 1e9
    return {
        "frames": sent,
        "seconds": round(seconds, 3),
        "fps": round(sent / seconds),
        "cpu_s": drained["cpu_s"],
        "cpu_us_per_frame": round(drained["cpu_s"] / sent * 1e6, 2),
        "server_self_test_fps": ready["self_test_fps"],
        "server_send_fps": round(sent / ((done["last_sent_ns"] - done["first_sent_ns"]) / 1e9)),
        "server_build_s": ready["build_s"],
        "frame_bytes_avg": ready["frame_bytes_avg"],
    }


def _start(
    server: ServerProcess, store_url: str, workdir: Path, name: str, **recorder: Any
) -> RecorderProcess:
    """``recorder`` holds ``[recorder]`` settings, and ``signing_key`` to sign checkpoints."""
    config = write_config(workdir / f"{name}.toml", server.ready, store_url, **recorder)
    return RecorderProcess(config, workdir / f"{name}.log")


def _fail(recorder: RecorderProcess, what: str) -> RuntimeError:
    recorder.stop()
    log = Path(recorder.log.name).read_text(errors="replace")[-3000:]
    return RuntimeError(f"{what}; recorder log tail:\n{log}")


def _wait_rows(
    watcher: Watcher,
    recorder: RecorderProcess,
    expected: int,
    timeout_s: float,
    poll_s: float = POLL_S,
) -> int:
    """Poll until ``expected`` rows are committed; returns the ``time_ns`` that saw them."""
    deadline = time.monotonic() + timeout_s
    while watcher.max_id() < expected:
        if not recorder.alive():
            raise _fail(recorder, "the recorder exited while ingesting")
        if time.monotonic() > deadline:
            raise _fail(recorder, f"not all {expected} rows committed within {timeout_s:g} s")
        time.sleep(poll_s)
    return time.time_ns()


def per_process(
    before: dict[int, ProcessCpu], after: dict[int, ProcessCpu], frames: int
) -> list[dict[str, Any]]:
    """CPU of each recorder process between two readings, in all and per frame.

    A process started in between counts from zero; one that ended in between is missing
    (its CPU cannot be read any more), so the harness reads just before stopping the recorder.
    """
    out = []
    for pid, end in after.items():
        start = before.get(pid, ProcessCpu(end.role, 0.0, 0.0))
        cpu_s = end.cpu_s - start.cpu_s
        main_s = end.main_thread_cpu_s - start.main_thread_cpu_s
        out.append(
            {
                "role": end.role,
                "pid": pid,
                "cpu_s": round(cpu_s, 2),
                "cpu_us_per_frame": round(cpu_s / frames * 1e6, 2),
                "main_thread_us_per_frame": round(main_s / frames * 1e6, 2),
                "other_threads_us_per_frame": round((cpu_s - main_s) / frames * 1e6, 2),
            }
        )
    return out


def profile_path(profile: Path, role: str) -> Path:
    """Where the profile of the recorder's process ``role`` goes: ``PROFILE-ROLE.txt``."""
    return profile.with_name(f"{profile.stem}-{role.replace(' ', '-')}{profile.suffix}")


def ingest(
    frames: int,
    accounts: int,
    frame_bytes: int,
    store_url: str,
    watcher: Watcher,
    workdir: Path,
    name: str,
    timeout_s: float,
    *,
    signing_key: Path | None = None,
    checkpoint_interval_s: float | None = None,
    profile: Path | None = None,
    profile_gil: bool = False,
) -> dict[str, Any]:
    """The recorder's rate from first frame sent to last row committed, CPU per process and
    the peak of the sum of its processes' RSS (signing checkpoints with ``signing_key`` when
    given; sampled by py-spy into ``profile`` from the first commit on, when given).

    CPU is read from the first row committed to the last (start-up and imports left out)
    and divided by the rows committed in between.
    """
    server = ServerProcess(frames, accounts, frame_bytes, self_test=False)
    recorder = _start(server, store_url, workdir, name, signing_key=signing_key,
                      checkpoint_interval_s=checkpoint_interval_s)  # fmt: skip
    profilers: list[Profiler] = []
    try:
        sent = server.ready["frames"]
        expected = sent + EXTRA_ROWS_PER_ACCOUNT * accounts
        while (first := watcher.max_id()) == 0:
            if not recorder.alive():
                raise _fail(recorder, "the recorder exited before writing anything")
            time.sleep(0.002)
        cpu_first = recorder.cpu()
        if profile is not None:  # one per process: PROFILE-ROLE.txt (recorder, writer)
            profilers = [
                Profiler(pid, profile_path(profile, cpu.role), gil=profile_gil)
                for pid, cpu in cpu_first.items()
            ]
        committed_ns = _wait_rows(watcher, recorder, expected, timeout_s)
        cpu_last = recorder.cpu()
        for profiler in profilers:
            profiler.stop()
        done = server.wait("done", timeout_s=60)
        exit_code = recorder.stop()
    finally:
        for profiler in profilers:
            profiler.stop()
        recorder.stop()
        server.stop()
    seconds = (committed_ns - done["first_sent_ns"]) / 1e9
    counted = max(1, expected - first)
    processes = per_process(cpu_first, cpu_last, counted)
    cpu = sum(p["cpu_s"] for p in processes)
    return {
        "frames": sent,
        "rows": watcher.max_id(),
        "seconds": round(seconds, 3),
        "fps": round(sent / seconds),
        "cpu_s": round(cpu, 2),
        "cpu_us_per_frame": round(cpu / counted * 1e6, 2),
        "processes": processes,
        "rss_peak_mb": round(recorder.peak_rss / MB, 1),
        "exit_code": exit_code,
    }


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(
    rate: float,
    seconds: float,
    accounts: int,
    frame_bytes: int,
    store_url: str,
    watcher: Watcher,
    workdir: Path,
    name: str,
) -> dict[str, Any]:
    """Receipt-to-commit latency of frames paced at ``rate`` frames/s for ``seconds``.

    Method: the harness polls ``SELECT id, received_at_ns FROM events WHERE id > last``
    every 5 ms; a row first seen by a poll was committed before that poll's query
    ended, so ``(time the query ended) - received_at_ns`` is an upper bound of its
    receipt-to-commit latency (too high by at most one poll interval plus the query).
    """
    frames = max(accounts, int(rate * seconds))
    server = ServerProcess(frames, accounts, frame_bytes, rate=rate, self_test=False)
    recorder = _start(server, store_url, workdir, name)
    latencies_ms: list[float] = []
    try:
        expected = server.ready["frames"] + EXTRA_ROWS_PER_ACCOUNT * accounts
        last = 0
        deadline = time.monotonic() + seconds * 3 + 60
        while last < expected:
            rows = watcher.rows_after(last)
            seen_ns = time.time_ns()
            if rows:
                last = rows[-1][0]
                latencies_ms.extend((seen_ns - received) / 1e6 for _, received in rows)
            if not recorder.alive():
                raise _fail(recorder, "the recorder exited while measuring latency")
            if time.monotonic() > deadline:
                raise _fail(recorder, "latency run did not finish")
            time.sleep(LATENCY_POLL_S)
        exit_code = recorder.stop()
    finally:
        recorder.stop()
        server.stop()
    return {
        "rate_fps": rate,
        "frames": len(latencies_ms),
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p99_ms": round(_percentile(latencies_ms, 0.99), 1),
        "max_ms": round(max(latencies_ms), 1),
        "poll_interval_ms": LATENCY_POLL_S * 1000,
        "rss_peak_mb": round(recorder.peak_rss / MB, 1),
        "exit_code": exit_code,
    }


def stall(
    frames: int,
    accounts: int,
    frame_bytes: int,
    db_path: Path,
    store_url: str,
    watcher: Watcher,
    workdir: Path,
    stall_s: float,
    timeout_s: float,
) -> dict[str, Any]:
    """Peak RSS while the SQLite store is locked for ``stall_s`` and the server keeps sending.

    The harness holds SQLite's write lock (``BEGIN EXCLUSIVE``) so every commit of
    the recorder waits or fails with "database is locked" and is retried; reading
    goes on until the recorder's bounded queue is full, then backpressure stops it
    (and the server, once the socket buffers are full). Afterwards every frame
    must be committed.
    """
    server = ServerProcess(frames, accounts, frame_bytes, self_test=False)
    recorder = _start(server, store_url, workdir, "stall")
    lock = sqlite3.connect(db_path, isolation_level=None, timeout=60)
    try:
        expected = server.ready["frames"] + EXTRA_ROWS_PER_ACCOUNT * accounts
        while watcher.max_id() == 0:
            if not recorder.alive():
                raise _fail(recorder, "the recorder exited before writing anything")
            time.sleep(0.01)
        time.sleep(0.2)
        rss_before = recorder.rss()
        lock.execute("BEGIN EXCLUSIVE")
        recorder.reset_window()
        rows_at_lock = watcher.max_id()
        time.sleep(stall_s)
        rows_at_release = watcher.max_id()
        rss_peak = recorder.window_peak_rss
        lock.execute("ROLLBACK")
        released = time.monotonic()
        _wait_rows(watcher, recorder, expected, timeout_s)
        recovered_s = time.monotonic() - released
        exit_code = recorder.stop()
    finally:
        lock.close()
        recorder.stop()
        server.stop()
    return {
        "stall_s": stall_s,
        "frames": server.ready["frames"],
        "rows_committed_during_stall": rows_at_release - rows_at_lock,
        "rss_before_mb": round(rss_before / MB, 1),
        "rss_peak_mb": round(rss_peak / MB, 1),
        "all_committed": watcher.max_id() == expected,
        "catch_up_s": round(recovered_s, 2),
        "exit_code": exit_code,
    }


def export(url: str, rows: int, repeat: int, workdir: Path) -> dict[str, Any]:
    """``export_day`` over the recorded day vs DuckDB alone (tests.benchmarks.export_speed)."""
    result = export_speed.measure(url, rows, repeat, workdir)
    duck = result["duckdb_alone"]
    return {
        "rows": rows,
        "s": result["export"]["s"],
        "rows_per_s": result["export"]["rows_per_s"],
        "duckdb_alone_s": duck["default level"]["s"],
        "duckdb_alone_rows_per_s": duck["default level"]["rows_per_s"],
        "ratio": duck["default level"]["ratio"],
        "ratio_same_zstd_level": duck["same level"]["ratio"],
    }


def analytics(db_path: Path, rows: int, repeat: int) -> dict[str, Any]:
    """gaps, audit and reconcile over the recorded day (tests.benchmarks.analytics_speed)."""
    out: dict[str, Any] = {"rows": rows}
    for command in analytics_speed.COMMANDS:
        runs = [
            analytics_speed.time_command(command, db_path, db_path.parent) for _ in range(repeat)
        ]
        out[f"{command}_s"] = min(r["seconds"] for r in runs)
    total = sum(out[f"{c}_s"] for c in analytics_speed.COMMANDS)
    out["total_s"] = round(total, 2)
    out["rows_per_s"] = round(rows / total)
    return out
