"""The whole product on one recorded simulator day with injected faults:
simulator → recorder → store → export → gaps / audit / verify (store and export)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import trio
import trio.testing
from sqlalchemy import select

from queries import export_day, verify_export, verify_store
from recorder.appender import Appender
from recorder.records import FrameRecord
from recorder.schema import events
from recorder.simulator import SimConfig
from recorder.store import open_engine
from tests.support.cli import run
from tests.support.config import SECRET
from tests.support.recording import start
from tests.support.waiting import wait_until

A, B = "100000", "0042"
query = functools.partial(run, "queries")


async def test_recorded_day_with_faults_through_export_and_analytics(
    tmp_path: Path, recorder_clock: trio.testing.MockClock
) -> None:
    sim_config = SimConfig(accounts=(A, B), client_secret=SECRET, rate_per_s=20)
    async with trio.open_nursery() as nursery:
        run = await start(nursery, tmp_path, accounts=(A, B), sim_config=sim_config)
        await wait_until(lambda: all(len(run.frames(a)) >= 40 for a in (A, B)))
        run.sim.skip_sequences(A, 1, permanent=True)  # a real hole: never sent, never replayed
        run.sim.skip_sequences(A, 2, permanent=False)  # a live hole that the next replay heals
        await wait_until(lambda: len(run.sim.day_log(A)) >= 80)
        run.sim.drop_connections(A, clean=False)  # reconnect: the day replay fills the live hole
        await wait_until(lambda: run.events_of(A).count("replay-complete") == 2)
        await wait_until(lambda: len(run.sim.day_log(A)) >= 120)
        await run.stop()

    url = f"sqlite:///{tmp_path}/store.db"
    with run.engine.connect() as conn:
        days = set(conn.execute(select(events.c.trading_day).distinct()).scalars())
    assert len(days) == 1
    day = days.pop()
    day_log = [json.loads(frame)["sequence"] for frame in run.sim.day_log(A)]
    permanent = sorted(set(range(1, max(day_log) + 1)) - set(day_log))
    assert len(permanent) == 1

    gaps = json.loads(query("gaps", "--db", url, "--day", day.isoformat(), "--json").stdout)
    by_account = {a["account_id"]: a for a in gaps["accounts"]}
    assert by_account[A]["sequence_gaps"] == [
        {"first_missing": permanent[0], "last_missing": permanent[0], "count": 1}
    ]  # the healed hole is not a gap
    assert by_account[B]["sequence_gaps"] == []
    assert by_account[A]["duplicates"] > 0  # the reconnect replayed the day
    failing = query("gaps", "--db", url, "--day", day.isoformat(), "--fail-on-gaps")
    assert failing.returncode == 1

    audit = json.loads(query("audit", "--db", url, "--day", day.isoformat(), "--json").stdout)
    accounts = {a["account_id"]: a for a in audit["accounts"]}
    stored_a = run.frames(A)
    assert accounts[A]["frames"] == len(stored_a)
    assert accounts[A]["replayed_frames"] == sum(r["replayed"] for r in stored_a)
    assert accounts[A]["sessions"] == 2
    assert accounts[A]["chain_ok"] is True

    out = tmp_path / "archive"
    manifest = export_day(url, day, out)
    assert manifest.rows("events") == len(stored_a) + len(run.frames(B))
    assert verify_store(url, day=day).ok
    assert verify_export(out, day=day).ok
    assert query("verify", "--from-export", str(out), "--day", day.isoformat()).returncode == 0

    # Tampering with an exported file is caught and named.
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    file = next((tampered / "events").rglob(f"{B}.parquet"))
    table = pq.read_table(file)
    raws = table.column("raw").to_pylist()
    raws[3] = raws[3].replace('"', "'", 1)
    table = table.set_column(table.schema.get_field_index("raw"), "raw", [raws])
    pq.write_table(table, file, compression="zstd")
    result = query("verify", "--from-export", str(tampered), "--day", day.isoformat(), "--json")
    assert result.returncode == 1
    assert B in result.stdout
    assert "SHA-256" in result.stdout


def test_export_of_a_day_interleaved_with_another_verifies(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/s.db")
    from recorder import migrate

    migrate.upgrade(engine)
    day, late = dt.date(2024, 6, 10), dt.date(2024, 6, 11)
    appender = Appender(engine)
    sequence = iter(range(1, 100))

    def frames(on: dt.date, count: int) -> list[FrameRecord]:
        return [
            FrameRecord(
                A, "s", n, None, next(sequence), "order-update", on, False, "text", f"frame {n}"
            )
            for n in range(count)
        ]

    appender.append(frames(day, 3))
    appender.append(frames(late, 2))  # another day's rows between two stretches of this day
    appender.append(frames(day, 3))
    url = f"sqlite:///{tmp_path}/s.db"
    out = tmp_path / "out"
    export_day(url, day, out)
    assert verify_export(out, day=day).ok
    manifest_file = out / "manifest" / f"trading_day={day.isoformat()}.json"
    document = json.loads(manifest_file.read_text())
    assert document["accounts"][A]["chain_resume"]  # the export says where the chain resumes
    document["accounts"][A]["chain_resume"] = []
    manifest_file.write_text(json.dumps(document))
    assert not verify_export(out, day=day).ok  # without it the gap in the chain shows
