"""The benchmark harnesses run end to end and report every figure (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
