"""Signed checkpoints end to end: a real recording signs, an insider with database rights is
caught by anyone holding the public key, a rollback is caught by the copies outside it.

The recorder runs in-process against the simulator (autojump clock); ``studio-query
verify`` runs through its console script's ``main()``; stores are real SQLite files and
PostgreSQL schemas.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import Engine, select, text, update

from queries import DataSource, Trust, audit_source, export_day
from recorder.appender import Appender
from recorder.attestation import Attestation, NoteCopies, read_store_id
from recorder.chain import GENESIS_HASH, canonical_bytes, canonical_log_bytes, next_hash
from recorder.checkpoint import ChainState
from recorder.records import LogRecord
from recorder.schema import connection_log, events
from recorder.signing import load_signer, write_new_key
from recorder.tradingday import DEFAULT_TIMEZONE, zone
from tests.support.cli import one_line_error, run
from tests.support.config import write_config
from tests.support.frames import DAY, NOON_NS, frame
from tests.support.notes import independent_verify
from tests.support.recording import Running, start
from tests.support.stores import frames, log, migrated
from tests.support.waiting import wait_until

A, B = "100000", "0042"


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def verify(engine: Engine, *args: str) -> tuple[int, dict[str, Any], str]:
    """``studio-query verify --db URL ARGS --json``: exit code, report, stderr."""
    result = run("queries", "verify", "--db", url_of(engine), *args, "--json")
    return result.returncode, json.loads(result.stdout or "{}"), result.stderr


def evening_matches_verify(engine: Engine, day: dt.date, out: Path, *args: str) -> dict[str, Any]:
    """``evening``'s verify.json (its chains hashed in one pass from the rows its reports
    read) is exactly ``verify --day --json``; the report."""
    evening = run("queries", "evening", "--db", url_of(engine), "--day", day, "--out", out, *args)
    assert evening.returncode in (0, 1), evening.stderr
    single = run("queries", "verify", "--db", url_of(engine), "--day", day, *args, "--json")
    assert (out / "verify.json").read_text() == single.stdout  # byte for byte
    report: dict[str, Any] = json.loads(single.stdout)
    return report


def by_account(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["account_id"]: a for a in report["accounts"]}


async def record_signed(engine: Engine, tmp_path: Path, key: Path, notes: Path) -> Running:
    """Record two accounts with a signing key, through one dropped connection, and stop."""
    async with trio.open_nursery() as nursery:
        running = await start(
            nursery, tmp_path, accounts=(A, B), engine=engine,
            signing={"key_file": str(key), "checkpoint_interval_s": 1,
                     "checkpoint_dir": str(notes)},
        )  # fmt: skip
        await wait_until(lambda: min(len(running.frames(a)) for a in (A, B)) > 40)
        running.sim.drop_connections(A)
        await wait_until(lambda: running.events_of(A).count("subscribed") >= 2)
        await wait_until(lambda: len(running.frames(A)) > 100)
        await running.stop()
    return running


def forged(fill: dict[str, Any]) -> str:
    """The fill's frame with one more share in its quantity."""
    raw = re.sub(r'"quantity":"(\d+)"', lambda m: f'"quantity":"{int(m[1]) + 1}"', fill["raw"],
                 count=1)  # fmt: skip
    assert raw != fill["raw"]
    return str(raw)


def drop_append_only_triggers(engine: Engine) -> None:
    """What an insider with database rights does first."""
    with engine.begin() as conn:
        for table in ("events", "connection_log", "checkpoints"):
            if engine.dialect.name == "sqlite":
                for action in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER {table}_no_{action}"))
            else:
                conn.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))


def rechain(engine: Engine, account: str) -> None:
    """Recompute the account's chain_hash columns with the project's own functions."""
    with engine.begin() as conn:
        for table, encode in ((events, canonical_bytes), (connection_log, canonical_log_bytes)):
            mine = table.c.account_id == account
            head = GENESIS_HASH
            for row in list(conn.execute(select(table).where(mine).order_by(table.c.id))):
                head = next_hash(head, row._mapping, encode)
                conn.execute(update(table).where(table.c.id == row.id).values(chain_hash=head))


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "signing-key"
    return path, write_new_key(path)


