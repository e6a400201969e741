"""Analytics and verification over an export directory written by ``studio-query export``.

The same day must give the same reports from the export as from the store, and any change
to the exported files must be caught by ``verify``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine

from queries.audit import audit
from queries.duck import open_export, open_store
from queries.errors import QueryError
from queries.export import export_day
from queries.exportcheck import verify_export
from queries.exportdir import ExportDir
from queries.gaps import gaps
from queries.layout import V1, file_path
from queries.reconcile import reconcile
from queries.verify import CHANGED, render_verify
from recorder.appender import Appender
from recorder.records import FrameRecord, LogRecord
from tests.support.cli import run
from tests.support.frames import NOON_NS
from tests.support.simday import AFTER_THE_DAY_NS, DAY, A, B, ny, record

#: A format-version-1 export, as the version before 2 wrote it (tests/fixtures/README.md).
V1_EXPORT = Path(__file__).parent / "fixtures" / "export-v1"


@pytest.fixture
def exported(engine: Engine, tmp_path: Path) -> tuple[str, Path]:
    record(engine)
    url = engine.url.render_as_string(hide_password=False)
    out = tmp_path / "export"
    export_day(url, DAY, out)
    return url, out


def test_reports_from_the_export_equal_those_from_the_store(exported: tuple[str, Path]) -> None:
    url, out = exported
    for payload, command in ((False, gaps), (False, audit), (True, reconcile)):
        with open_store(url, day=DAY, payload=payload, now_ns=AFTER_THE_DAY_NS) as ws:
            from_store = command(ws)
        with open_export(out, day=DAY, payload=payload, now_ns=AFTER_THE_DAY_NS) as ws:
            from_export = command(ws)
        assert from_export == from_store, command.__name__
    with open_export(out, day=DAY, accounts=[B], payload=False) as ws:
        assert [a["account_id"] for a in gaps(ws)["accounts"]] == [B]
        assert ws.tz.key == "America/New_York"


def test_intact_export_verifies(exported: tuple[str, Path]) -> None:
    _, out = exported
    report = verify_export(out)
    assert report.ok, render_verify(report)
    checks = {c.account_id: c for c in report.accounts}
    assert (checks[A].rows, checks[B].rows) == (57, 14)
    assert verify_export(out, day=DAY, accounts=[B]).ok


def manifest_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest" / f"trading_day={DAY}.json").read_text())


def save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (out / "manifest" / f"trading_day={DAY}.json").write_text(json.dumps(manifest))


def events_file(out: Path, account: str) -> Path:
    return out / file_path("events", DAY, account)


def rewrite(out: Path, account: str, table: pa.Table, kind: str = "events") -> None:
    """Replace an account's file of table ``kind`` and make its manifest entry agree."""
    path = out / file_path(kind, DAY, account)
    pq.write_table(table, path, compression="zstd")
    manifest = manifest_of(out)
    data = path.read_bytes()
    for entry in manifest["files"]:
        if entry["path"] == path.relative_to(out).as_posix():
            entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                         rows=table.num_rows)  # fmt: skip
    save_manifest(out, manifest)


def problems(out: Path) -> list[tuple[str, Any, str]]:
    report = verify_export(out)
    assert not report.ok
    found = [(c.account_id, p.row_id, p.what) for c in report.accounts for p in c.problems]
    return found + [("", p.path, p.what) for p in report.problems]


def test_a_changed_row_is_named_even_when_the_manifest_was_updated(
    exported: tuple[str, Path],
) -> None:
    _, out = exported
    table = pq.read_table(events_file(out, B))
    raws = table["raw"].to_pylist()
    index = 4  # B-s1's live trade-notice U1 (ack, replay-complete, seq 1, 2, 3, ...)
    changed = raws[index].replace('"quantity":"10"', '"quantity":"11"')
    assert changed != raws[index]
    raws[index] = changed
    index_of_raw = table.schema.get_field_index("raw")
    rewrite(out, B, table.set_column(index_of_raw, "raw", pa.array(raws, pa.string())))
    victim = table["id"][index].as_py()
    assert problems(out) == [(B, victim, CHANGED)]
    assert f"FAIL account {B}: row {victim}" in render_verify(verify_export(out))


def test_rows_filed_under_another_account_are_found(exported: tuple[str, Path]) -> None:
    """Two accounts' files swapped, and their manifest entries with them (every checksum
    then holds): each file still names its rows' own account, which verify holds against the
    account the manifest files it under."""
    _, out = exported
    a, b = events_file(out, A), events_file(out, B)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    manifest = manifest_of(out)
    entries = {e["account_id"]: e for e in manifest["files"] if e["table"] == "events"}
    facts = ("bytes", "sha256", "rows")
    swapped = {k: entries[B][k] for k in facts}, {k: entries[A][k] for k in facts}
    entries[A].update(swapped[0])
    entries[B].update(swapped[1])
    accounts = manifest["accounts"]
    accounts[A], accounts[B] = accounts[B], accounts[A]
    save_manifest(out, manifest)
    found = problems(out)
    assert {account for account, _, _ in found} == {A, B}
    named = {account for account, _, what in found if "holds rows of another account" in what}
    assert named == {A, B}, found


