"""``studio-query export``: real stores, real files, real failures; nothing mocked.

The day under test is 2024-06-10 in America/New_York: it starts at 04:00 UTC
(1_717_992_000 s) and ends 24 hours later (EDT all day).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from queries.errors import QueryError
from queries.export import export_day
from queries.exportcheck import verify_export
from queries.layout import (
    CONNECTION_LOG_FILE_SCHEMA,
    EVENTS_FILE_SCHEMA,
    account_file,
    encode_account,
    open_dataset,
)
from queries.parallel import OrderedReads, plan_chunks
from queries.source import StoreReader
from recorder import migrate
from recorder.appender import Appender
from recorder.chain import GENESIS_HASH, verify_chain
from recorder.records import LogRecord
from recorder.schema import connection_log, events
from tests.benchmarks.store_builder import build_store
from tests.support import stores
from tests.support.cli import one_line_error, run, run_process
from tests.support.faults import chattr
from tests.support.frames import DAY, UNPARSED, frame

START_NS = 1_717_992_000 * 10**9  # 2024-06-10 00:00 America/New_York
END_NS = START_NS + 24 * 3600 * 10**9
HOUR_NS = 3600 * 10**9


def record_day(engine: Engine) -> None:
    """Two accounts with frames around DAY, and sessions of three accounts around it.

    Appended in this order (ids follow): "0042" has 2 frames the day before
    (its chain starts before DAY); DAY has 5 frames of "0042" and 4 of "100000";
    one late frame of the day before arrives in the middle; "100000" has a
    frame the day after.
    """
    appender = Appender(engine)
    before = DAY - dt.timedelta(days=1)
    appender.append([frame("0042", 1, at_ns=START_NS - 2 * HOUR_NS, day=before),
                     frame("0042", 2, at_ns=START_NS - HOUR_NS, day=before)])  # fmt: skip
    appender.append([frame("0042", 3, at_ns=START_NS + 1),
                     frame("100000", 1, at_ns=START_NS + 2),
                     frame("0042", 4, at_ns=START_NS + 3, **UNPARSED, raw="not json \x01",
                           replayed=False),
                     frame("100000", 2, at_ns=START_NS + 4, raw_kind="binary",
                           raw="AAEC")])  # fmt: skip
    appender.append([frame("0042", 5, at_ns=START_NS - 5, day=before)])  # a late frame
    appender.append([frame("0042", 6, at_ns=START_NS + 6),
                     frame("100000", 3, at_ns=START_NS + 7),
                     frame("0042", 7, at_ns=END_NS - 1), frame("100000", 4, at_ns=END_NS - 2),
                     frame("0042", 8, at_ns=END_NS - 3)])  # fmt: skip
    appender.append([frame("100000", 5, at_ns=END_NS + 1, day=DAY + dt.timedelta(days=1))])
    sessions = [  # (session, account, [(at_ns, event)]): True when it overlaps DAY
        ("inside", "100000", [(START_NS + HOUR_NS, "opened"), (START_NS + 2 * HOUR_NS, "closed")]),
        ("before", "100000", [(START_NS - 9 * HOUR_NS, "opened"), (START_NS - 1, "closed")]),
        ("across", "100000", [(START_NS - HOUR_NS, "opened"), (START_NS + HOUR_NS, "closed")]),
        ("at-start", "100000", [(START_NS - HOUR_NS, "opened"), (START_NS, "closed")]),
        ("after", "100000", [(END_NS, "opened"), (END_NS + HOUR_NS, "closed")]),
        ("open-ended", "0042", [(START_NS - 48 * HOUR_NS, "opened"),
                                (START_NS - 47 * HOUR_NS, "subscribed")]),
        ("spanning", "0042", [(START_NS - HOUR_NS, "opened"), (END_NS + HOUR_NS, "closed")]),
        ("rejected", "77", [(START_NS + 5, "opened"), (START_NS + 6, "subscribe-rejected"),
                            (START_NS + 7, "closed")]),
    ]  # fmt: skip
    logs = [LogRecord(s, a, at, event) for s, a, rows in sessions for at, event in rows]
    appender.append([], sorted(logs, key=lambda log: log.at_ns))


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def as_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as dicts, in id order."""
    return sorted(table.to_pylist(), key=lambda row: row["id"])