async def test_a_signed_recording_verifies_and_an_insider_rewrite_does_not(
    engine: Engine,
    tmp_path: Path,
    key: tuple[Path, str],
    recorder_clock: trio.testing.MockClock,
) -> None:
    key_file, verifier = key
    await record_signed(engine, tmp_path, key_file, tmp_path / "notes")

    # Untouched, after a clean shutdown: every account attested through its last row.
    code, report, _ = verify(engine, "--public-key", verifier)
    assert code == 0, report
    for account in (A, B):
        check = by_account(report)[account]
        assert check["attested"] is True
        assert check["unattested_rows"] == 0
        assert check["attested_through_id"] == frames(engine, account)[-1]["id"]
        assert check["checkpoints"] >= 2  # the session that ended, and shutdown
    with engine.connect() as conn:
        note = conn.execute(text("SELECT note FROM checkpoints LIMIT 1")).scalar_one()
    assert independent_verify(note, verifier)
    day = frames(engine, A)[-1]["trading_day"]
    source = DataSource(url=url_of(engine), trust=Trust.of([verifier]))
    audited = by_account(audit_source(source, day))
    assert [(audited[a]["attested"], audited[a]["unattested_rows"]) for a in (A, B)] == [
        (True, 0),
        (True, 0),
    ]
    report = evening_matches_verify(engine, day, tmp_path / "evening", "--public-key", verifier)
    assert {c["account_id"]: c["attested"] for c in report["accounts"]} == {A: True, B: True}

    # The insider: triggers dropped, a fill edited, the last rows deleted, a journal row
    # deleted, and both chains recomputed with the project's own functions.
    drop_append_only_triggers(engine)
    fill = next(r for r in frames(engine, A) if r["msg_type"] == "trade-notice")
    closed = next(r for r in log(engine, A) if r["event"] == "closed")
    with engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == fill["id"]).values(raw=forged(fill)))
        last_five = [r["id"] for r in frames(engine, A)[-5:]]
        conn.execute(text(f"DELETE FROM events WHERE id IN ({', '.join(map(str, last_five))})"))
        conn.execute(text("DELETE FROM connection_log WHERE id = :id"), {"id": closed["id"]})
    rechain(engine, A)

    code, report, _ = verify(engine)  # the chains alone: fooled
    assert code == 0, report
    plain = run("queries", "verify", "--db", url_of(engine))
    assert "not a rewrite by whoever controls the database" in plain.stdout

    code, report, _ = verify(engine, "--public-key", verifier)
    assert code == 1
    checks = by_account(report)
    assert checks[B]["ok"] is True
    assert checks[A]["ok"] is False
    assert checks[A]["attested"] is False
    text_out = run("queries", "verify", "--db", url_of(engine), "--public-key", verifier).stdout
    assert f"FAIL account {A}" in text_out
    report = evening_matches_verify(engine, day, tmp_path / "evening", "--public-key", verifier)
    assert [c["ok"] for c in report["accounts"] if c["account_id"] == A] == [False]
    assert "is not the signed head" in text_out or "rows deleted" in text_out


async def test_a_rollback_needs_the_copies_outside_the_database(
    engine: Engine,
    tmp_path: Path,
    key: tuple[Path, str],
    recorder_clock: trio.testing.MockClock,
) -> None:
    key_file, verifier = key
    notes = tmp_path / "notes"
    await record_signed(engine, tmp_path, key_file, notes)
    with engine.connect() as conn:
        kept = conn.execute(
            text(
                "SELECT id, events_last_id, log_last_id FROM checkpoints "
                "WHERE account_id = :a AND events_last_id > 0 ORDER BY id"
            ),
            {"a": A},
        ).all()[0]  # an early checkpoint: everything after it goes
    drop_append_only_triggers(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE account_id = :a AND id > :i"),
                     {"a": A, "i": kept.events_last_id})  # fmt: skip
        conn.execute(text("DELETE FROM connection_log WHERE account_id = :a AND id > :i"),
                     {"a": A, "i": kept.log_last_id})  # fmt: skip
        conn.execute(text("DELETE FROM checkpoints WHERE account_id = :a AND id > :i"),
                     {"a": A, "i": kept.id})  # fmt: skip

    code, report, _ = verify(engine, "--public-key", verifier)
    assert code == 0, report  # the documented limit: a consistent earlier state
    assert by_account(report)[A]["attested_through_id"] == kept.events_last_id

    code, report, _ = verify(engine, "--public-key", verifier, "--checkpoints", str(notes))
    assert code == 1
    problems = " ".join(p["what"] for p in by_account(report)[A]["problems"])
    assert "ahead of the store" in problems
    assert by_account(report)[B]["ok"] is True


async def test_another_keys_public_key_attests_nothing(
    tmp_path: Path, key: tuple[Path, str], recorder_clock: trio.testing.MockClock
) -> None:
    engine = migrated(f"sqlite:///{tmp_path}/store.db")
    key_file, _ = key
    await record_signed(engine, tmp_path, key_file, tmp_path / "notes")
    other = tmp_path / "other-key"
    write_new_key(other)
    result = run("queries", "verify", "--db", url_of(engine), "--public-key", f"{other}.pub")
    assert result.returncode == 1
    assert "no signature by a trusted key" in result.stdout


