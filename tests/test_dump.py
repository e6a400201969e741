"""``studio-query dump``: the human-readable copy of a day or a range of days — every frame
in store order with ``raw`` exactly as stored, the sessions' log rows in JSON Lines, the
same from a store and from its export, written atomically; bad ranges are usage errors."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, select

from queries.dump import FRAME_FIELDS, LOG_FIELDS
from queries.export import export_day
from recorder.appender import Appender
from recorder.instants import iso_ns
from recorder.records import LogRecord
from recorder.schema import connection_log, events
from tests.support.cli import run
from tests.support.frames import NOON_NS, frame
from tests.support.simday import DAY, A, B, record
from tests.support.stores import migrated

NEXT = DAY + dt.timedelta(days=1)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _stored(engine: Engine, table: Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]


def test_jsonl_is_every_frame_as_stored_then_the_sessions_log(
    engine: Engine, tmp_path: Path
) -> None:
    record(engine)
    out = tmp_path / "dump" / "2024-06-10.jsonl"
    result = run("queries", "dump", "--db", _url(engine), "--day", DAY, "--format", "jsonl",
                 "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames, logs = _stored(engine, events), _stored(engine, connection_log)
    assert result.stdout == (
        f"dumped {DAY}: {len(frames)} frames and {len(logs)} connection_log rows → {out}\n"
    )
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [list(line) for line in lines] == (
        [list(FRAME_FIELDS)] * len(frames) + [list(LOG_FIELDS)] * len(logs)
    )
    for line, row in zip(lines, frames + logs, strict=True):
        if "raw" in line:
            assert line["raw"] == row["raw"]  # byte for byte, replays and garbage included
            assert line["received_at"] == iso_ns(row["received_at_ns"])
            assert {k: line[k] for k in FRAME_FIELDS if k != "received_at"} == {
                k: row[k] for k in FRAME_FIELDS if k != "received_at"
            }
        else:
            assert line == {**{k: row[k] for k in LOG_FIELDS if k != "at"},
                            "at": iso_ns(row["at_ns"])}  # fmt: skip
    assert lines[0]["received_at"].endswith(".100000000Z")  # all nine digits
    assert out.stat().st_mode & 0o777 == 0o600


def test_csv_from_the_store_and_from_its_export_are_the_same(
    engine: Engine, tmp_path: Path
) -> None:
    record(engine)
    export_day(_url(engine), DAY, tmp_path / "export")
    dumps = {}
    for name, source in (("store", ("--db", _url(engine))),
                         ("export", ("--from-export", tmp_path / "export"))):  # fmt: skip
        out = tmp_path / f"{name}.csv"
        result = run("queries", "dump", *source, "--day", DAY, "--account", B,
                     "--format", "csv", "--out", out)  # fmt: skip
        assert result.returncode == 0, result.stderr
        dumps[name] = out.read_bytes()
    assert dumps["store"] == dumps["export"]
    rows = list(csv.DictReader(dumps["store"].decode().splitlines(keepends=True)))
    stored = [r for r in _stored(engine, events) if r["account_id"] == B]
    assert [r["raw"] for r in rows] == [r["raw"] for r in stored]
    assert {r["replayed"] for r in rows} == {"true", "false"}
    assert {r["account_id"] for r in rows} == {B}  # the leading zero kept
    assert rows[0]["sequence"] == ""  # the ack has none


def test_a_range_of_days_holds_each_log_row_once(engine: Engine, tmp_path: Path) -> None:
    """A session across midnight belongs to both days; its rows are written once."""
    evening = NOON_NS + 11 * 3600 * 10**9  # 23:00 New York
    morning = evening + 2 * 3600 * 10**9  # 01:00 the next day
    Appender(engine).append(
        [frame(A, 1, at_ns=evening + 10**9), frame(A, 2, at_ns=morning, day=NEXT)],
        [LogRecord("night", A, evening, "opened"), LogRecord("night", A, evening + 1, "subscribed"),
         LogRecord("night", A, morning + 10**9, "closed", "shutdown")],
    )  # fmt: skip
    out = tmp_path / "range.jsonl"
    result = run("queries", "dump", "--db", _url(engine), "--from", DAY - dt.timedelta(days=1),
                 "--to", NEXT, "--format", "jsonl", "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"dumped {DAY - dt.timedelta(days=1)} to {NEXT}: 2 frames and 3" in result.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("event", line.get("sequence")) for line in lines] == [
        1, "opened", "subscribed", "closed", 2,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2024-06-12", "--to", "2024-06-11"), "--to 2024-06-11 is before --from"),
        ((), "give --day, or --from and --to"),
        (("--day", "2024-06-10", "--from", "2024-06-10", "--to", "2024-06-11"), "not both"),
        (("--from", "2000-01-01", "--to", "2099-01-01"), "spans 36,161 days: at most 10,000"),
        (("--day", "2024-06-10", "--format", "xml"), "'xml' is not one of 'jsonl', 'csv'"),
    ],
)
def test_bad_ranges_and_formats_are_usage_errors(
    sqlite_url: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    migrated(sqlite_url)
    fmt = () if "--format" in args else ("--format", "csv")
    result = run("queries", "dump", "--db", sqlite_url, *args, *fmt, "--out", tmp_path / "x")
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_a_failed_dump_leaves_the_previous_one(engine: Engine, tmp_path: Path) -> None:
    record(engine)
    out = tmp_path / "dumps" / "dump.jsonl"
    first = run("queries", "dump", "--db", _url(engine), "--day", DAY, "--format", "jsonl",
                "--out", out)  # fmt: skip
    assert first.returncode == 0
    before = out.read_bytes()
    failed = run("queries", "dump", "--db", _url(engine), "--day", DAY, "--account", "nobody",
                 "--format", "jsonl", "--out", out)  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.startswith("studio-query: error: unknown account 'nobody'")
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["dump.jsonl"]  # no staging left