def test_a_changed_journal_row_is_named_even_when_the_manifest_was_updated(
    exported: tuple[str, Path],
) -> None:
    """The sessions' journal is chained too: an outage hidden by editing a `closed` row's
    detail (file and manifest entry rewritten together) is found offline."""
    _, out = exported
    table = pq.read_table(out / file_path("connection_log", DAY, B))
    details = table["detail"].to_pylist()
    index = table["event"].to_pylist().index("closed")
    details[index] = "shutdown"
    column = table.schema.get_field_index("detail")
    rewrite(out, B, table.set_column(column, "detail", pa.array(details, pa.string())),
            "connection_log")  # fmt: skip
    victim = table["id"][index].as_py()
    assert problems(out) == [(B, victim, f"connection_log {CHANGED}")]


def test_a_changed_file_fails_its_checksum(exported: tuple[str, Path]) -> None:
    _, out = exported
    path = events_file(out, A)
    with path.open("ab") as handle:
        handle.write(b"\0")
    found = problems(out)
    assert (A, None, "file content changed (SHA-256 differs from the manifest)") in found


def test_rows_removed_at_the_end(exported: tuple[str, Path]) -> None:
    _, out = exported
    table = pq.read_table(events_file(out, B))
    shorter = table.slice(0, table.num_rows - 1)
    rewrite(out, B, shorter)
    manifest = manifest_of(out)
    manifest["accounts"][B].update(events=shorter.num_rows, last_id=shorter["id"][-1].as_py())
    save_manifest(out, manifest)
    found = problems(out)
    assert len(found) == 1
    assert found[0][0] == B
    assert found[0][1] == shorter["id"][-1].as_py()
    assert found[0][2].startswith("chain does not end at the manifest's last_chain_hash")


def test_missing_unlisted_and_escaping_files(exported: tuple[str, Path]) -> None:
    _, out = exported
    events_file(out, A).unlink()
    stray = out / f"connection_log/trading_day={DAY}/{B}-1.parquet"
    stray.write_bytes(b"x")
    found = problems(out)
    assert (A, None, "file listed in the manifest is missing") in found
    assert ("", stray.relative_to(out).as_posix(), "file is not listed in the manifest") in found
    manifest = manifest_of(out)
    manifest["files"][0]["path"] = "../../etc/passwd"
    save_manifest(out, manifest)
    assert any("outside the export directory" in what for _, _, what in problems(out))


def test_row_count_and_id_checks_against_the_manifest(exported: tuple[str, Path]) -> None:
    _, out = exported
    manifest = manifest_of(out)
    manifest["accounts"][B]["first_id"] = 999
    manifest["accounts"][A]["first_chain_hash"] = "0" * 64
    manifest["id_range"]["last"] -= 1
    save_manifest(out, manifest)
    found = {(account, what) for account, _, what in problems(out)}
    first_b = manifest_of(out)["accounts"][B]
    assert (B, "first row id is 1, manifest says 999") in found
    assert (A, f"first row's chain_hash is {first_a_hash(out)}, manifest says {'0' * 64}") in found
    last = manifest["id_range"]["last"] + 1
    assert (A, f"row {last} lies outside the manifest's id_range") in found
    assert first_b["events"] == 14


def first_a_hash(out: Path) -> str:
    return str(pq.read_table(events_file(out, A))["chain_hash"][0].as_py())


def test_bad_export_directories(tmp_path: Path, exported: tuple[str, Path]) -> None:
    _, out = exported
    with pytest.raises(QueryError, match="export directory not found"):
        open_export(tmp_path / "absent", day=DAY)
    (tmp_path / "plain").mkdir()
    with pytest.raises(QueryError, match="not an export directory"):
        verify_export(tmp_path / "plain")
    with pytest.raises(QueryError, match="no export of 2024-06-11"):
        open_export(out, day=DAY.replace(day=11))
    with pytest.raises(QueryError, match="unknown account '31337'"):
        open_export(out, day=DAY, accounts=["31337"])
    manifest = manifest_of(out)
    manifest["format_version"] = 3  # from a later studio-recorder
    save_manifest(out, manifest)
    with pytest.raises(QueryError) as refused:
        open_export(out, day=DAY)
    assert str(refused.value).endswith(
        ": unsupported format_version 3 (this version reads 1, 2): "
        "read it with a newer studio-recorder"
    )
    manifest["format_version"] = True  # not 1
    save_manifest(out, manifest)
    with pytest.raises(QueryError, match="unsupported format_version True"):
        open_export(out, day=DAY)
    manifest = manifest_of(out)
    manifest["format"] = "something-else"
    save_manifest(out, manifest)
    with pytest.raises(QueryError, match="not a studio-recorder-export manifest"):
        open_export(out, day=DAY)


