"""The store's schema, migrations and append-only triggers on real databases."""

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from recorder import migrate
from recorder.chain import GENESIS_HASH, canonical_log_bytes, next_hash
from recorder.errors import StoreError
from recorder.schema import connection_log, events
from recorder.store import open_engine

ROW = {
    "account_id": "100000", "session_id": "s-1", "received_at_ns": 1, "server_ts_ms": 2,
    "sequence": 3, "msg_type": "heartbeat", "trading_day": dt.date(2024, 6, 10),
    "replayed": False, "raw_kind": "text", "raw": '{"payload":{"type":"heartbeat"}}',
}  # fmt: skip


LOG_ROW = {"session_id": "s-1", "account_id": "100000", "at_ns": 1, "event": "opened",
           "detail": None}  # fmt: skip


def insert_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(events), [{**ROW, "chain_hash": next_hash(GENESIS_HASH, ROW)}])
        conn.execute(
            insert(connection_log),
            [{**LOG_ROW, "chain_hash": next_hash(GENESIS_HASH, LOG_ROW, canonical_log_bytes)}],
        )


def test_upgrade_creates_tables_indexes_and_is_idempotent(engine: Engine) -> None:
    inspector = inspect(engine)
    assert {"events", "connection_log"} <= set(inspector.get_table_names())
    columns = [c["name"] for c in inspector.get_columns("events")]
    assert columns == [
        "id", "account_id", "session_id", "received_at_ns", "server_ts_ms", "sequence",
        "msg_type", "trading_day", "replayed", "raw_kind", "raw", "chain_hash",
    ]  # fmt: skip
    index_columns = {tuple(i["column_names"]) for i in inspector.get_indexes("events")}
    assert {("account_id", "trading_day", "sequence"), ("trading_day",),
            ("received_at_ns",)} <= index_columns  # fmt: skip
    head = migrate.head_revision()
    assert migrate.upgrade(engine) == (head, head)


def test_models_and_migrations_agree(engine: Engine) -> None:
    assert migrate.check(engine) == migrate.head_revision()


@pytest.mark.parametrize("table", ["events", "connection_log"])
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {table} SET account_id = 'forged'", "DELETE FROM {table}"],
)
def test_update_and_delete_are_refused_by_the_database(
    engine: Engine, table: str, statement: str
) -> None:
    insert_rows(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement.format(table=table)))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT account_id FROM {table}")).scalar_one() == "100000"


@pytest.mark.postgres
def test_truncate_is_refused_on_postgresql(pg_url: str) -> None:
    engine = open_engine(pg_url)
    migrate.upgrade(engine)
    insert_rows(engine)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE events"))
    with engine.connect() as conn:
        assert conn.execute(select(events.c.id)).all() != []
    engine.dispose()


def test_ids_increase_in_insert_order(engine: Engine) -> None:
    with engine.begin() as conn:
        for received in (30, 10, 20):  # not in receipt order: ids must follow insertion
            row = {**ROW, "received_at_ns": received}
            conn.execute(insert(events), [{**row, "chain_hash": next_hash(GENESIS_HASH, row)}])
    with engine.connect() as conn:
        ordered = conn.execute(select(events.c.received_at_ns).order_by(events.c.id)).scalars()
        assert list(ordered) == [30, 10, 20]


def test_raw_kind_is_constrained(engine: Engine) -> None:
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(insert(events), [{**ROW, "raw_kind": "other", "chain_hash": "x"}])


def test_sqlite_is_wal_owner_only_and_missing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 5000
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(StoreError, match="database file not found"):
        open_engine(f"sqlite:///{tmp_path}/absent.db", must_exist=True)
    with pytest.raises(StoreError, match="directory of the database does not exist"):
        open_engine(f"sqlite:///{tmp_path}/no/such/dir.db")


def test_require_schema(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/empty.db")
    with pytest.raises(StoreError, match="run `studio-recorder db upgrade`"):
        migrate.require_schema(engine)
    migrate.upgrade(engine)
    migrate.require_schema(engine)


def test_alembic_command_line_uses_the_same_scripts(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    db = tmp_path / "alembic.db"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"),
         "-x", f"db=sqlite:///{db}", "upgrade", "head"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert migrate.current_revision(open_engine(f"sqlite:///{db}")) == migrate.head_revision()
