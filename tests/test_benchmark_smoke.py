"""The benchmark harnesses run end to end and report every figure (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from sqlalchemy import text

from recorder.store import open_engine
from tests.benchmarks.burst import postgres_server_cpu_s, top_frames

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 2_000
ACCOUNTS = 2


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ingest_harness_reports_every_figure() -> None:
    args = [
        sys.executable, "-m", "tests.benchmarks.ingest", "--frames", str(FRAMES),
        "--accounts", str(ACCOUNTS), "--skip-pg", "--json-only", "--latency-s", "1",
        "--stall-s", "0.5", "--repeat", "1",
    ]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json-only prints one JSON object and nothing else"
    result = json.loads(lines[0])

    rows = FRAMES + 2 * ACCOUNTS  # every frame, plus each account's ack and replay-complete
    assert result["params"]["frames"] == FRAMES
    assert 300 < result["params"]["frame_bytes_avg"] < 500
    assert result["machine"]["cpus"] >= 1

    limit = result["limit"]
    assert limit["frames"] == FRAMES
    assert limit["fps"] > 0
    assert limit["cpu_us_per_frame"] > 0
    assert limit["server_self_test_fps"] > 0

    sqlite = result["recorder_sqlite"]
    assert sqlite["rows"] == rows
    assert sqlite["exit_code"] == 0
    assert sqlite["fps"] > 0
    assert sqlite["ratio"] == round(sqlite["fps"] / limit["fps"], 2)
    assert 10 < sqlite["rss_peak_mb"] < 2_000
    _check_processes(sqlite)
    signed = result["recorder_sqlite_signed"]
    assert signed["rows"] == rows
    assert signed["exit_code"] == 0
    assert signed["checkpoints"] >= ACCOUNTS  # at least the shutdown's, one per account
    assert signed["overhead"] == round(sqlite["fps"] / signed["fps"] - 1, 3)
    assert result["recorder_postgresql"] is None
    assert result["skipped"]["recorder_postgresql"] == "--skip-pg"

    latency = result["latency_sqlite"]
    assert latency["frames"] == max(ACCOUNTS, 2_000) + 2 * ACCOUNTS
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert latency["exit_code"] == 0

    stall = result["stall"]
    assert stall["all_committed"] is True
    assert stall["exit_code"] == 0
    assert stall["rss_peak_mb"] > 0

    export = result["export"]
    assert export["rows"] == rows
    assert export["rows_per_s"] > 0
    assert export["ratio"] > 0

    analytics = result["analytics"]
    assert analytics["rows"] == rows
    assert analytics["total_s"] == pytest.approx(
        analytics["gaps_s"] + analytics["audit_s"] + analytics["reconcile_s"], abs=0.02
    )

    targets = {t["name"]: t for t in result["targets"]}
    assert len(targets) == 9
    assert targets["ingest PostgreSQL / limit"]["met"] is None
    assert targets["ingest SQLite / limit"]["value"] == sqlite["ratio"]
    measured = [t for t in targets.values() if t["value"] is not None]
    assert len(measured) == 6
    assert all(isinstance(t["met"], bool) for t in measured)


def _check_processes(run: dict[str, object]) -> None:
    """The recorder's CPU per process: the ``run`` process and its writer process, adding up
    to the total."""
    processes = run["processes"]
    assert isinstance(processes, list)
    assert [p["role"] for p in processes] == ["recorder", "writer"]
    assert sum(p["cpu_s"] for p in processes) == pytest.approx(run["cpu_s"], abs=0.02)
    assert sum(p["cpu_us_per_frame"] for p in processes) == pytest.approx(
        run["cpu_us_per_frame"], abs=0.05
    )
    assert run["cpu_us_per_frame"] > 0  # (one process's share of 2,000 frames may round to 0)
    for process in processes:
        assert process["cpu_us_per_frame"] >= 0
        assert process["main_thread_us_per_frame"] >= 0
        assert process["main_thread_us_per_frame"] + process[
            "other_threads_us_per_frame"
        ] == pytest.approx(process["cpu_us_per_frame"], abs=0.02)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ingest_one_account_burst_reports_every_figure() -> None:
    """``--one-account``: rounds of drain and recorder on one connection, the best of each."""
    rounds = 2
    args = [sys.executable, "-m", "tests.benchmarks.ingest", "--one-account", "--frames",
            str(FRAMES), "--repeat", str(rounds), "--skip-pg", "--json-only",
            "--settle-max-s", "0"]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json-only prints one JSON object and nothing else"
    result = json.loads(lines[0])

    assert result["params"]["accounts"] == 1
    assert result["params"]["one_account"] is True
    assert result["params"]["burst"] is True
    assert result["params"]["repeat"] == rounds
    assert 300 < result["params"]["frame_bytes_avg"] < 500
    burst = result["burst"]
    assert len(burst["rounds"]) == rounds
    for one in burst["rounds"]:
        assert one["load_average_before"] >= 0
        assert one["drain"]["frames"] == FRAMES
        sqlite = one["sqlite"]
        assert sqlite["rows"] == FRAMES + 2  # the frames, the ack and replay-complete
        assert sqlite["exit_code"] == 0
        assert sqlite["settled_s"] >= 0
        assert one["drain"]["settled_s"] >= 0
        assert sqlite["ratio"] == round(sqlite["fps"] / one["drain"]["fps"], 2)
        assert one["drain_in_runs"]["frames"] == FRAMES
        in_runs = one["drain_in_runs"]["fps"]
        assert sqlite["ratio_in_runs"] == round(sqlite["fps"] / in_runs, 2)
        _check_processes(sqlite)
        assert "postgresql" not in one
    drain = burst["drain"]
    assert drain["fps_rounds"] == [r["drain"]["fps"] for r in burst["rounds"]]
    assert drain["fps"] == max(drain["fps_rounds"])
    assert drain["server_self_test_fps"] > 0
    in_runs = burst["drain_in_runs"]
    assert in_runs["fps_rounds"] == [r["drain_in_runs"]["fps"] for r in burst["rounds"]]
    assert in_runs["fps"] == max(in_runs["fps_rounds"])
    assert in_runs["cpu_us_per_frame"] > 0
    best = burst["sqlite"]
    assert best["fps"] == max(r["sqlite"]["fps"] for r in burst["rounds"])
    assert best["ratio"] == round(best["fps"] / drain["fps"], 2)
    assert best["ratio_in_runs"] == round(best["fps"] / in_runs["fps"], 2)
    assert best["ratios"] == [r["sqlite"]["ratio"] for r in burst["rounds"]]
    assert best["rss_peak_mb"] == max(r["sqlite"]["rss_peak_mb"] for r in burst["rounds"])
    assert 10 < best["rss_peak_mb"] < 2_000
    assert best["exit_codes"] == [0]
    assert burst["postgresql"] is None
    assert result["skipped"]["postgresql"] == "--skip-pg"
    assert burst["profiles"] is None

    targets = {t["name"]: t for t in result["targets"]}
    assert targets["one account, SQLite / drain"]["value"] == best["ratio"]
    assert targets["one account, PostgreSQL / drain"]["met"] is None
    assert targets["peak RSS, recorder processes summed"]["value"] == best["rss_peak_mb"]


def test_profile_summary_counts_functions_and_threads(tmp_path: Path) -> None:
    """py-spy's collapsed stacks → shares per thread and the top functions (self time)."""
    process = 'process 7:"python -m recorder run"'
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        f"{process};thread (7): MainThread;run (trio/_core/_run.py:10);"
        "process_frame (wsproto/frame_protocol.py:330) 5\n"
        f"{process};thread (7): MainThread;run (trio/_core/_run.py:10);"
        "process_frame (wsproto/frame_protocol.py:341) 1\n"
        f"{process};thread (9): writer;append (recorder/appender.py:365) 3\n"
        f"{process};thread (7): MainThread 1\n"
    )
    summary = top_frames(stacks)
    assert summary["samples"] == 10
    assert summary["threads"] == {"process 7 MainThread": 0.7, "process 7 writer": 0.3}
    assert summary["top_self"] == [
        {"frame": "process_frame (wsproto/frame_protocol.py)", "share": 0.6},
        {"frame": "append (recorder/appender.py)", "share": 0.3},
        {"frame": "(no Python frame)", "share": 0.1},
    ]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_archive_read_benchmark_reports_every_figure() -> None:
    """A tiny day through both archives (about 8 s, most of it interpreters starting)."""
    args = [sys.executable, "-m", "tests.benchmarks.archive_read", "--rows", "2000",
            "--repeat", "1", "--json-only"]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, "--json-only prints one JSON object and nothing else"
    result = json.loads(lines[0])

    assert result["accounts"] == 4
    assert 1_000 < result["frames"] < 3_000
    assert result["day_files"] == 8  # events and connection_log of each account
    assert result["repeat"] == 1
    local, s3 = result["local"], result["s3"]
    assert local["seconds"] > 0
    assert s3["seconds"] > 0
    assert local["s3_sent_bytes"] == 0
    assert s3["s3_sent_bytes"] == result["day_bytes"]  # every file and the manifest, once
    assert s3["s3_requests"] > result["day_files"]
    assert result["ratio"] == round(s3["seconds"] / local["seconds"], 3)
    assert result["target"] == 1.5
    assert result["met"] is (result["ratio"] <= result["target"])