def read_dataset(out: Path, table: str) -> list[dict[str, Any]]:
    return as_rows(open_dataset(out, table).to_table())


def manifest_of(out: Path, day: dt.date = DAY) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((out / f"manifest/trading_day={day}.json").read_text())
    return document


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (hidden staging directories excluded) with its bytes."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and not str(path.relative_to(out)).startswith(".")
    }


def test_exported_day_is_exactly_the_stored_day(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    manifest = export_day(url_of(engine), DAY, out)

    stored = stores.rows(engine, events, events.c.trading_day == DAY)
    exported = read_dataset(out, "events")
    assert [r["id"] for r in exported] == [r["id"] for r in stored]
    assert len(exported) == 9
    for got, want in zip(exported, stored, strict=True):
        assert got["account_id"] == want["account_id"]  # "0042" stays a string
        assert got["trading_day"] == DAY
        assert got["received_at_ns"] == want["received_at_ns"]  # exact
        assert got["server_ts_ms"] == want["server_ts_ms"]
        assert got["raw"] == want["raw"]
        assert got["raw_kind"] == want["raw_kind"]
        assert got["chain_hash"] == want["chain_hash"]
        assert got["session_id"] == want["session_id"]
        assert got["sequence"] == want["sequence"]
        assert got["msg_type"] == want["msg_type"]
        assert got["replayed"] == want["replayed"]
    table = open_dataset(out, "events").to_table()
    assert table.schema.field("account_id").type == pa.string()
    assert table.schema.field("trading_day").type == pa.date32()
    table = table.sort_by("id")
    # Beside the exact integers, microsecond timestamps (nanoseconds truncated).
    assert table["received_at"].cast(pa.int64()).to_pylist() == [
        r["received_at_ns"] // 1000 for r in stored
    ]
    assert table["received_at"].type == pa.timestamp("us", tz="UTC")
    assert table["server_ts"].cast(pa.int64()).to_pylist() == [
        None if r["server_ts_ms"] is None else r["server_ts_ms"] * 1000 for r in stored
    ]
    assert table["server_ts"].type == pa.timestamp("us", tz="UTC")
    assert table["server_ts"].null_count == 1

    raw = EVENTS_FILE_SCHEMA.get_field_index("raw")
    for path in (out / "events").rglob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == EVENTS_FILE_SCHEMA
        metadata = pq.ParquetFile(path).metadata
        assert metadata.schema.column(raw).name == "raw"
        for group in range(metadata.num_row_groups):
            assert metadata.row_group(group).column(raw).compression == "ZSTD"
        columns = map(metadata.schema.column, range(metadata.num_columns))
        logical = {c.name: str(c.logical_type) for c in columns}
        for name in ("received_at", "server_ts"):  # what Spark reads: never nanoseconds
            assert logical[name].startswith("Timestamp(isAdjustedToUTC=true, timeUnit=micro")
        assert not [name for name, kind in logical.items() if "nano" in kind]
        ids = pq.read_table(path).column("id").to_pylist()
        assert ids == sorted(ids)
    for path in (out / "connection_log").rglob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == CONNECTION_LOG_FILE_SCHEMA

    # connection_log: every row of every session overlapping DAY, and nothing else.
    wanted = {"inside", "across", "at-start", "open-ended", "spanning", "rejected"}
    log = stores.rows(engine, connection_log, connection_log.c.session_id.in_(wanted))
    exported_log = read_dataset(out, "connection_log")
    assert [r["id"] for r in exported_log] == [r["id"] for r in log]
    assert len(exported_log) == 13
    assert [(r["account_id"], r["session_id"], r["event"]) for r in exported_log] == [
        (r["account_id"], r["session_id"], r["event"]) for r in log
    ]
    assert [r["at_ns"] for r in exported_log] == [r["at_ns"] for r in log]
    assert exported_log[0]["at_ns"] == START_NS - 48 * HOUR_NS  # 2024-06-08 04:00 UTC
    assert exported_log[0]["logged_at"] == dt.datetime(2024, 6, 8, 4, tzinfo=dt.UTC)

    assert set(manifest.accounts) == {"0042", "100000", "77"}
    assert manifest.accounts["77"].events == 0
    assert manifest.accounts["77"].first_id is None
    assert manifest.accounts["77"].connection_log == 3


def test_manifest_matches_the_files_and_the_chain_verifies_from_the_export(
    engine: Engine, tmp_path: Path
) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    export_day(url_of(engine), DAY, out)
    document = manifest_of(out)
    assert document["format"] == "studio-recorder-export"
    assert document["format_version"] == 2
    assert document["trading_day"] == "2024-06-10"
    assert document["timezone"] == "America/New_York"
    assert document["schema_version"] == migrate.head_revision()
    assert document["tool_version"] == "0.1.0"
    stored = stores.rows(engine, events, events.c.trading_day == DAY)
    assert document["id_range"] == {"first": stored[0]["id"], "last": stored[-1]["id"]}

    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert [f["path"] for f in document["files"]] == on_disk  # every file, sorted by path
    assert len(on_disk) == 6  # 3 accounts x 2 tables
    for entry in document["files"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == pq.ParquetFile(out / entry["path"]).metadata.num_rows
        assert entry["path"] == (
            f"{entry['table']}/trading_day=2024-06-10/{account_file(entry['account_id'])}"
        )
        assert pq.read_table(out / entry["path"])["account_id"].unique().to_pylist() in (
            [entry["account_id"]],
            [],  # a file without rows
        )

    all_0042 = stores.rows(engine, events, events.c.account_id == "0042")
    day_0042 = [r for r in all_0042 if r["trading_day"] == DAY]
    log_0042 = stores.rows(engine, connection_log, connection_log.c.account_id == "0042")
    account = document["accounts"]["0042"]
    assert account == {
        "events": 5,
        "connection_log": 4,
        "first_id": day_0042[0]["id"],
        "last_id": day_0042[-1]["id"],
        "chain_anchor": all_0042[1]["chain_hash"],  # the frame before: 2nd of the day before
        "first_chain_hash": day_0042[0]["chain_hash"],
        "last_chain_hash": day_0042[-1]["chain_hash"],
        # The late frame of the day before sits between the 2nd and 3rd frame of the day.
        "chain_resume": [{"id": day_0042[2]["id"], "previous_hash": all_0042[4]["chain_hash"]}],
        "checkpoints": [],  # the store was recorded without a signing key
        # Its journal: the day's sessions are the account's first, so its chain from genesis.
        "log_chain_resume": [{"id": log_0042[0]["id"], "previous_hash": GENESIS_HASH}],
    }
    assert all_0042[4]["trading_day"] == DAY - dt.timedelta(days=1)
    assert all_0042[4]["id"] == day_0042[2]["id"] - 1
    assert document["accounts"]["100000"]["chain_anchor"] == GENESIS_HASH
    assert document["accounts"]["100000"]["chain_resume"] == []
    assert document["accounts"]["100000"]["connection_log"] == 6

    # What an auditor does with the archive alone.
    table = open_dataset(out, "events").to_table()
    for account_id, facts in document["accounts"].items():
        if not facts["events"]:
            continue
        mine = table.filter(pc.equal(table["account_id"], account_id)).sort_by("id")
        rows = as_rows(mine)  # every recorded field as stored, trading_day from the path
        # verify_chain per stretch of consecutive rows, each from its own starting hash.
        starts = {r["id"]: r["previous_hash"] for r in facts["chain_resume"]}
        stretches: list[tuple[str, list[dict[str, Any]]]] = []
        for row in rows:
            if not stretches or row["id"] in starts:
                stretches.append((starts.get(row["id"], facts["chain_anchor"]), []))
            stretches[-1][1].append(row)
        checked = 0
        for previous, stretch in stretches:
            broken, head, count = verify_chain(stretch, previous)
            assert broken is None
            checked += count
        assert checked == facts["events"]
        assert head == facts["last_chain_hash"]
        # Without the resume points the late frame looks like a break, exactly there.
        broken, _, _ = verify_chain(rows, facts["chain_anchor"])
        assert (broken is None) == (not facts["chain_resume"])


def test_reexport_is_byte_identical(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    export_day(url_of(engine), DAY, tmp_path / "one")
    export_day(url_of(engine), DAY, tmp_path / "two", workers=1)
    first, second = snapshot(tmp_path / "one"), snapshot(tmp_path / "two")
    assert len(first) == 7
    assert first == second
    export_day(url_of(engine), DAY, tmp_path / "one")  # over itself
    assert snapshot(tmp_path / "one") == first


def test_reexport_replaces_the_day_and_drops_stale_partitions(
    engine: Engine, tmp_path: Path
) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    export_day(url_of(engine), DAY, out)
    export_day(url_of(engine), DAY + dt.timedelta(days=1), out)  # another day: must stay
    other_day = snapshot(out)
    Appender(engine).append([frame("0042", 9, at_ns=START_NS + 100)])  # more rows arrive
    manifest = export_day(url_of(engine), DAY, out, accounts=["0042"])

    assert set(manifest.accounts) == {"0042"}
    assert manifest.accounts["0042"].events == 6
    day_dirs = sorted(p.name for p in (out / "events/trading_day=2024-06-10").iterdir())
    assert day_dirs == ["0042.parquet"]  # 100000 and 77 are gone with the old export
    assert [f["account_id"] for f in manifest_of(out)["files"]] == ["0042", "0042"]
    rows = read_dataset(out, "events")
    assert {r["account_id"] for r in rows if r["trading_day"] == DAY} == {"0042"}
    assert len([r for r in rows if r["trading_day"] == DAY]) == 6
    after = snapshot(out)
    for path, data in other_day.items():
        if "2024-06-11" in path:
            assert after[path] == data
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-export-")]


def test_empty_day_writes_an_empty_manifest(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    # Before anything was recorded (the open-ended session makes every later day non-empty).
    result = run_cli("export", "--db", url_of(engine), "--day", "2024-06-01", "--out", str(out))
    assert result.returncode == 0, result.stderr
    manifest_file = out / "manifest" / "trading_day=2024-06-01.json"
    assert result.stdout == f"no data for 2024-06-01: wrote an empty manifest {manifest_file}\n"
    document = manifest_of(out, dt.date(2024, 6, 1))
    assert document["accounts"] == {}
    assert document["files"] == []
    assert document["id_range"] == {"first": None, "last": None}
    assert not (out / "events").exists()


@pytest.mark.parametrize("account", ["../x", "a/b", "..", ".", "%2F", "a\\b", "ü", "_x", ".x"])
def test_crafted_account_ids_stay_inside_the_export(
    sqlite_url: str, tmp_path: Path, account: str
) -> None:
    from recorder import migrate
    from recorder.store import open_engine

    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)
    Appender(engine).append([frame(account, 1, at_ns=START_NS + 1)])
    engine.dispose()
    out = tmp_path / "deep" / "archive"
    export_day(sqlite_url, DAY, out)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".parquet", ".json")]
    assert len(files) == 3
    for path in files:
        assert path.resolve().is_relative_to(out.resolve())
    assert (out / "events" / "trading_day=2024-06-10" / account_file(account)).is_file()
    assert [r["account_id"] for r in read_dataset(out, "events")] == [account]
    assert list(manifest_of(out)["accounts"]) == [account]


def test_a_server_timestamp_beyond_microseconds_exports_exactly(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The store keeps any 64-bit server timestamp; its microsecond column is then null."""
    engine = stores.migrated(sqlite_url)
    far = [2**62, -(2**62), START_NS // 10**6]
    Appender(engine).append([frame("0042", n, at_ns=START_NS + n, server_ts_ms=ms)
                             for n, ms in enumerate(far, 1)])  # fmt: skip
    engine.dispose()
    out = tmp_path / "archive"
    export_day(sqlite_url, DAY, out)
    table = open_dataset(out).to_table(columns=["server_ts_ms", "server_ts"]).to_pydict()
    assert table["server_ts_ms"] == far
    assert table["server_ts"] == [None, None, dt.datetime(2024, 6, 10, 4, tzinfo=dt.UTC)]
    assert verify_export(out).ok


def test_encode_account() -> None:
    assert encode_account("0042") == "0042"
    assert encode_account("A-b_c.9") == "A-b_c.9"
    assert encode_account("a/b") == "a%2Fb"
    assert encode_account("..") == "%2E%2E"
    assert encode_account(".") == "%2E"
    assert encode_account("...") == "..."  # not a special name
    assert encode_account("%") == "%25"
    assert encode_account("é") == "%C3%A9"
    assert encode_account("a b~") == "a%20b%7E"
    with pytest.raises(ValueError, match="empty"):
        encode_account("")


def test_account_file_names_are_never_hidden() -> None:
    assert account_file("0042") == "0042.parquet"
    assert account_file("a/b") == "a%2Fb.parquet"
    assert account_file("..") == "%2E%2E.parquet"
    assert account_file("_x") == "%5Fx.parquet"  # Hive readers skip _… and .… files
    assert account_file(".x") == "%2Ex.parquet"
    assert account_file("x_.") == "x_..parquet"


def test_files_and_directories_are_owner_only(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    out = tmp_path / "new" / "archive"
    previous = os.umask(0)  # the most permissive umask: modes must not depend on it
    try:
        export_day(url_of(engine), DAY, out)
    finally:
        os.umask(previous)
    paths = [out.parent, out, *out.rglob("*")]
    assert len(paths) == 14  # 2 tables x (directory, day directory, 3 files), the manifest
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


def test_plan_chunks() -> None:
    assert [(c.first_id, c.last_id) for c in plan_chunks(3, 12, 4)] == [(3, 6), (7, 10), (11, 12)]
    assert [(c.first_id, c.last_id) for c in plan_chunks(5, 5, 4)] == [(5, 5)]
    assert [(c.first_id, c.last_id) for c in plan_chunks(1, 8, 4)] == [(1, 4), (5, 8)]


def test_ordered_reads_keep_order_and_use_their_own_connections(
    engine: Engine, tmp_path: Path
) -> None:
    import threading
    import time

    record_day(engine)
    seen: set[tuple[str, int]] = set()

    def read(reader: StoreReader, n: int) -> int:
        time.sleep(0.05 * (n % 3 == 0))  # later items finish first
        seen.add((threading.current_thread().name, id(reader)))
        return n * reader.count_events(day=DAY)

    with OrderedReads(url_of(engine), workers=3) as reads:
        assert list(reads.map(read, range(9))) == [n * 9 for n in range(9)]
    assert len({reader for _, reader in seen}) == len({thread for thread, _ in seen}) > 1


# -- a big day: several chunks, parallel reads, interruption -------------------------------


@pytest.fixture(scope="session")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """100,000 chained frames of 3 accounts on DAY (two chunks), SQLite; read-only."""
    path = stores.built_once(
        tmp_path_factory,
        "big-store.db",
        lambda path: build_store(f"sqlite:///{path}", 100_000, ["0042", "100000", "7"]),
    )
    return f"sqlite:///{path}"


def test_big_day_parallel_and_sequential_exports_are_identical(
    big_store: str, tmp_path: Path
) -> None:
    one = export_day(big_store, DAY, tmp_path / "one", workers=1)
    three = export_day(big_store, DAY, tmp_path / "three", workers=3)
    assert one == three
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "three")
    assert one.rows("events") == 100_000
    table = open_dataset(tmp_path / "one").to_table(columns=["id", "account_id"])
    assert sorted(table["id"].to_pylist()) == list(range(1, 100_001))
    ids_7 = table.filter(pc.equal(table["account_id"], "7"))["id"].to_pylist()
    assert ids_7 == list(range(3, 100_001, 3))  # round-robin: every third id, in id order
    assert one.accounts["7"].events == 33_333
    assert one.accounts["0042"].events == 33_334


def test_killed_export_leaves_the_previous_one_intact(big_store: str, tmp_path: Path) -> None:
    out = tmp_path / "archive"
    export_day(big_store, DAY, out, accounts=["0042"])
    before = snapshot(out)
    script = textwrap.dedent(f"""
        import datetime as dt, sys, time
        from queries.export import export_day

        def stall(written, total):
            print(written, total, flush=True)
            time.sleep(100)

        export_day({big_store!r}, dt.date(2024, 6, 10), {str(out)!r}, progress=stall)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        written, total = map(int, proc.stdout.readline().split())
        assert 0 < written < total == 100_000  # mid-export: files half written in staging
        staging = [p for p in out.iterdir() if p.name.startswith(".tmp-export-")]
        assert len(staging) == 1
        assert list(staging[0].rglob("*.parquet"))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(out) == before  # nothing under a final name changed or appeared
    rows = open_dataset(out).to_table(columns=["account_id"])
    assert set(rows["account_id"].to_pylist()) == {"0042"}
    # The next export removes what the killed one left behind.
    export_day(big_store, DAY, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert manifest_of(out)["accounts"].keys() == {"0042", "100000", "7"}


# -- real failures while writing and publishing ---------------------------------------------


def _writable(directory: Path) -> bool:
    probe = directory / ".probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """Make ``directory`` refuse new entries: mode 0500, or the immutable flag for root."""
    directory.chmod(0o500)
    immutable = False
    try:
        if _writable(directory):  # root ignores modes
            immutable = chattr("+i", directory) is None
            if _writable(directory):
                pytest.skip("cannot make a directory unwritable here (root without chattr)")
        yield
    finally:
        if immutable:
            assert chattr("-i", directory) is None
        directory.chmod(0o700)


def test_failed_publish_rolls_back_to_the_previous_export(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    export_day(url_of(engine), DAY, out, accounts=["0042"])
    before = snapshot(out)
    Appender(engine).append([frame("0042", 9, at_ns=START_NS + 100)])
    # events/ is swapped first, then connection_log/ fails: events/ must be swapped back.
    with unwritable(out / "connection_log"), pytest.raises(QueryError) as failure:
        export_day(url_of(engine), DAY, out)
    assert "cannot publish the export" in str(failure.value)
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-export-")]
    assert len(read_dataset(out, "events")) == 5


def test_write_failure_midway_is_one_line_and_keeps_the_previous_export(
    big_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "archive"
    export_day(big_store, DAY, out, accounts=["7"])
    before = snapshot(out)
    # A real write error: files may not grow past 1 MB in this process (EFBIG), so the
    # first account's events file fails midway, like a full disk.
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
        sys.argv = ["studio-query", "export", "--db", {big_store!r}, "--day", "2024-06-10",
                    "--out", {str(out)!r}]
        from queries.cli import main
        main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    one_line_error(result, 1, f"cannot write to {out}: ")
    assert "File too large" in result.stderr or "Errno 27" in result.stderr
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unwritable_export_directory_is_one_line(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    out.mkdir()
    with unwritable(out):
        result = run_cli("export", "--db", url_of(engine), "--day", "2024-06-10", "--out", str(out))
    one_line_error(result, 1, f"cannot write to {out}: ")
    assert list(out.iterdir()) == []


# -- the command line -----------------------------------------------------------------------


run_cli = functools.partial(run, "queries")


def test_cli_exports_with_a_summary_line(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    result = run_cli("export", "--db", url_of(engine), "--day", "2024-06-10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    size = sum(f["bytes"] for f in manifest_of(out)["files"])
    assert result.stdout.startswith(
        f"exported 2024-06-10: 3 accounts, 9 events, 13 connection_log rows → {out} "
        f"({size / 1000:.1f} kB) in "
    )
    assert result.stdout.endswith(" s\n")
    assert result.stdout.count("\n") == 1


def test_cli_progress_bar_on_a_terminal(engine: Engine, tmp_path: Path) -> None:
    import pty

    record_day(engine)
    parent, child = pty.openpty()
    try:
        result = run_process(  # a process: its stderr is a terminal
            "queries", "export", "--db", url_of(engine), "--day", "2024-06-10",
            "--out", str(tmp_path / "o"), stderr=child,
        )  # fmt: skip
        os.close(child)
        child = -1
        shown = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # EIO: the terminal has no writer left
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(parent)
        if child >= 0:
            os.close(child)
    assert result.returncode == 0
    assert b"exporting 2024-06-10" in shown
    assert b"9/9" in shown
    assert result.stdout.startswith("exported 2024-06-10: 3 accounts")


def test_cli_uses_the_config_store_and_time_zone(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    config = tmp_path / "recorder.toml"
    config.write_text(
        f'[studio]\naccounts = ["0042"]\n[store]\nurl = "{url_of(engine)}"\n'
        '[recorder]\ntrading_day_timezone = "UTC"\n'
    )
    out = tmp_path / "archive"
    result = run_cli("export", "--config", str(config), "--day", "2024-06-10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    document = manifest_of(out)
    assert document["timezone"] == "UTC"
    # In UTC the day starts 4 hours earlier: "before" (closed 1 ns before New York's
    # midnight) now overlaps, and "after" (opened at New York's next midnight) does not.
    sessions = {r["session_id"] for r in read_dataset(out, "connection_log")}
    assert "before" in sessions
    assert "after" not in sessions
    both = run_cli("export", "--config", str(config), "--timezone", "UTC",
                   "--day", "2024-06-10", "--out", str(out))  # fmt: skip
    one_line_error(both, 2, "--timezone goes with --db")


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--day", "2024-6-10"], 2, "bad date '2024-6-10': expected YYYY-MM-DD"),
        (["--day", "2024-02-30"], 2, "impossible date '2024-02-30'"),
        (["--day", "2024-06-10", "--account", "999"], 1, "unknown account '999'"),
        (["--day", "2024-06-10", "--account", ""], 2, "an account id cannot be blank"),
        (["--day", "2024-06-10", "--timezone", "Mars/Base"], 2, "unknown time zone 'Mars/Base'"),
        (["--day", "2024-06-10", "--timezone", "../../etc/passwd"], 2, "unknown time zone"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    engine: Engine, tmp_path: Path, args: list[str], code: int, fragment: str
) -> None:
    record_day(engine)
    out = tmp_path / "archive"
    one_line_error(run_cli("export", "--db", url_of(engine), "--out", str(out), *args), code,
                   fragment)  # fmt: skip
    assert not out.exists()


def test_cli_missing_database_and_bad_out_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "archive"
    missing = run_cli("export", "--db", f"sqlite:///{tmp_path}/nope.db", "--day", "2024-06-10",
                      "--out", str(out))  # fmt: skip
    one_line_error(missing, 1, "database file not found")
    empty = tmp_path / "empty.db"
    empty.touch()
    foreign = run_cli("export", "--db", f"sqlite:///{empty}", "--day", "2024-06-10",
                      "--out", str(out))  # fmt: skip
    one_line_error(foreign, 1, "no recorder schema")
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database, " * 20)
    not_sqlite = run_cli("export", "--db", f"sqlite:///{garbage}", "--day", "2024-06-10",
                         "--out", str(out))  # fmt: skip
    one_line_error(not_sqlite, 1, "cannot read the store: ")
    assert "file is not a database" in not_sqlite.stderr
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_RECORDER_CONFIG"}
    no_config = run_cli("export", "--day", "2024-06-10", "--out", str(out), cwd=tmp_path, env=env)
    one_line_error(no_config, 2, "pass --config PATH")
    assert not out.exists()


def test_cli_out_under_a_file_is_one_line(engine: Engine, tmp_path: Path) -> None:
    record_day(engine)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    for out in (blocker, blocker / "archive"):
        result = run_cli("export", "--db", url_of(engine), "--day", "2024-06-10", "--out", str(out))
        one_line_error(result, 1, "cannot write to")
        assert "not a directory" in result.stderr
    assert blocker.read_text() == "not a directory"
