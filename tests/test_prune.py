"""``studio-recorder prune``: the one deletion the database allows, of days the archive holds
and verifies; what a prune leaves behind still verifies and answers as before."""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trio
from sqlalchemy import Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from queries.storecheck import verify_store
from recorder.appender import Appender
from recorder.chain import GENESIS_HASH
from recorder.prune import PruneError, Verified, apply, day_rows, prunable
from recorder.records import LogRecord
from recorder.schema import events, prunes
from recorder.signing import write_new_key
from recorder.simulator import SimConfig
from tests.support.cli import cli_env, run
from tests.support.config import SECRET, write_config
from tests.support.frames import NOON_NS, frame
from tests.support.recording import start
from tests.support.waiting import wait_until

A, B = "100000", "0042"
DAYS = [dt.date(2024, 6, 10), dt.date(2024, 6, 11), dt.date(2024, 6, 12)]
NS_PER_DAY = 86_400 * 10**9

recorder_cli = functools.partial(run, "recorder")
#: An insider's attempt to widen a recorded prune by replacing its row (SQLite).
REPLACE_A_PRUNE = (
    "INSERT OR REPLACE INTO prunes SELECT id, account_id, trading_day, first_id, 999, row_count, "
    "head_before, head_last, manifest_sha256, at_ns, os_user, host FROM prunes LIMIT 1"
)
#: A temporary look-alike of ``prunes`` (PostgreSQL) covering every row of ``events``.
COVER_ALL_IN_TEMP = (
    "INSERT INTO pg_temp.prunes (account_id, trading_day, first_id, last_id) "
    "SELECT account_id, trading_day, 0, 1000000 FROM events"
)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _count(engine: Engine, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events).where(*where)).scalar())


def _three_days_of_frames(engine: Engine) -> None:
    """Ten frames of A and of B on each of DAYS, in day order (B has none on the last)."""
    appender = Appender(engine)
    for k, day in enumerate(DAYS):
        at = NOON_NS + k * NS_PER_DAY
        appender.append([frame(A, n, at_ns=at + n, day=day) for n in range(1, 11)], [])
        if k < 2:
            appender.append([frame(B, n, at_ns=at + n, day=day) for n in range(1, 11)], [])


def _verified(engine: Engine, before: dt.date) -> list[Verified]:
    """Every account's rows before ``before`` as if the archive had verified them."""
    with engine.connect() as conn:
        rows = day_rows(conn, before)
        heads = {r: conn.execute(select(events.c.chain_hash).where(events.c.id == r.last_id))
                 .scalar_one() for r in rows}  # fmt: skip
    return [Verified(r, heads[r], "ab" * 32) for r in rows]


