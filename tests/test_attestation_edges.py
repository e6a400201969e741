"""Signed checkpoints at the edges: days interleaved by a late frame, exports whose chain
resumes from an unsigned hash, accounts with only journal rows, a whole account deleted,
journal rows after the last checkpoint, recovery after a lost acknowledgement.

Stores are built with the real appender (no network: the edges are in the rows).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from queries import export_day
from recorder.appender import Appender
from recorder.attestation import Attestation, NoteCopies, read_store_id
from recorder.chain import GENESIS_HASH, next_hash
from recorder.records import LogRecord
from recorder.signing import load_signer, write_new_key
from recorder.tradingday import DEFAULT_TIMEZONE, zone
from tests.support.cli import run
from tests.support.frames import DAY, NOON_NS, frame
from tests.support.stores import frames, migrated

A, L = "100000", "L1"
NEXT_DAY = DAY + dt.timedelta(days=1)


class Signed:
    """A migrated SQLite store with a signing appender, its key and its notes directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path}/store.db"
        self.engine: Engine = migrated(self.url)
        self.key = tmp_path / "key"
        self.verifier = write_new_key(self.key)
        self.notes = tmp_path / "notes"
        self.appender = self.new_appender()

    def new_appender(self) -> Appender:
        with self.engine.connect() as conn:
            store_id = read_store_id(conn)
        attestation = Attestation(load_signer(self.key), store_id, zone(DEFAULT_TIMEZONE),
                                  NoteCopies(self.notes))  # fmt: skip
        return Appender(self.engine, attestation)

    def verify(self, *args: object) -> tuple[int, dict[str, dict[str, Any]]]:
        result = run("queries", "verify", "--public-key", self.verifier, *args, "--json")
        report = json.loads(result.stdout or "{}")
        return result.returncode, {a["account_id"]: a for a in report.get("accounts", [])}


@pytest.fixture
def store(tmp_path: Path) -> Signed:
    return Signed(tmp_path)


def log_record(account: str, n: int, event: str = "opened") -> LogRecord:
    return LogRecord(f"s-{account}", account, NOON_NS + n, event, None)


def test_a_day_interleaved_by_a_late_frame_is_attested_in_store_and_export(
    store: Signed, tmp_path: Path
) -> None:
    # Day D, then D+1, then a late frame of D, then D+1 again: every change of day is a
    # checkpoint, so each stretch of each day ends at a signed head.
    batch = [frame(A, n) for n in (1, 2, 3)]
    batch += [frame(A, 4, day=NEXT_DAY), frame(A, 5), frame(A, 6, day=NEXT_DAY)]
    made = store.appender.append(batch, checkpoint_all=True)
    assert [n.checkpoint.events.count for n in made] == [3, 4, 5, 6]
    for day in (DAY, NEXT_DAY):
        code, checks = store.verify("--db", store.url, "--day", day)
        assert code == 0, checks
        assert (checks[A]["attested"], checks[A]["unattested_rows"]) == (True, 0)
        export_day(store.url, day, tmp_path / "export")
        code, checks = store.verify("--from-export", tmp_path / "export", "--day", day)
        assert code == 0, checks
        assert (checks[A]["attested"], checks[A]["unattested_rows"]) == (True, 0)


def test_a_day_without_a_checkpoint_of_its_own_is_not_attested(store: Signed) -> None:
    unsigned = Appender(store.engine)  # recorded before signing was switched on
    unsigned.append([frame(A, 1), frame(A, 2), frame(A, 3, day=NEXT_DAY)])
    store.appender.append([frame(A, 4, day=NEXT_DAY)], checkpoint_all=True)
    # The one checkpoint ends on a row of the next day: day D's rows are covered by it only
    # through rows that verify --day D does not read.
    code, checks = store.verify("--db", store.url, "--day", DAY)
    assert code == 0
    assert (checks[A]["attested"], checks[A]["unattested_rows"]) == (False, 2)
    code, checks = store.verify("--db", store.url)
    assert code == 0
    assert (checks[A]["attested"], checks[A]["unattested_rows"]) == (True, 0)


