"""How much longer ``gaps`` takes over a day read from the S3 archive than over the same day
read from a local-directory archive, in the same run.

Builds (or reuses, ``--store``) the SQLite store of ``analytics_speed`` (one realistic day of
~1 M frames, four accounts), archives its day twice with ``studio-query archive``: into a
local directory and into a SeaweedFS bucket with Object Lock (``weed mini`` from the test
extra, started here on free ports, stopped at the end). Then times ``studio-query gaps
--config C --day D --json`` as a user runs it (a fresh process: imports, the archive read,
DuckDB, output) through two configurations whose store is empty (migrated, holding no day),
so that the day comes from the archive: one for each archive. Runs alternate (local, S3,
local, S3 …); the fastest of ``--repeat`` counts for each, the median is printed too. The
two answers must be the same.

Bytes: the day's files in the archive (what the manifest lists, and the manifest), and what
the S3 server sent per ``gaps`` run (its own Prometheus counter of bytes sent for the
bucket), with the number of requests it answered.

Run: ``python -m tests.benchmarks.archive_read`` (``--rows N``, default 1,000,000; ``--store
PATH`` reuses a store built before; ``--repeat N``, default 5; ``--json-only``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from queries.exportdir import ExportDir
from queries.layout import manifest_path
from recorder.migrate import upgrade
from recorder.store import open_engine
from tests.benchmarks.analytics_speed import ACCOUNTS, DAY, build_store
from tests.support.cli import cli_env
from tests.support.config import write_config
from tests.support.s3 import S3Server, seaweedfs

#: What the S3 read may cost against the local one.
TARGET_RATIO: Final = 1.5
BUCKET: Final = "worm"
PREFIX: Final = "studio"
KINDS: Final = ("local", "s3")


def _config(path: Path, store: Path, archive: str) -> Path:
    """A configuration of ``store`` with ``[archive]`` (TOML text)."""
    write_config(path, ACCOUNTS, f"sqlite:///{store}")
    path.write_text(path.read_text() + archive)
    return path


def _query(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """``studio-query ARGS`` in a fresh process: wall s, CPU s, stdout (exit 0 required)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "queries", *args], capture_output=True,
                          text=True, env=env, timeout=900, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"studio-query {args[0]} failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, done.stdout


def _counters(server: S3Server) -> dict[str, float]:
    """The S3 server's bytes sent for the bucket and requests answered, so far."""
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    found = {"sent_bytes": 0.0, "requests": 0.0}
    for line in text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if match is None:
            continue
        name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
        if name == "SeaweedFS_s3_bucket_traffic_sent_bytes_total" and f'"{BUCKET}"' in labels:
            found["sent_bytes"] += value
        elif name == "SeaweedFS_s3_request_total":
            found["requests"] += value
    return found


def _day(archive: Path) -> dict[str, int]:
    """The day in a local archive: frames, bytes (its files and manifest) and files."""
    manifest = ExportDir(archive).manifest(DAY)
    size = sum((archive / entry.path).stat().st_size for entry in manifest.files)
    size += (archive / manifest_path(DAY)).stat().st_size
    return {"frames": manifest.rows("events"), "day_bytes": size,
            "day_files": len(manifest.files)}  # fmt: skip


def _answer(stdout: str) -> Any:
    """The gaps report, less the name of the source it was read from."""
    report = json.loads(stdout)
    report.pop("source", None)
    return report