def test_account_ids_that_need_percent_encoding(sqlite_url: str, tmp_path: Path) -> None:
    from recorder import migrate
    from recorder.store import open_engine

    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)
    odd = "A/1 x%"
    raw = '{"timestamp":1718026260000,"sequence":1,"payload":{"type":"position-update",' \
          '"data":{"symbol":"IBM","quantity":"3","average_cost":1.5}}}'  # fmt: skip
    Appender(engine).append(
        [FrameRecord(odd, "s", ny(9, 31, 0), 1718026260000, 1, "position-update", DAY, False,
                     "text", raw)],
        [LogRecord("s", odd, ny(9, 30, 0), "opened"),
         LogRecord("s", odd, ny(9, 30, 1), "subscribed")],
    )  # fmt: skip
    engine.dispose()
    out = tmp_path / "export"
    manifest = export_day(sqlite_url, DAY, out).document()
    assert manifest["files"][0]["path"] == f"connection_log/trading_day={DAY}/A%2F1%20x%25.parquet"
    assert verify_export(out).ok
    with open_export(out, day=DAY) as ws:
        assert ws.accounts == (odd,)
        report = reconcile(ws)
    assert report["accounts"][0]["symbols"][0]["last_position"] == 3
    with open_export(out, day=DAY) as ws:
        assert ws.rows("SELECT count(*) FROM connection_log WHERE account_id = ?", [odd]) == [(2,)]


def test_an_exported_day_without_data(exported: tuple[str, Path]) -> None:
    url, out = exported
    empty = DAY.replace(day=9)
    manifest = export_day(url, empty, out).document()
    assert (manifest["accounts"], manifest["files"]) == ({}, [])
    assert verify_export(out, day=empty).ok
    with open_export(out, day=empty, payload=False) as ws:
        assert gaps(ws)["accounts"] == []
    assert verify_export(out).ok  # both days


# -- format version 1: exports written before version 2 still verify and read ---------------


@pytest.fixture
def v1_export(tmp_path: Path) -> Path:
    copy = tmp_path / "export-v1"
    shutil.copytree(V1_EXPORT, copy)
    return copy


def test_a_version_1_export_still_verifies_and_reads(v1_export: Path) -> None:
    manifest = ExportDir(v1_export).manifest(DAY)
    assert (manifest.format_version, manifest.layout) == (1, V1)
    assert {f.path for f in manifest.files} >= {
        f"events/trading_day={DAY}/account_id=0042/part-0.parquet",
        f"events/trading_day={DAY}/account_id=a%2Fb/part-0.parquet",
    }
    report = verify_export(v1_export)  # placement, sizes, digests, rows and every chain
    assert report.ok, render_verify(report)
    rows = {c.account_id: c.rows for c in report.accounts}
    assert rows == {"0042": 3, "1e3": 2, "77": 0, "a/b": 2}
    assert run("queries", "verify", "--from-export", v1_export).returncode == 0

    with open_export(v1_export, day=DAY) as ws:
        frames = ws.rows("SELECT id, account_id, received_at_ns, raw_kind, raw FROM events "
                         "ORDER BY id")  # fmt: skip
        log = ws.rows("SELECT account_id, at_ns, event FROM connection_log ORDER BY id")
    odd_ns = 123_457  # sub-microsecond digits: the nanoseconds came through exactly
    assert [(a, ns) for _, a, ns, _, _ in frames] == [
        ("0042", NOON_NS + odd_ns), ("1e3", NOON_NS + 1_000_000 + odd_ns),
        ("a/b", NOON_NS + 2_000_000 + odd_ns), ("0042", NOON_NS + 3_000_000 + odd_ns),
        ("0042", NOON_NS + 4_000_000 + odd_ns), ("1e3", NOON_NS + 5_000_000 + odd_ns),
        ("a/b", NOON_NS + 6_000_000 + odd_ns),
    ]  # fmt: skip
    assert [(kind, raw) for *_, kind, raw in frames][3:5] == [
        ("text", "not json \x01"),
        ("binary", "AAEC"),
    ]
    assert ("77", NOON_NS + 1, "subscribe-rejected") in log
    assert len(log) == 9

    dumped = v1_export.parent / "dump.jsonl"
    result = run("queries", "dump", "--from-export", v1_export, "--day", DAY,
                 "--format", "jsonl", "--out", dumped)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in dumped.read_text(encoding="utf-8").splitlines()]
    assert [(d["account_id"], d["received_at_ns"]) for d in lines[:7]] == [
        (a, ns) for _, a, ns, _, _ in frames
    ]
    assert lines[0]["received_at"] == "2024-06-10T16:00:00.000123457Z"
    assert [d["at_ns"] for d in lines[7:]] == [ns for _, ns, _ in log]


def test_a_changed_byte_of_a_version_1_export_is_named(v1_export: Path) -> None:
    relative = f"events/trading_day={DAY}/account_id=1e3/part-0.parquet"
    data = bytearray((v1_export / relative).read_bytes())
    data[len(data) // 2] ^= 1
    (v1_export / relative).write_bytes(bytes(data))
    report = verify_export(v1_export)
    assert not report.ok
    assert next((c.account_id, p.path, p.what) for c in report.accounts for p in c.problems) == (
        "1e3",
        relative,
        "file content changed (SHA-256 differs from the manifest)",
    )
    result = run("queries", "verify", "--from-export", v1_export)
    assert result.returncode == 1
    assert f"FAIL account 1e3: file {relative}" in result.stdout