def test_an_export_resumed_from_a_forged_hash_is_not_attested(
    store: Signed, tmp_path: Path
) -> None:
    store.appender.append([frame(A, n) for n in range(1, 11)], checkpoint_all=True)
    out = tmp_path / "export"
    export_day(store.url, DAY, out)
    code, checks = store.verify("--from-export", out)
    assert (code, checks[A]["attested"]) == (0, True)
    # Forge row 5 in the store's copy of the day and re-export, then splice in an unsigned
    # "resume" at row 6 that restores the original chain: the chain verifies again...
    stored = frames(store.engine, A)
    original_5 = stored[4]["chain_hash"]
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER events_no_update"))
        forged = {**stored[4], "raw": stored[4]["raw"].replace("é", "e")}
        conn.execute(
            text("UPDATE events SET raw = :raw, chain_hash = :h WHERE id = :id"),
            {"raw": forged["raw"], "h": next_hash(stored[3]["chain_hash"], forged),
             "id": forged["id"]},
        )  # fmt: skip
    export_day(store.url, DAY, out)
    manifest_path = out / "manifest" / f"trading_day={DAY}.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["accounts"][A]["chain_resume"] = [{"id": stored[5]["id"], "previous_hash": original_5}]
    manifest_path.write_text(json.dumps(manifest))
    code, checks = store.verify("--from-export", out)
    # ... but rows 1-5 now hang on a hash nothing signs: not attested, never "OK and attested".
    assert code == 0, checks
    assert (checks[A]["attested"], checks[A]["unattested_rows"]) == (False, 5)


def test_an_account_with_only_journal_rows_is_verified(store: Signed) -> None:
    store.appender.append([], [log_record(L, n) for n in (1, 2, 3)], checkpoint_all=True)
    code, checks = store.verify("--db", store.url)
    assert code == 0
    assert (checks[L]["attested"], checks[L]["checkpoints"]) == (True, 1)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER connection_log_no_update"))
        conn.execute(text("UPDATE connection_log SET detail = 'forged' WHERE account_id = :a"),
                     {"a": L})  # fmt: skip
    for args in ((), ("--account", L)):
        code, checks = store.verify("--db", store.url, *args)
        assert code == 1
        assert not checks[L]["ok"]


def test_an_account_deleted_whole_is_found_by_the_copies(store: Signed) -> None:
    store.appender.append([frame(A, n) for n in (1, 2)], checkpoint_all=True)
    store.appender.append([frame("other", 1)], checkpoint_all=True)
    with store.engine.begin() as conn:
        for table in ("events", "connection_log", "checkpoints"):
            conn.execute(text(f"DROP TRIGGER {table}_no_delete"))
            conn.execute(text(f"DELETE FROM {table} WHERE account_id = :a"), {"a": A})
    assert store.verify("--db", store.url)[0] == 0  # the signatures alone cannot tell
    code, checks = store.verify("--db", store.url, "--checkpoints", store.notes)
    assert code == 1
    assert "ahead of the store" in checks[A]["problems"][0]["what"]
    assert checks["other"]["ok"]


def test_journal_rows_after_the_last_checkpoint_are_unattested(store: Signed) -> None:
    store.appender.append([frame(A, 1)], checkpoint_all=True)
    store.appender.append([], [log_record(A, 1), log_record(A, 2)])  # no checkpoint due
    code, checks = store.verify("--db", store.url)
    assert code == 0
    assert (checks[A]["attested"], checks[A]["unattested_rows"]) == (False, 2)


def test_a_private_key_given_as_a_public_one_is_never_echoed(store: Signed) -> None:
    private = store.key.read_text().strip()
    result = run("queries", "verify", "--db", store.url, "--public-key", private)
    assert result.returncode == 2  # a usage error
    assert private.split("+")[-1] not in result.stdout + result.stderr
    assert "public key 1:" in result.stderr


def test_a_batch_found_committed_after_a_lost_acknowledgement_leaves_nothing_behind(
    store: Signed,
) -> None:
    records = ([frame(A, 1)], [log_record(L, 1)])
    waiting = store.new_appender()  # the appender whose commit is acknowledged ...
    assert (waiting.head(A), waiting.log_head(L)) == (GENESIS_HASH, GENESIS_HASH)
    store.appender.append(*records)  # ... after it reached the store: the answer was lost
    assert waiting.resync(*records) is True
    assert waiting.unattested == {A, L}  # both accounts rows wait for their checkpoint


def test_accounts_left_unattested_by_a_crash_are_found_at_start(store: Signed) -> None:
    Appender(store.engine).append([frame(A, 1)], [log_record(L, 1)])  # no checkpoint
    fresh = store.new_appender()
    fresh.seed_unattested([A, L, "never-seen"])
    assert fresh.unattested == {A, L}
    assert {n.checkpoint.account_id for n in fresh.append([], checkpoint_all=True)} == {A, L}
    assert fresh.unattested == set()