def test_only_rows_a_prunes_row_covers_can_be_deleted(engine: Engine) -> None:
    """On SQLite and PostgreSQL: a raw DELETE is refused before and after a prune, the prune
    deletes exactly the rows it records, and the chains continue from the recorded heads."""
    _three_days_of_frames(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(delete(events).where(events.c.trading_day == DAYS[0]))
    assert apply(engine, _verified(engine, DAYS[2])) == 40
    assert _count(engine) == 10
    assert _count(engine, events.c.trading_day < DAYS[2]) == 0
    with engine.connect() as conn:
        recorded = conn.execute(select(prunes).order_by(prunes.c.id)).mappings().all()
    assert [(r["account_id"], r["trading_day"], r["row_count"]) for r in recorded] == [
        (B, DAYS[0], 10), (B, DAYS[1], 10), (A, DAYS[0], 10), (A, DAYS[1], 10),
    ]  # fmt: skip
    firsts = {r["account_id"]: r for r in recorded if r["trading_day"] == DAYS[0]}
    seconds = {r["account_id"]: r for r in recorded if r["trading_day"] == DAYS[1]}
    for account in (A, B):
        assert firsts[account]["head_before"] == GENESIS_HASH
        assert seconds[account]["head_before"] == firsts[account]["head_last"]
    assert all(r["os_user"] and r["host"] and r["at_ns"] > 0 for r in recorded)

    for statement in (
        delete(events),  # the last day: no prunes row covers it
        update(events).values(raw="x"),
        update(prunes).values(row_count=0),
        delete(prunes),
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)
    assert _count(engine) == 10
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(prunes)).scalar() == 4

    if engine.dialect.name == "sqlite":  # a REPLACE fires no DELETE trigger: refused itself
        with pytest.raises(DBAPIError, match="REPLACE refused"), engine.begin() as conn:
            conn.execute(text(REPLACE_A_PRUNE))
    else:  # a look-alike earlier in the search path covers nothing
        with engine.begin() as conn:
            conn.execute(text("CREATE TEMP TABLE prunes AS SELECT * FROM prunes"))
            conn.execute(text(COVER_ALL_IN_TEMP))
            with pytest.raises(DBAPIError, match="append-only"), conn.begin_nested():
                conn.execute(delete(events))
    # B has no frame left: a new writer continues its chain from the recorded head.
    Appender(engine).append([frame(B, 11, at_ns=NOON_NS + 2 * NS_PER_DAY + 99, day=DAYS[2])])
    report = verify_store(_url(engine))
    assert report.ok, report.accounts
    assert {c.account_id: len(c.pruned) for c in report.accounts} == {A: 2, B: 2}
    assert recorder_cli("db", "check", "--db", _url(engine)).returncode == 0

    decoys = [(A, DAYS[2], 0, 0), (B, DAYS[2], 0, 10**6), (A, DAYS[0], 0, 10**6)]
    with engine.begin() as conn:  # A's last day outside its ids; other account; other day
        conn.execute(insert(prunes), [
            {"account_id": a, "trading_day": d, "first_id": f, "last_id": last, "row_count": 0,
             "head_before": "", "head_last": "", "manifest_sha256": "", "at_ns": 1,
             "os_user": "u", "host": "h"} for a, d, f, last in decoys])  # fmt: skip
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(delete(events))
    assert _count(engine) == 11


def test_a_store_that_changed_since_verification_is_not_pruned(engine: Engine) -> None:
    """A frame of a day to prune stored after the archive verified it: refused, nothing gone."""
    _three_days_of_frames(engine)
    verified = _verified(engine, DAYS[2])
    Appender(engine).append([frame(A, 50, at_ns=NOON_NS + 3 * NS_PER_DAY, day=DAYS[0])])
    with pytest.raises(PruneError, match=f"{DAYS[0]} of account {A}: the store changed"):
        apply(engine, verified)
    assert _count(engine) == 51
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(prunes)).scalar() == 0


def test_a_day_interleaved_with_one_that_stays_is_kept(engine: Engine) -> None:
    """A late frame of the first day received after the second day began: the first day
    goes only with the second (what goes of a chain is always a prefix of it)."""
    appender = Appender(engine)
    late = NOON_NS + NS_PER_DAY
    appender.append([frame(A, 1, day=DAYS[0]), frame(A, 2, at_ns=late, day=DAYS[1]),
                     frame(A, 3, at_ns=late + 1, day=DAYS[0])])  # fmt: skip
    with engine.connect() as conn:
        going, kept = prunable(conn, DAYS[1], [DAYS[0]])
        assert going == []
        assert [k.trading_day for k in kept] == [DAYS[0]]
        assert prunable(conn, DAYS[2], DAYS[:2])[0] == DAYS[:2]


# -- the life of three recorded days: archived on object storage, pruned, still answered --


def _noon_ms(day: dt.date) -> int:
    noon = dt.datetime.combine(day, dt.time(12), ZoneInfo("America/New_York"))
    return int(noon.timestamp() * 1000)