def test_a_day_change_attests_the_old_day_to_its_last_row_and_exports_carry_it(
    tmp_path: Path, key: tuple[Path, str]
) -> None:
    engine = migrated(f"sqlite:///{tmp_path}/store.db")
    key_file, verifier = key
    with engine.connect() as conn:
        store_id = read_store_id(conn)
    notes_dir = tmp_path / "notes"
    attestation = Attestation(load_signer(key_file), store_id, zone(DEFAULT_TIMEZONE),
                              NoteCopies(notes_dir))  # fmt: skip
    appender = Appender(engine, attestation)
    next_day = DAY + dt.timedelta(days=1)
    assert appender.append([frame(A, n) for n in (1, 2, 3)]) == []  # nothing due yet
    made = appender.append([frame(A, 4), frame(A, 5), frame(A, 6, day=next_day)])
    stored = frames(engine, A)
    assert [n.checkpoint.events for n in made] == [
        ChainState(5, stored[4]["id"], stored[4]["chain_hash"])
    ]
    assert made[0].day == DAY
    assert appender.unattested == {A}  # the new day's row is not attested yet
    closing = LogRecord("s-100000", A, NOON_NS, "closed", "shutdown")
    made = appender.append([], [closing])  # a session's end attests the account
    assert made[0].checkpoint.events.count == 6
    assert made[0].checkpoint.log.count == 1
    assert appender.unattested == set()
    copies = (notes_dir / f"{DAY}.notes").read_text()
    assert copies.count("studio-recorder checkpoint v1") == 1

    out = tmp_path / "export"
    export_day(url_of(engine), DAY, out)
    result = run("queries", "verify", "--from-export", out, "--public-key", verifier, "--json")
    assert result.returncode == 0, result.stdout
    check = by_account(json.loads(result.stdout))[A]
    assert (check["attested"], check["checkpoints"], check["unattested_rows"]) == (True, 1, 0)
    manifest = out / "manifest" / f"trading_day={DAY}.json"
    document = json.loads(manifest.read_text())
    document["accounts"][A]["checkpoints"] = [
        document["accounts"][A]["checkpoints"][0].replace("events 5", "events 4")
    ]
    manifest.write_text(json.dumps(document))
    result = run("queries", "verify", "--from-export", out, "--public-key", verifier)
    assert result.returncode == 1
    assert "does not verify" in result.stdout


def test_copies_without_a_key_are_a_usage_error_unless_they_come_from_the_config(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path}/store.db"
    migrated(store)
    config = write_config(tmp_path / "recorder.toml", [A], store,
                          signing={"checkpoint_dir": str(tmp_path / "notes")})  # fmt: skip
    (tmp_path / "notes").mkdir()
    plain = run("queries", "verify", "--config", config)
    assert plain.returncode == 0, plain.stderr  # the recorder's own config: no key, no check
    assert "no --public-key" in plain.stdout
    one_line_error(
        run("queries", "verify", "--db", store, "--checkpoints", tmp_path / "notes"),
        2,
        "--checkpoints needs a --public-key",
    )


async def test_history_re_signed_with_the_key_is_a_fork_against_the_copies(
    tmp_path: Path, key: tuple[Path, str], recorder_clock: trio.testing.MockClock
) -> None:
    engine = migrated(f"sqlite:///{tmp_path}/store.db")
    key_file, verifier = key
    notes = tmp_path / "notes"
    await record_signed(engine, tmp_path, key_file, notes)
    # Someone with the database *and* the key: edit a fill, re-chain, throw the account's
    # checkpoints away and sign the rewritten history afresh.
    drop_append_only_triggers(engine)
    fill = next(r for r in frames(engine, A) if r["msg_type"] == "trade-notice")
    with engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == fill["id"]).values(raw=forged(fill)))
        conn.execute(text("DELETE FROM checkpoints WHERE account_id = :a"), {"a": A})
    rechain(engine, A)
    with engine.begin() as conn:
        attestation = Attestation(load_signer(key_file), read_store_id(conn),
                                  zone(DEFAULT_TIMEZONE))  # fmt: skip
        heads = (frames(engine, A)[-1]["chain_hash"], log(engine, A)[-1]["chain_hash"])
        assert attestation.checkpoint(conn, A, heads, NOON_NS, None) is not None

    code, report, _ = verify(engine, "--public-key", verifier)
    assert code == 0, report  # consistent and validly signed: the key alone cannot tell
    code, report, _ = verify(engine, "--public-key", verifier, "--checkpoints", str(notes))
    assert code == 1
    problems = " ".join(p["what"] for p in by_account(report)[A]["problems"])
    assert "fork:" in problems
