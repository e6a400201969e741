"""Ingest benchmark: the recorder against the machine's limit, in one run on one machine.

Run from the repository root::

    python -m tests.benchmarks.ingest                # 1,000,000 frames, 4 accounts
    python -m tests.benchmarks.ingest --quick        # 20,000 frames: a smoke run
    python -m tests.benchmarks.ingest --one-account  # issue 16: one 200,000-frame burst, 3 rounds
    python -m tests.benchmarks.ingest --burst        # the same burst on 4 connections

Steps (each process separate: server, client, recorder, harness):

1. **limit** — a server process (:mod:`tests.benchmarks.server`) sends ``--frames``
   pre-encoded ~400-byte frames to ``--accounts`` accounts as fast as the socket
   allows; a minimal trio-websocket client (:mod:`tests.benchmarks.drain`)
   receives and discards them. Rate: first frame sent → last frame received.
2. **recorder** — the same stream into the real ``studio-recorder run --config``
   on SQLite (WAL) and, when ``STUDIO_RECORDER_TEST_PG_URL`` names a reachable
   server (and not ``--skip-pg``), PostgreSQL. Rate: first frame sent → last row
   committed (the harness polls ``max(id)``); CPU per frame; peak RSS.
3. **latency** — frames paced at 2,000 frames/s; receipt-to-commit p50/p99
   (see :func:`tests.benchmarks.phases.latency` for the method).
4. **stall** — the harness holds SQLite's write lock for ``--stall-s`` while the
   server keeps sending: peak RSS must stay bounded, nothing may be lost.
5. **export / analytics** — over the SQLite day just recorded, with
   :mod:`tests.benchmarks.export_speed` (against DuckDB alone writing the same
   rows from an in-memory Arrow table) and :mod:`tests.benchmarks.analytics_speed`.

``--burst`` runs another measurement instead of these steps (issue 16;
:mod:`tests.benchmarks.burst`): one replay burst of ``--frames`` (default 200,000)
frames over ``--accounts`` connections (default 4), and ``--repeat`` rounds (default 3)
of the bare drain, the recorder on SQLite and the recorder on PostgreSQL, the fastest of
each kept; ``--one-account`` is ``--burst --accounts 1``. ``--profile DIR`` adds py-spy
profiles of the recorder taking the same burst.

The recorder's peak RSS is the sum over its processes (the ``run`` process and every
process it starts), its CPU is reported per process (``processes``).

Prints one JSON object (every figure; ``--json-only`` prints nothing else), then a
table with the issue's targets, met or missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from recorder.signing import write_new_key

from . import burst, phases
from .report import burst_table, burst_targets, table, targets
from .stores import postgres_reachable, postgres_store, sqlite_store

PG_ENV = "STUDIO_RECORDER_TEST_PG_URL"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.ingest",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="default 1,000,000 (--burst: 200,000)"
    )
    parser.add_argument("--accounts", type=int, default=None, help="default 4")
    parser.add_argument(
        "--one-account",
        action="store_true",
        help="issue 16: one account's replay burst (--burst --accounts 1)",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="issue 16: a replay burst on --accounts connections, drain against recorder, "
        "--repeat rounds",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="--burst: py-spy profiles of the recorder (extra runs, not counted) into DIR",
    )
    parser.add_argument("--frame-bytes", type=int, default=400, help="average frame size")
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20,000 frames, short latency and stall phases",
    )
    parser.add_argument("--json-only", action="store_true", help="print only the JSON object")
    parser.add_argument("--latency-rate", type=float, default=2000.0, help="frames/s")
    parser.add_argument("--latency-s", type=float, default=None, help="default 15 (quick: 2)")
    parser.add_argument("--stall-s", type=float, default=None, help="default 20 (quick: 1)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="export/analytics runs, or --burst rounds; best kept (default 3, quick: 1)",
    )
    parser.add_argument(
        "--settle-max-s",
        type=float,
        default=20.0,
        help="--burst: longest wait for a quiet machine before each measured run (0: none)",
    )
    parser.add_argument(
        "--checkpoint-interval-s",
        type=float,
        default=None,
        help="[signing] checkpoint_interval_s of the signing run (default: the recorder's)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated steps to skip: signing,latency,stall,export,analytics",
    )
    args = parser.parse_args(argv)
    if args.one_account and args.accounts not in (None, 1):
        parser.error("--one-account records one account: leave out --accounts")
    args.burst = args.burst or args.one_account
    if args.profile is not None and not args.burst:
        parser.error("--profile needs --burst or --one-account")
    if args.accounts is None:
        args.accounts = 1 if args.one_account else 4
    if args.frames is None:
        args.frames = 20_000 if args.quick else 200_000 if args.burst else 1_000_000
    if args.latency_s is None:
        args.latency_s = 2.0 if args.quick else 15.0
    if args.stall_s is None:
        args.stall_s = 1.0 if args.quick else 20.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.frames < args.accounts or args.accounts < 1 or args.frame_bytes < 1:
        parser.error("need --accounts >= 1, --frames >= --accounts and --frame-bytes >= 1")
    if args.repeat < 1:
        parser.error("need --repeat >= 1")
    if args.settle_max_s < 0:
        parser.error("need --settle-max-s >= 0")
    args.skip = {s for s in args.skip.split(",") if s}
    return args


def _postgres(args: argparse.Namespace, skipped: dict[str, str], key: str) -> str | None:
    """The PostgreSQL URL to record into, or None with the reason in ``skipped[key]``."""
    pg_url = None if args.skip_pg else os.environ.get(PG_ENV)
    if pg_url:
        problem = postgres_reachable(pg_url)
        if problem:
            skipped[key] = f"PostgreSQL not reachable: {problem}"
            return None
    else:
        skipped[key] = "--skip-pg" if args.skip_pg else f"{PG_ENV} unset"
    return pg_url


def _result(args: argparse.Namespace) -> dict[str, Any]:
    """The machine, the parameters and an empty ``skipped``: the head of every result."""
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "cpu_model": cpu_model(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": round(os.getloadavg()[0], 2),
        },
        "params": {
            "frames": args.frames,
            "accounts": args.accounts,
            "frame_bytes": args.frame_bytes,
            "frame_bytes_avg": None,
            "quick": args.quick,
            "one_account": args.one_account,
            "burst": args.burst,
            "repeat": args.repeat,
        },
        "skipped": {},
    }


def run_burst(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """``--burst``: the rounds of :mod:`tests.benchmarks.burst` and their targets."""
    result = _result(args)
    say = (lambda _m: None) if args.json_only else (lambda m: print(m, file=sys.stderr))
    pg_url = _postgres(args, result["skipped"], "postgresql")
    result["burst"] = burst.run(args, workdir, pg_url, say)
    result["params"]["frame_bytes_avg"] = result["burst"].pop("frame_bytes_avg")
    result["targets"] = burst_targets(result)
    return result


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    result = _result(args)
    say = (lambda _m: None) if args.json_only else (lambda m: print(m, file=sys.stderr))
    frames, accounts, size = args.frames, args.accounts, args.frame_bytes
    timeout_s = max(120.0, frames / 2_000)

    say("limit: drain client ...")
    result["limit"] = phases.limit(frames, accounts, size)
    result["params"]["frame_bytes_avg"] = result["limit"]["frame_bytes_avg"]
    limit_fps = result["limit"]["fps"]

    def with_ratio(run: dict[str, Any]) -> dict[str, Any]:
        run["ratio"] = round(run["fps"] / limit_fps, 2)
        return run

    pg_url = _postgres(args, result["skipped"], "recorder_postgresql")

    say("recorder on SQLite ...")
    with sqlite_store(workdir, "ingest") as (url, watcher):
        run_ = phases.ingest(frames, accounts, size, url, watcher, workdir, "sqlite", timeout_s)
        result["recorder_sqlite"] = with_ratio(run_)
        rows = watcher.max_id()
    db_path = workdir / "ingest.db"

    result["recorder_sqlite_signed"] = None
    if "signing" not in args.skip:
        say("recorder on SQLite, signing checkpoints ...")
        key = workdir / "signing-key"
        write_new_key(key)
        with sqlite_store(workdir, "ingest-signed") as (url, watcher):
            run_ = phases.ingest(frames, accounts, size, url, watcher, workdir, "signed",
                                 timeout_s, signing_key=key,
                                 checkpoint_interval_s=args.checkpoint_interval_s)  # fmt: skip
            result["recorder_sqlite_signed"] = with_ratio(run_)
        with closing(sqlite3.connect(workdir / "ingest-signed.db")) as db:
            run_["checkpoints"] = db.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
        # Time per frame signed / unsigned - 1: the cost of attestation in this run.
        run_["overhead"] = round(result["recorder_sqlite"]["fps"] / run_["fps"] - 1, 3)

    result["recorder_postgresql"] = None
    if pg_url:
        say("recorder on PostgreSQL ...")
        with postgres_store(pg_url) as (url, watcher):
            run_ = phases.ingest(frames, accounts, size, url, watcher, workdir, "pg", timeout_s)
            result["recorder_postgresql"] = with_ratio(run_)

    result["latency_sqlite"] = result["latency_postgresql"] = None
    if "latency" not in args.skip:
        say(f"latency at {args.latency_rate:g} frames/s on SQLite ...")
        with sqlite_store(workdir, "latency") as (url, watcher):
            result["latency_sqlite"] = phases.latency(
                args.latency_rate, args.latency_s, accounts, size, url, watcher, workdir, "lat"
            )
        if pg_url:
            say(f"latency at {args.latency_rate:g} frames/s on PostgreSQL ...")
            with postgres_store(pg_url) as (url, watcher):
                result["latency_postgresql"] = phases.latency(
                    args.latency_rate,
                    args.latency_s,
                    accounts,
                    size,
                    url,
                    watcher,
                    workdir,
                    "lat-pg",
                )

    result["stall"] = None
    if "stall" not in args.skip:
        say(f"store stall of {args.stall_s:g} s on SQLite ...")
        stall_frames = min(frames, 400_000)
        with sqlite_store(workdir, "stall") as (url, watcher):
            result["stall"] = phases.stall(
                stall_frames,
                accounts,
                size,
                workdir / "stall.db",
                url,
                watcher,
                workdir,
                args.stall_s,
                timeout_s,
            )

    result["export"] = None
    if "export" not in args.skip:
        say("export of the recorded day ...")
        result["export"] = phases.export(f"sqlite:///{db_path}", rows, args.repeat, workdir)
    result["analytics"] = None
    if "analytics" not in args.skip:
        say("gaps, audit, reconcile over the recorded day ...")
        result["analytics"] = phases.analytics(db_path, rows, args.repeat)
    result["targets"] = targets(result)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        result = (run_burst if args.burst else run)(args, Path(tmp))
    print(json.dumps(result), flush=True)
    if not args.json_only:
        print((burst_table if args.burst else table)(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