async def _record(engine: Engine, tmp_path: Path, key: Path, days: list[dt.date]) -> None:
    """The simulator serving ``days`` one after another (its clock at noon of each), the
    recorder signing checkpoints; a permanent sequence gap of A on the first day of three."""
    day_base = [_noon_ms(days[0])]
    clock = lambda: day_base[0] + int(trio.current_time() * 1000)  # noqa: E731
    async with trio.open_nursery() as nursery:
        running = await start(
            nursery, tmp_path, accounts=(A, B), engine=engine, wall_clock_ms=clock,
            sim_config=SimConfig(accounts=(A, B), client_secret=SECRET, rate_per_s=5),
            signing={"key_file": str(key), "checkpoint_interval_s": 5},
        )  # fmt: skip
        for k, day in enumerate(days):
            if k:
                day_base[0] = _noon_ms(day) - int(trio.current_time() * 1000)
                running.sim.new_day()
            if k == 0 and len(days) == 3:
                await wait_until(lambda: len(running.frames(A)) > 10)
                running.sim.skip_sequences(A, 2, permanent=True)
            counted = sum(len(running.frames(a)) for a in (A, B))
            await wait_until(lambda c=counted: sum(len(running.frames(a)) for a in (A, B)) > c + 60)  # type: ignore[misc]
        await running.stop()


