"""One replay burst: the recorder against the bare drain, round by round (issue 16).

Run as ``python -m tests.benchmarks.ingest --burst`` (``--accounts`` connections, default 4)
or ``--one-account`` (see :mod:`tests.benchmarks.ingest`). Each round measures, one after
the other on the same machine: the bare trio-websocket drain
(:func:`tests.benchmarks.phases.limit`) on the same connections, the same drain reading as
the recorder's sessions do (``drain_in_runs``: trio-websocket queues a network read in one
go, which the stock drain does not, so the recorder can outrun the stock drain; against
this one, ``ratio_in_runs``, it cannot), then the recorder on a
fresh SQLite file and, when reachable, a fresh PostgreSQL schema
(:func:`tests.benchmarks.phases.ingest`), every time the same ``--frames`` burst, split
over the accounts, sent as fast as the socket allows. The machine is shared, and other
work only ever slows a run down, so the fastest of the rounds counts: ``ratio`` is the
best recorder rate ÷ the best drain rate, and ``ratios`` are each round's own. Peak RSS
(the sum over the recorder's processes) is the highest of any round.

``--profile DIR`` adds, after the measured rounds, one recorder run per store under py-spy
(not counted: the sampler takes CPU), once sampling every thread and once only the thread
holding the GIL, written to ``DIR/STORE-cpu.txt`` and ``DIR/STORE-gil.txt`` as collapsed
stacks; the top frames of each are in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from recorder.store import open_engine

from . import phases
from .stores import postgres_store, sqlite_store

PROFILE_TOP = 12  # frames listed per profile
#: Before each measured run the machine settles: the previous run's writes flushed (the
#: page cache, PostgreSQL's checkpoint) and the CPUs this idle, or the wait given up after
#: ``--settle-max-s`` (default 20 s).
SETTLED_BUSY_PERCENT = 10.0
_LINE = re.compile(r":\d+\)$")


def _remove_sqlite(workdir: Path, name: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        (workdir / f"{name}.db{suffix}").unlink(missing_ok=True)


def _record(
    store: str, pg_url: str | None, args: argparse.Namespace, workdir: Path, name: str,
    **profile: Any,
) -> dict[str, Any]:  # fmt: skip
    """One recorder run of the burst into a fresh store (``store``: sqlite or postgresql)."""
    timeout_s = max(120.0, args.frames / 2_000)
    shape = (args.frames, args.accounts, args.frame_bytes)
    if store == "sqlite":
        try:
            with sqlite_store(workdir, name) as (url, watcher):
                return phases.ingest(*shape, url, watcher, workdir, name, timeout_s, **profile)
        finally:
            _remove_sqlite(workdir, name)
    assert pg_url is not None
    with postgres_store(pg_url) as (url, watcher):
        server_before = postgres_server_cpu_s()
        run = phases.ingest(*shape, url, watcher, workdir, name, timeout_s, **profile)
        server_after = postgres_server_cpu_s(settled=True)
    run["server_cpu_us_per_frame"] = (
        None
        if server_before is None or server_after is None
        else round((server_after - server_before) / args.frames * 1e6, 2)
    )
    return run


def postgres_server_cpu_s(*, settled: bool = False) -> float | None:
    """CPU seconds of a PostgreSQL server on this machine so far: its postmaster, the
    backends alive now and those it has reaped (the postmaster's children's times). None
    when no server runs here (a remote one: its CPU is not this machine's).

    A backend that has just exited counts nowhere until the postmaster reaps it:
    ``settled`` reads until two readings 0.2 s apart agree (at most 3 s)."""
    reading = _postgres_cpu_reading()
    deadline = time.monotonic() + 3.0
    while settled and reading is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        again = _postgres_cpu_reading()
        if again == reading:
            break
        reading = again
    return reading


def _postgres_cpu_reading() -> float | None:
    names = ("postgres", "postmaster")
    total, found = 0.0, False
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in names:
            continue
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
            parent = proc.parent()
            if parent is None or parent.name() not in names:  # the postmaster
                total += times.children_user + times.children_system
            found = True
    return total if found else None


def settle(pg_url: str | None, max_s: float) -> float:
    """Let the last run's after-effects pass, so every run starts alike: without this the
    second round on PostgreSQL measured 0.61-0.65 where the first measured 0.83-0.86 in
    three commands out of three, likely against the checkpoint of the first round's 100 MB
    of WAL. Returns the seconds waited."""
    began = time.monotonic()
    os.sync()
    if pg_url is not None:
        with contextlib.suppress(Exception):  # CHECKPOINT needs a superuser: best effort
            engine = open_engine(pg_url)
            try:
                with engine.connect() as conn:
                    conn.execute(text("CHECKPOINT"))
            finally:
                engine.dispose()
    while time.monotonic() - began < max_s:
        if psutil.cpu_percent(interval=0.5) < SETTLED_BUSY_PERCENT:
            break
    return round(time.monotonic() - began, 1)


def _function(frame: str) -> str:
    """``name (file:line)`` → ``name (file)``: samples of one function counted together."""
    return _LINE.sub(")", frame)


def top_frames(path: Path, top: int = PROFILE_TOP) -> dict[str, Any]:
    """Where the samples of a py-spy collapsed-stack file fall: the share of each thread,
    and the functions with the most samples at the top of the stack (self time; a thread
    with no Python frame on its stack is counted as ``(no Python frame)``)."""
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        process = frames[0].partition(":")[0] if frames[0].startswith("process ") else ""
        thread = next((f for f in frames if f.startswith("thread (")), "thread (?): ?")
        samples = int(count)
        total += samples
        threads[f"{process} {thread.partition(': ')[2]}".strip()] += samples
        leaf = frames[-1]
        leaves["(no Python frame)" if leaf is thread else _function(leaf)] += samples
    share = (lambda n: round(n / total, 3)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "threads": {name: share(n) for name, n in threads.most_common()},
        "top_self": [{"frame": f, "share": share(n)} for f, n in leaves.most_common(top)],
    }


def _best_drain(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The fastest of the rounds' ``key`` drains: its rate and CPU, and every round's rate."""
    best = max((r[key] for r in rounds), key=lambda d: d["fps"])
    return {
        "fps": best["fps"],
        "fps_rounds": [r[key]["fps"] for r in rounds],
        "cpu_us_per_frame": best["cpu_us_per_frame"],
    }


def _best(runs: list[dict[str, Any]], drain_fps: int, in_runs_fps: int) -> dict[str, Any]:
    best = max(runs, key=lambda r: r["fps"])
    return {
        "fps": best["fps"],
        "ratio": round(best["fps"] / drain_fps, 2),
        "ratios": [r["ratio"] for r in runs],
        "ratio_in_runs": round(best["fps"] / in_runs_fps, 2),
        "cpu_us_per_frame": best["cpu_us_per_frame"],
        "processes": best["processes"],
        "server_cpu_us_per_frame": best.get("server_cpu_us_per_frame"),
        "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
        "exit_codes": sorted({r["exit_code"] for r in runs}),
    }


def run(
    args: argparse.Namespace, workdir: Path, pg_url: str | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """``--repeat`` rounds of drain, SQLite, PostgreSQL (when ``pg_url``), then the summary."""
    rounds: list[dict[str, Any]] = []
    stores = ["sqlite"] + (["postgresql"] if pg_url else [])
    for n in range(1, args.repeat + 1):
        settled_s = settle(pg_url, args.settle_max_s)
        one: dict[str, Any] = {"load_average_before": round(os.getloadavg()[0], 2)}
        say(f"round {n}/{args.repeat}: drain client (load {one['load_average_before']}) ...")
        one["drain"] = phases.limit(args.frames, args.accounts, args.frame_bytes, self_test=n == 1)
        one["drain"]["settled_s"] = settled_s
        settled_s = settle(pg_url, args.settle_max_s)
        say(f"round {n}/{args.repeat}: drain client reading in runs ...")
        one["drain_in_runs"] = phases.limit(
            args.frames, args.accounts, args.frame_bytes, self_test=False, in_runs=True
        )
        one["drain_in_runs"]["settled_s"] = settled_s
        for store in stores:
            settled_s = settle(pg_url, args.settle_max_s)
            say(f"round {n}/{args.repeat}: recorder on {store} ...")
            run_ = _record(store, pg_url, args, workdir, f"burst-{store}-{n}")
            run_["settled_s"] = settled_s
            run_["ratio"] = round(run_["fps"] / one["drain"]["fps"], 2)
            run_["ratio_in_runs"] = round(run_["fps"] / one["drain_in_runs"]["fps"], 2)
            one[store] = run_
        rounds.append(one)

    drain, in_runs = _best_drain(rounds, "drain"), _best_drain(rounds, "drain_in_runs")
    drain["server_self_test_fps"] = rounds[0]["drain"]["server_self_test_fps"]
    result: dict[str, Any] = {
        "rounds": rounds,
        "drain": drain,
        "drain_in_runs": in_runs,
        "frame_bytes_avg": rounds[0]["drain"]["frame_bytes_avg"],
        "profiles": None,
    }
    for store in ("sqlite", "postgresql"):
        runs = [r[store] for r in rounds if store in r]
        result[store] = _best(runs, drain["fps"], in_runs["fps"]) if runs else None

    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        result["profiles"] = {}
        for store in stores:
            for kind in ("cpu", "gil"):
                say(f"profile ({kind}) of the recorder on {store} ...")
                out = args.profile / f"{store}-{kind}.txt"
                run_ = _record(store, pg_url, args, workdir, f"profile-{store}-{kind}",
                               profile=out, profile_gil=kind == "gil")  # fmt: skip
                for process in run_["processes"]:
                    path = phases.profile_path(out, process["role"])
                    result["profiles"][path.stem] = {
                        "file": str(path),
                        "fps_while_profiled": run_["fps"],
                        **top_frames(path),
                    }
    return result
