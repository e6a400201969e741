"""How fast ``export_day`` writes a big day, against DuckDB alone writing the same rows.

Run from the repository root::

    python -m tests.benchmarks.export_speed --rows 1000000
    python -m tests.benchmarks.export_speed --rows 1000000 --pg postgresql://postgres@127.0.0.1/test

It builds a store of ``--rows`` correctly chained frames on one trading day
(SQLite in a temporary directory, or a fresh schema of the PostgreSQL database
given with ``--pg``, dropped afterwards; see :mod:`tests.benchmarks.store_builder`;
not timed), then measures, interleaved so that both sides see the same load on
a shared machine, ``--repeat`` times each:

* **export**: :func:`queries.export.export_day` end to end (open the store, plan,
  read it through ADBC, write per-account zstd Parquet files, hash, fsync,
  publish, manifest);
* **DuckDB alone**: the same rows, already in memory as one Arrow table in the
  export's column layout, written by DuckDB with ``COPY … TO … (FORMAT parquet,
  COMPRESSION zstd)``: once with DuckDB's default zstd level, once with the
  export's level (:data:`queries.partfile.ZSTD_LEVEL`).

The best run of each counts (wall clock), and the process CPU time of that run
is shown too (less sensitive to other load). Prints one JSON object, then a
readable table. The benchmark issue's target: ``ratio`` (export rows/s ÷
DuckDB-alone rows/s, i.e. DuckDB's seconds ÷ the export's seconds) ≥ 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from sqlalchemy import text

from queries.export import export_day
from queries.layout import file_columns, to_file_batch
from queries.partfile import ZSTD_LEVEL
from queries.source import StoreReader
from recorder.store import normalize_url, open_engine

from .store_builder import DAY, build_store

_STORE_COLUMNS = file_columns("events")


def _timed(action: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``action()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def _best(runs: list[tuple[float, float]]) -> dict[str, Any]:
    wall, cpu = min(runs)
    return {"s": round(wall, 3), "cpu_s": round(cpu, 3), "runs_s": [round(w, 3) for w, _ in runs]}


def measure(url: str, rows: int, repeat: int, workdir: Path) -> dict[str, Any]:
    """Time the export of the store at ``url`` and DuckDB alone, in ``workdir``."""
    with StoreReader(url) as reader:
        batches = [
            to_file_batch(b, "events") for b in reader.events(day=DAY, columns=_STORE_COLUMNS)
        ]
    table = pa.Table.from_batches(batches).combine_chunks()
    del batches
    con = duckdb.connect()
    con.register("frames", table)
    target = workdir / "duckdb.parquet"
    copy = f"COPY (SELECT * FROM frames) TO '{target}' (FORMAT parquet, COMPRESSION zstd"
    duck_sql = {
        "default level": f"{copy})",
        "same level": f"{copy}, COMPRESSION_LEVEL {ZSTD_LEVEL})",
    }
    export_runs: list[tuple[float, float]] = []
    duck_runs: dict[str, list[tuple[float, float]]] = {name: [] for name in duck_sql}
    duck_bytes: dict[str, int] = {}
    manifests = []
    for run in range(repeat):
        out = workdir / f"export-{run}"
        export_runs.append(_timed(lambda out=out: manifests.append(export_day(url, DAY, out))))
        for name, sql in duck_sql.items():
            target.unlink(missing_ok=True)
            duck_runs[name].append(_timed(lambda sql=sql: con.execute(sql)))
            duck_bytes[name] = target.stat().st_size
    con.close()
    assert all(m.rows("events") == rows for m in manifests)

    export = _best(export_runs)
    export["rows_per_s"] = round(rows / export["s"])
    export["bytes"] = manifests[-1].total_bytes
    duck = {}
    for name, runs in duck_runs.items():
        figures = _best(runs)
        figures["rows_per_s"] = round(rows / figures["s"])
        figures["bytes"] = duck_bytes[name]
        figures["ratio"] = round(figures["s"] / export["s"], 2)
        duck[name] = figures
    return {"rows": rows, "repeat": repeat, "export": export, "duckdb_alone": duck}


def table(result: dict[str, Any]) -> str:
    """The figures as a small aligned table."""
    head = f"{'':<28}{'seconds':>9}{'cpu s':>8}{'rows/s':>12}{'MB':>7}{'ratio':>7}"
    lines = [head]
    rows = [("export", result["export"])] + [
        (f"DuckDB alone, {name}", figures) for name, figures in result["duckdb_alone"].items()
    ]
    for label, f in rows:
        ratio = f"{f['ratio']:>7.2f}" if "ratio" in f else ""
        lines.append(
            f"{label:<28}{f['s']:>9.3f}{f['cpu_s']:>8.2f}{f['rows_per_s']:>12,}"
            f"{f['bytes'] / 1e6:>7.1f}{ratio}"
        )
    machine = result["machine"]
    lines.append(
        f"{result['rows']:,} rows, {result['accounts']} accounts, {machine['store']}, "
        f"{machine['cpus']} CPUs; best of {result['repeat']} interleaved runs; "
        "ratio = export rows/s / DuckDB rows/s (target >= 0.5)"
    )
    return "\n".join(lines)


@contextmanager
def _postgresql_store(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of ``base_url``, dropped afterwards."""
    schema = f"export_speed_{uuid.uuid4().hex[:10]}"
    admin = open_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = normalize_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", metavar="URL", help="build the store in this PostgreSQL database")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.accounts < 1 or args.repeat < 1:
        parser.error("--rows, --accounts and --repeat must be at least 1")
    accounts = [f"{100000 + n}" for n in range(args.accounts - 1)] + ["0042"]
    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        workdir = Path(tmp)
        sqlite = nullcontext(f"sqlite:///{workdir}/store.db")
        with _postgresql_store(args.pg) if args.pg else sqlite as url:
            started = time.perf_counter()
            build_store(url, args.rows, accounts)
            build_s = time.perf_counter() - started
            result = measure(url, args.rows, args.repeat, workdir)
    result.update(
        accounts=args.accounts,
        store_build_s=round(build_s, 1),
        zstd_level=ZSTD_LEVEL,
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pyarrow": pa.__version__,
            "duckdb": duckdb.__version__,
            "store": "PostgreSQL" if args.pg else "SQLite",
        },
    )
    print(json.dumps(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