def measure(store: Path, scratch: Path, repeat: int) -> dict[str, Any]:
    """Archive the store's day both ways, then time gaps over each archive (see the module)."""
    empty = scratch / "empty.db"
    engine = open_engine(f"sqlite:///{empty}")
    upgrade(engine)
    engine.dispose()
    local_archive = scratch / "archive"
    with seaweedfs(scratch / "s3") as server:
        client: Any = server.client()
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        env = {**cli_env(), **server.env}
        archives = {
            "local": f'[archive]\nurl = "{local_archive}"\n',
            "s3": f'[archive]\nurl = "s3://{BUCKET}/{PREFIX}"\n'
            f'endpoint_url = "{server.endpoint}"\nregion = "us-east-1"\nretention_days = 1\n',
        }
        archive_s: dict[str, float] = {}
        reads: dict[str, Path] = {}
        for kind, settings in archives.items():
            full = _config(scratch / f"store-{kind}.toml", store, settings)
            args = ["archive", "--config", str(full), "--through", DAY.isoformat(), "--json"]
            seconds, _, out = _query(args, env)
            statuses = [day["status"] for day in json.loads(out)]
            if statuses != ["archived"]:
                raise SystemExit(f"archive to {kind}: {statuses}")
            archive_s[kind] = round(seconds, 2)
            reads[kind] = _config(scratch / f"read-{kind}.toml", empty, settings)
        load = os.getloadavg()[0]
        runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
        answers: dict[str, Any] = {}
        for _ in range(repeat):
            for kind in KINDS:
                before = _counters(server)
                args = ["gaps", "--config", str(reads[kind]), "--day", DAY.isoformat(), "--json"]
                seconds, cpu, out = _query(args, env)
                after = _counters(server)
                runs[kind].append({"seconds": seconds, "cpu_s": cpu,
                                   **{k: after[k] - before[k] for k in after}})  # fmt: skip
                answers[kind] = _answer(out)
        if answers["local"] != answers["s3"]:
            raise SystemExit("gaps answered differently from the two archives")
    figures: dict[str, Any] = {}
    for kind in KINDS:
        best = min(runs[kind], key=lambda run: run["seconds"])
        figures[kind] = {
            "seconds": round(best["seconds"], 3),
            "median_s": round(statistics.median(r["seconds"] for r in runs[kind]), 3),
            "cpu_s": round(best["cpu_s"], 2),
            "s3_sent_bytes": int(best["sent_bytes"]),
            "s3_requests": int(best["requests"]),
            "archive_s": archive_s[kind],
        }
    ratio = round(figures["s3"]["seconds"] / figures["local"]["seconds"], 3)
    return {
        "day": DAY.isoformat(),
        "accounts": len(answers["local"]["accounts"]),
        **_day(local_archive),
        "cpus": os.cpu_count(),
        "load_average_before": round(load, 2),
        "repeat": repeat,
        "local": figures["local"],
        "s3": figures["s3"],
        "ratio": ratio,
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
    }


def render(result: dict[str, Any]) -> str:
    """The figures as a table."""
    lines = [
        f"gaps of {result['day']} ({result['frames']:,} frames of {result['accounts']} accounts; "
        f"{result['day_bytes']:,} bytes in {result['day_files']} files) from each archive; "
        f"{result['cpus']} CPUs, load average {result['load_average_before']:.2f} before; "
        f"best of {result['repeat']}",
        f"{'archive':<8} {'wall s':>7} {'median s':>9} {'CPU s':>6} {'S3 bytes sent':>14} "
        f"{'requests':>9} {'archive s':>10}",
    ]
    for kind in KINDS:
        r = result[kind]
        lines.append(
            f"{kind:<8} {r['seconds']:>7.2f} {r['median_s']:>9.2f} {r['cpu_s']:>6.2f} "
            f"{r['s3_sent_bytes']:>14,} {r['s3_requests']:>9} {r['archive_s']:>10.2f}"
        )
    verdict = "met" if result["met"] else "MISSED"
    lines.append(f"S3 / local: {result['ratio']:.2f} (target ≤ {result['target']}: {verdict})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per archive (best is kept)")
    parser.add_argument("--store", type=Path, help="reuse this store instead of building one")
    parser.add_argument("--json-only", action="store_true", help="print the JSON object only")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="archive-read-") as name:
        scratch = Path(name)
        store = options.store
        built_s = None
        if store is None:
            store = scratch / "analytics-speed.db"
            started = time.perf_counter()
            build_store(store, options.rows)
            built_s = round(time.perf_counter() - started, 1)
        result = {"store_built_s": built_s, **measure(store, scratch, max(1, options.repeat))}
    print(json.dumps(result))
    if not options.json_only:
        print(render(result))


if __name__ == "__main__":
    main()