def _answers(config: Path, env: dict[str, str]) -> dict[str, Any]:
    """gaps and audit over the three days (the source's name aside), and sql over them."""
    found = {}
    for command in ("gaps", "audit"):
        result = run("queries", command, "--config", config, "--from", DAYS[0], "--to", DAYS[2],
                     "--json", env=env)  # fmt: skip
        assert result.returncode in (0, 1), result.stderr
        found[command] = [{k: v for k, v in d.items() if k != "source"}
                          for d in json.loads(result.stdout)]  # fmt: skip
    query = "SELECT trading_day, account_id, count(*) AS n, max(id) AS top FROM events GROUP BY ALL"
    result = run("queries", "sql", "--config", config, "--from", DAYS[0], "--to", DAYS[2],
                 f"{query} ORDER BY ALL", "--json", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    found["sql"] = json.loads(result.stdout)
    assert len(found["sql"]) == 2 * len(DAYS)
    return found


async def test_three_days_archived_to_worm_pruned_and_still_answered(
    sqlite_url: str, tmp_path: Path, recorder_clock: trio.abc.Clock
) -> None:
    from botocore.exceptions import ClientError

    from tests.support.s3 import seaweedfs
    from tests.support.stores import migrated

    key = tmp_path / "signing.key"
    write_new_key(key)
    engine = migrated(sqlite_url)
    await _record(engine, tmp_path, key, DAYS)
    with engine.connect() as conn:
        held = sorted({d for (d,) in conn.execute(select(events.c.trading_day).distinct())})
    assert held == DAYS
    order = _an_order_of(engine, DAYS[0])

    with seaweedfs(tmp_path / "s3") as server:
        s3: Any = server.client()
        s3.create_bucket(Bucket="worm", ObjectLockEnabledForBucket=True)
        config = write_config(tmp_path / "recorder.toml", [A, B], _url(engine))
        config.write_text(config.read_text() + f'[archive]\nurl = "s3://worm/days"\n'
                          f'endpoint_url = "{server.endpoint}"\nregion = "us-east-1"\n'
                          'retention_days = 3\n')  # fmt: skip
        env = {**cli_env(), **server.env}
        before = _answers(config, env)
        first = {a["account_id"]: a for a in before["gaps"][0]["accounts"]}
        assert first[A]["sequence_gaps"] != []  # the permanent gap, kept by the archive
        trace_before = _trace(config, order, env)

        missing = recorder_cli("prune", "--config", config, "--before", DAYS[2], env=env)
        assert missing.returncode == 1
        assert f"{DAYS[0]}: not in the archive s3://worm/days" in missing.stderr
        assert "nothing was deleted" in missing.stderr
        recorded = _count(engine)

        archived = run("queries", "archive", "--config", config, "--through", DAYS[1], "--json",
                       env=env)  # fmt: skip
        assert archived.returncode == 0, archived.stderr
        assert [d["status"] for d in json.loads(archived.stdout)] == ["archived", "archived"]
        again = run("queries", "archive", "--config", config, "--through", DAYS[1], "--json",
                    env=env)  # fmt: skip
        assert [d["status"] for d in json.loads(again.stdout)] == ["already archived"] * 2
        versions = s3.list_object_versions(Bucket="worm", Prefix="days/")["Versions"]
        victim = versions[0]
        with pytest.raises(ClientError):
            s3.delete_object(Bucket="worm", Key=victim["Key"], VersionId=victim["VersionId"])
        shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": dt.datetime.now(dt.UTC)}
        with pytest.raises(ClientError):
            s3.put_object_retention(Bucket="worm", Key=victim["Key"],
                                    VersionId=victim["VersionId"], Retention=shorter)  # fmt: skip

        going = {d: _count(engine, events.c.trading_day == d) for d in DAYS}
        assert sum(going.values()) == recorded  # the refused prune deleted nothing
        dry = recorder_cli("prune", "--config", config, "--before", DAYS[2], "--dry-run",
                           "--json", env=env)  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        assert [(d["trading_day"], d["rows"], d["status"]) for d in json.loads(dry.stdout)] == [
            (DAYS[0].isoformat(), going[DAYS[0]], "would be pruned"),
            (DAYS[1].isoformat(), going[DAYS[1]], "would be pruned"),
        ]
        assert _count(engine) == sum(going.values())
        pruned = recorder_cli("prune", "--config", config, "--before", DAYS[2], env=env)
        assert pruned.returncode == 0, pruned.stderr
        assert _count(engine) == going[DAYS[2]]  # exactly the two days went
        with engine.connect() as conn:
            rows = conn.execute(select(prunes.c.trading_day, func.sum(prunes.c.row_count))
                                .group_by(prunes.c.trading_day)).all()  # fmt: skip
        assert sorted(rows) == [(DAYS[0], going[DAYS[0]]), (DAYS[1], going[DAYS[1]])]
        for statement in (delete(events), text("DELETE FROM prunes")):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(statement)

        assert _answers(config, env) == before
        assert _trace(config, order, env) == trace_before
        out = tmp_path / "day1.jsonl"
        dumped = run("queries", "dump", "--config", config, "--day", DAYS[0], "--format", "csv",
                     "--out", out, env=env)  # fmt: skip
        assert dumped.returncode == 0, dumped.stderr
        assert len(out.read_text().splitlines()) == 1 + going[DAYS[0]]
        await _record(engine, tmp_path, key, DAYS[2:])  # the chains go on, signed
        checked = run("queries", "verify", "--config", config, "--public-key", f"{key}.pub",
                      "--json", env=env)  # fmt: skip
        assert checked.returncode == 0, checked.stdout
        for account in json.loads(checked.stdout)["accounts"]:
            assert [p["trading_day"] for p in account["pruned"]] == [
                d.isoformat() for d in DAYS[:2]
            ]
            assert account["attested"]
            assert account["checkpoints"] >= 2
        said = run("queries", "verify", "--config", config, "--public-key", f"{key}.pub", env=env)
        assert f"NOTE account {A}: {DAYS[0]} pruned (ids " in said.stdout


def _an_order_of(engine: Engine, day: dt.date) -> str:
    with engine.connect() as conn:
        raw = conn.execute(select(events.c.raw).where(events.c.trading_day == day,
                           events.c.msg_type == "order-update").limit(1)).scalar_one()  # fmt: skip
    return str(json.loads(raw)["payload"]["data"]["order_id"])


def _trace(config: Path, order: str, env: dict[str, str]) -> dict[str, Any]:
    result = run("queries", "trace", "--config", config, "--order-id", order, "--from", DAYS[0],
                 "--to", DAYS[2], "--json", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    report.pop("source", None)
    assert len(report["frames"]) >= 1
    return report


def test_a_tampered_archive_fails_archive_prune_and_verify(engine: Engine, tmp_path: Path) -> None:
    """A changed byte in an archived Parquet file (a local-directory archive) fails all three,
    naming the file; nothing is deleted."""
    _three_days_of_frames(engine)
    config = write_config(tmp_path / "recorder.toml", [A, B], _url(engine))
    config.write_text(config.read_text() + f'[archive]\nurl = "{tmp_path / "archive"}"\n')
    result = run("queries", "archive", "--config", config, "--through", DAYS[1])
    assert result.returncode == 0, result.stderr
    victim = sorted((tmp_path / "archive" / "events").rglob("*.parquet"))[0]
    name = victim.relative_to(tmp_path / "archive").as_posix()
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(victim, 0o600)
    victim.write_bytes(bytes(data))
    archive = run("queries", "archive", "--config", config, "--through", DAYS[1])
    assert archive.returncode == 1
    assert f"FAILED verification: {name}" in archive.stdout
    refused = recorder_cli("prune", "--config", config, "--before", DAYS[2])
    assert refused.returncode == 1
    assert "the archived copy does not verify" in refused.stderr
    assert name in refused.stderr
    assert _count(engine) == 50
    checked = run("queries", "verify", "--from-export", tmp_path / "archive", "--day", DAYS[0])
    assert checked.returncode == 1
    assert name in checked.stdout


def test_a_prune_the_archive_does_not_back_fails_verify(engine: Engine, tmp_path: Path) -> None:
    """An honest prune verifies against the archive; a prunes row written by an insider for
    a day never archived (to hide a deletion) does not."""
    _three_days_of_frames(engine)
    config = write_config(tmp_path / "recorder.toml", [A, B], _url(engine))
    config.write_text(config.read_text() + f'[archive]\nurl = "{tmp_path / "archive"}"\n')
    assert run("queries", "archive", "--config", config, "--through", DAYS[0]).returncode == 0
    honest = recorder_cli("prune", "--config", config, "--before", DAYS[1], "--json")
    assert honest.returncode == 0, honest.stderr
    assert [d["status"] for d in json.loads(honest.stdout)] == ["pruned"]
    assert run("queries", "verify", "--config", config).returncode == 0
    apply(engine, _verified(engine, DAYS[2]))  # DAYS[1], never archived
    forged = run("queries", "verify", "--config", config)
    assert forged.returncode == 1
    assert (
        f"pruned {DAYS[1]}, but the archive {tmp_path / 'archive'} does not hold" in forged.stdout
    )


def test_signed_checkpoints_verify_across_a_prune_of_every_frame(tmp_path: Path) -> None:
    """An account whose every frame was pruned keeps signing (its sessions go on) from the
    recorded head and count: verify --public-key checks those checkpoints, log half too,
    and the one made before the prune at its cut."""
    from tests.test_attestation_edges import Signed, log_record

    store = Signed(tmp_path)
    at = NOON_NS + NS_PER_DAY
    store.appender.append([frame(A, n, at_ns=NOON_NS + n, day=DAYS[0]) for n in range(1, 6)],
                          [log_record(A, 0)], checkpoint_all=True)  # fmt: skip
    store.appender.append([], [log_record(A, 10**9, "closed")], checkpoint_all=True)
    assert apply(store.engine, _verified(store.engine, DAYS[1])) == 5
    later = store.new_appender()  # a restarted recorder: heads and counts from the store
    later.append([], [LogRecord(f"s-{A}", A, at, "opened")], checkpoint_all=True)
    later.append([], [LogRecord(f"s-{A}", A, at + 1, "closed", "shutdown")], checkpoint_all=True)
    code, accounts = store.verify("--db", store.url)
    assert code == 0, accounts
    assert accounts[A]["attested"]
    assert accounts[A]["checkpoints"] >= 3  # the two after the prune, and the one at the cut
    assert accounts[A]["rows"] == 0
    assert [p["rows"] for p in accounts[A]["pruned"]] == [5]
