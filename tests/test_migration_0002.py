"""Revision 0002 on a store recorded before it: the journal gets chained, the store an id."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import DBAPIError

from recorder import migrate
from recorder.chain import canonical_log_bytes, verify_chain
from recorder.schema import checkpoints
from recorder.store import open_engine

CHECKPOINT = {
    "account_id": "100000", "at_ns": 4_000, "events_count": 0, "events_last_id": 0,
    "events_head": "0" * 64, "log_count": 3, "log_last_id": 4, "log_head": "0" * 64,
    "key_id": "00000000", "note": "a note",
}  # fmt: skip
#: An UPDATE of each table that holds a row here (events is empty in this test).
UPDATES = {"connection_log": "detail = 'x'", "store_meta": "value = 'x'",
           "checkpoints": "note = 'x'"}  # fmt: skip
JOURNAL = [  # (session, account, at_ns, event, detail)
    ("s1", "100000", 1_000, "opened", None),
    ("s2", "0042", 1_500, "opened", None),
    ("s1", "100000", 2_000, "subscribed", "ok"),
    ("s1", "100000", 3_000, "closed", "server close 1000"),
    ("s2", "0042", 3_500, "closed", "shutdown"),
]


@pytest.fixture
def old_store(db_url: str) -> Engine:
    """A store at revision 0001 holding a journal (no chain_hash column yet)."""
    engine = open_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        for session, account, at_ns, event, detail in JOURNAL:
            conn.execute(
                text(
                    "INSERT INTO connection_log (session_id, account_id, at_ns, event, detail) "
                    "VALUES (:s, :a, :t, :e, :d)"
                ),
                {"s": session, "a": account, "t": at_ns, "e": event, "d": detail},
            )
    return engine


def test_upgrade_chains_the_journal_and_names_the_store(old_store: Engine) -> None:
    before, after = migrate.upgrade(old_store)
    assert (before, after) == ("0001", migrate.head_revision())
    assert migrate.check(old_store) == after  # the models and the migrated schema agree
    with old_store.connect() as conn:
        rows = [
            dict(r._mapping) for r in conn.execute(text("SELECT * FROM connection_log ORDER BY id"))
        ]
        store_id = conn.execute(
            text("SELECT value FROM store_meta WHERE name = 'store_id'")
        ).scalar_one()
    assert [(r["session_id"], r["event"]) for r in rows] == [(j[0], j[3]) for j in JOURNAL]
    assert len(store_id) == 32
    assert int(store_id, 16) >= 0
    for account in ("100000", "0042"):
        mine = [r for r in rows if r["account_id"] == account]
        assert verify_chain(mine, encode=canonical_log_bytes)[0] is None
    # The journal's triggers are back, and the new tables are insert-only too.
    with old_store.begin() as conn:
        conn.execute(insert(checkpoints).values(CHECKPOINT))
    for table, change in UPDATES.items():
        with pytest.raises(DBAPIError, match="append-only"), old_store.begin() as conn:
            conn.execute(text(f"DELETE FROM {table}"))
        with pytest.raises(DBAPIError, match="append-only"), old_store.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET {change}"))
    old_store.dispose()


def test_each_store_gets_its_own_id(tmp_path: object) -> None:
    ids = set()
    for name in ("a", "b"):
        engine = open_engine(f"sqlite:///{tmp_path}/{name}.db")
        migrate.upgrade(engine)
        migrate.upgrade(engine)  # again: the id is written once
        with engine.connect() as conn:
            found = conn.execute(text("SELECT value FROM store_meta")).scalars().all()
        assert len(found) == 1
        ids.add(found[0])
        engine.dispose()
    assert len(ids) == 2
