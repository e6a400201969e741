"""Tamper verification of the store: intact chains pass; a changed, deleted or swapped row is
named by account and row id (on a copy of the store with its append-only triggers dropped)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from queries.audit import audit
from queries.duck import open_store
from queries.errors import QueryError
from queries.storecheck import verify_store
from queries.verify import CHANGED, VerifyReport, render_verify
from recorder.chain import canonical_bytes
from recorder.schema import events
from tests.support.simday import DAY, A, B, record


@pytest.fixture
def day_engine(engine: Engine) -> Engine:
    record(engine)
    return engine


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def row_id(engine: Engine, account: str, session: str, sequence: int) -> int:
    query = select(events.c.id).where(
        events.c.account_id == account, events.c.session_id == session,
        events.c.sequence == sequence,
    )  # fmt: skip
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def next_row_of(engine: Engine, account: str, after_id: int) -> int:
    query = select(events.c.id).where(events.c.account_id == account, events.c.id > after_id)
    with engine.connect() as conn:
        return int(conn.execute(query.order_by(events.c.id).limit(1)).scalar_one())


def tamper(engine: Engine, tmp_path: Path, statements: list[tuple[str, dict[str, Any]]]) -> str:
    """Apply ``statements`` to a copy of the store with its triggers dropped (SQLite), or to
    the test's own PostgreSQL schema with the append-only trigger disabled; its URL."""
    if engine.dialect.name == "sqlite":
        copy = tmp_path / "tampered.db"
        source = sqlite3.connect(str(engine.url.database))
        db = sqlite3.connect(copy)
        source.backup(db)  # a consistent copy, WAL included
        source.close()
        db.execute("DROP TRIGGER events_no_update")
        db.execute("DROP TRIGGER events_no_delete")
        for sql, params in statements:
            db.execute(sql, params)
        db.commit()
        db.close()
        return f"sqlite:///{copy}"
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_append_only"))
        for sql, params in statements:
            conn.execute(text(sql), params)
    return url_of(engine)


def by_account(report: VerifyReport) -> dict[str, Any]:
    return {check.account_id: check for check in report.accounts}


def test_intact_store_verifies(day_engine: Engine) -> None:
    url = url_of(day_engine)
    report = verify_store(url)
    assert report.ok
    checks = by_account(report)
    assert (checks[A].rows, checks[B].rows) == (57, 14)
    with day_engine.connect() as conn:
        last = conn.execute(select(events.c.chain_hash).where(events.c.account_id == B)
                            .order_by(events.c.id.desc()).limit(1)).scalar_one()  # fmt: skip
    assert checks[B].head == last
    assert checks[B].anchor == "0" * 64
    day = verify_store(url, day=DAY, accounts=[B])
    assert day.ok
    assert [c.account_id for c in day.accounts] == [B]
    assert "OK" in render_verify(day)
    with pytest.raises(QueryError, match="unknown account '31337'"):
        verify_store(url, accounts=["31337"])


def expect_break(report: VerifyReport, account: str, bad_id: int) -> None:
    assert not report.ok
    checks = by_account(report)
    problem = checks[account].problems[0]
    assert problem.row_id == bad_id
    assert problem.what == CHANGED
    assert problem.expected != problem.stored
    others = [c for c in report.accounts if c.account_id != account]
    assert others
    assert all(c.ok for c in others)
    assert f"FAIL account {account}: row {bad_id}: {CHANGED}" in render_verify(report)


def test_a_changed_row_is_named(day_engine: Engine, tmp_path: Path) -> None:
    victim = row_id(day_engine, B, "B-s1", 3)  # the live trade-notice U1
    url = tamper(day_engine, tmp_path, [(
        "UPDATE events SET raw = replace(raw, '\"quantity\":\"10\"', '\"quantity\":\"11\"') "
        "WHERE id = :id", {"id": victim},
    )])  # fmt: skip
    expect_break(verify_store(url), B, victim)
    expect_break(verify_store(url, day=DAY), B, victim)
    with open_store(url, day=DAY, payload=False) as ws:
        report = {a["account_id"]: a for a in audit(ws)["accounts"]}
    assert report[A]["chain_ok"] is True
    assert report[B]["chain_ok"] is False
    assert report[B]["chain_problems"][0]["row_id"] == victim


def test_a_deleted_row_breaks_the_chain_at_the_next_row(day_engine: Engine, tmp_path: Path) -> None:
    victim = row_id(day_engine, A, "A-s1", 4)
    following = next_row_of(day_engine, A, victim)
    url = tamper(day_engine, tmp_path, [("DELETE FROM events WHERE id = :id", {"id": victim})])
    expect_break(verify_store(url), A, following)
    expect_break(verify_store(url, day=DAY, accounts=[A, B]), A, following)


def test_swapped_rows_are_detected(day_engine: Engine, tmp_path: Path) -> None:
    first, second = row_id(day_engine, A, "A-s1", 2), row_id(day_engine, A, "A-s1", 3)
    with day_engine.connect() as conn:
        raws = dict(conn.execute(select(events.c.id, events.c.raw)
                                 .where(events.c.id.in_([first, second]))).all())  # fmt: skip
    swap = "UPDATE events SET raw = :raw WHERE id = :id"
    url = tamper(day_engine, tmp_path, [(swap, {"raw": raws[second], "id": first}),
                                        (swap, {"raw": raws[first], "id": second})])  # fmt: skip
    expect_break(verify_store(url), A, first)


def test_worker_processes_give_the_same_answer(sqlite_url: str, tmp_path: Path) -> None:
    from recorder import migrate
    from recorder.store import open_engine

    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)
    record(engine)
    victim = row_id(engine, B, "B-s2", 2)
    url = tamper(engine, tmp_path, [("UPDATE events SET session_id = 'X' WHERE id = :id",
                                     {"id": victim})])  # fmt: skip
    engine.dispose()
    serial, parallel = verify_store(url, workers=1), verify_store(url, workers=2)
    assert parallel.as_dict() == serial.as_dict()
    expect_break(parallel, B, victim)


def test_feeding_dates_as_text_is_byte_identical() -> None:
    # verify hands the chain the trading day as ISO text instead of a date object.
    import datetime as dt

    row: dict[str, Any] = {"account_id": "1", "session_id": "s", "received_at_ns": 1,
                           "server_ts_ms": None, "sequence": 2, "msg_type": "x",
                           "trading_day": dt.date(2024, 6, 10), "replayed": False,
                           "raw_kind": "text", "raw": "{}"}  # fmt: skip
    assert canonical_bytes(row) == canonical_bytes({**row, "trading_day": "2024-06-10"})
