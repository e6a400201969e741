"""Conflicting duplicates: stored copies of one sequence whose payloads differ are reported
by gaps and audit, and fail ``gaps --fail-on-gaps``."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from sqlalchemy import Engine

from queries import DataSource
from queries.audit import audit_source
from queries.conflicts import LISTED_MAX
from queries.gaps import COLUMNS, gaps
from recorder.appender import Appender
from recorder.records import LogRecord
from tests.support.cli import run
from tests.support.frames import DAY, NOON_NS, A, frame
from tests.support.recording import start
from tests.support.waiting import wait_until


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _gaps(url: str) -> dict[str, object]:
    with DataSource(url=url).open(DAY, payload=False, columns=COLUMNS) as ws:
        return dict(gaps(ws)["accounts"][0])


def test_copies_that_differ_only_outside_the_payload_are_no_conflict(
    engine: Engine, tmp_path: Path
) -> None:
    live = frame(A, 7)
    other_timestamp = live.raw.replace(f'"timestamp":{live.server_ts_ms}', '"timestamp":1')
    replay = frame(A, 7, at_ns=NOON_NS + 10**9, session_id="s2", replayed=True, raw=other_timestamp)
    other = frame(A, 8, data={"quantity": "1"})
    changed = frame(A, 8, session_id="s2", replayed=True, data={"quantity": "2"})
    log = [LogRecord("s-" + A, A, NOON_NS - 1, "opened")]
    Appender(engine).append([live, replay, other, changed], log)
    report = _gaps(url_of(engine))
    assert report["duplicates"] == 2
    assert report["conflicting_duplicates"] == 1
    (conflict,) = report["conflicts"]  # type: ignore[misc]
    assert conflict == {"sequence": 8, "copies": 2, "distinct_payloads": 2, "ids": [3, 4]}
    audited = audit_source(DataSource(url=url_of(engine)), DAY)["accounts"][0]
    assert (audited["conflicting_duplicates"], audited["conflicts"]) == (1, [conflict])
    failing = run("queries", "gaps", "--db", url_of(engine), "--day", DAY, "--fail-on-gaps")
    assert failing.returncode == 1
    assert "CONFLICTING DUPLICATES: 1 sequences" in failing.stdout
    assert "CONFLICTING DUPLICATES" in run("queries", "audit", "--db", url_of(engine),
                                           "--day", DAY).stdout  # fmt: skip
    # The same from an export of the day (DuckDB over the files instead of the store).
    out = tmp_path / "export"
    assert (
        run("queries", "export", "--db", url_of(engine), "--day", DAY, "--out", out).returncode == 0
    )
    exported = run("queries", "gaps", "--from-export", out, "--day", DAY, "--json")
    assert json.loads(exported.stdout)["accounts"][0]["conflicts"] == [conflict]


def test_at_most_a_hundred_are_listed_all_are_counted(sqlite_url: str) -> None:
    from tests.support.stores import migrated

    engine = migrated(sqlite_url)
    frames = [frame(A, n, data={"v": "live"}) for n in range(1, 121)]
    frames += [frame(A, n, session_id="s2", data={"v": "replay"}) for n in range(1, 121)]
    Appender(engine).append(frames, [])
    report = _gaps(sqlite_url)
    assert report["conflicting_duplicates"] == 120
    assert len(report["conflicts"]) == LISTED_MAX  # type: ignore[arg-type]
    engine.dispose()


async def test_a_replay_that_disagrees_with_the_live_copy_is_reported(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        run_ = await start(nursery, tmp_path, accounts=(A,))
        await wait_until(lambda: len([r for r in run_.frames(A) if r["sequence"]]) >= 5)
        run_.sim.alter_next_replay(A, index=2)
        run_.sim.drop_connections(A)
        await wait_until(lambda: run_.events_of(A).count("replay-complete") == 2)
        await run_.stop()
    rows = run_.frames(A)
    day = rows[0]["trading_day"]
    sequence = json.loads(run_.sim.day_log(A)[2])["sequence"]
    copies = [r["id"] for r in rows if r["sequence"] == sequence]
    gaps_json = json.loads(
        run("queries", "gaps", "--db", url_of(run_.engine), "--day", day, "--json").stdout
    )
    (account,) = gaps_json["accounts"]
    assert account["conflicting_duplicates"] == 1
    assert account["conflicts"] == [
        {"sequence": sequence, "copies": 2, "distinct_payloads": 2, "ids": copies}
    ]