def test_handoff_benchmark_reports_every_figure() -> None:
    """The issue-16 design measurement: every record arrives rebuilt, every figure is there."""
    from tests.benchmarks.handoff import measure

    figures = measure(2_000, 500)
    assert set(figures) == {"frames", "batch", "sender_cpu_us_per_frame",
                            "sender_wall_us_per_frame", "receiver_cpu_us_per_frame",
                            "wire_bytes_per_frame"}  # fmt: skip
    assert figures["frames"] == 2_000
    assert figures["wire_bytes_per_frame"] > 400  # the frames' text, and the other fields


@pytest.mark.timeout(60)
def test_postgres_server_cpu_counts_a_backend_that_has_gone(pg_url: str) -> None:
    """The burst's PostgreSQL server CPU includes backends that exited during the run (the
    postmaster's children's times), not only the processes alive at the end."""
    before = postgres_server_cpu_s()
    if before is None:
        pytest.skip("no PostgreSQL server process on this machine")
    engine = open_engine(pg_url)
    try:
        with engine.connect() as conn:  # about half a second of the backend's CPU
            backend = psutil.Process(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
            conn.execute(text("SELECT count(*) FROM generate_series(1, 5000000)")).scalar()
            spent = backend.cpu_times()
    finally:
        engine.dispose()  # the backend exits; its CPU moves to the postmaster's children
    after = postgres_server_cpu_s(settled=True)
    assert after is not None
    assert spent.user + spent.system >= 0.1
    assert after - before >= 0.8 * (spent.user + spent.system)
