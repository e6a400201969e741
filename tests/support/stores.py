"""Stores for tests: migrated, built once per run, and what they hold (rows in id order)."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ColumnElement, Engine, Table, select

from recorder import migrate
from recorder.envelope import decode_raw
from recorder.schema import connection_log, events
from recorder.store import open_engine


def migrated(url: str) -> Engine:
    """An engine on the store at ``url``, created if needed and upgraded to the head revision."""
    engine = open_engine(url)
    migrate.upgrade(engine)
    return engine


def built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """``tmp/NAME``, made by ``build(path)`` once per test run, however many pytest-xdist
    workers need it: the first builds it under a lock in the run's temporary directory
    (shared by the workers), the others wait for it and reuse it. For read-only fixtures
    that are expensive to make (a 100,000-row store: seconds of CPU)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # each worker's basetemp is a directory of the run's
    path, done = root / name, root / f"{name}.done"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            build(path)
            done.touch()
    return path


def rows(engine: Engine, table: Table, *where: ColumnElement[bool]) -> list[dict[str, Any]]:
    """Rows of ``table`` matching ``where``, in id (insertion) order, as dicts."""
    with engine.connect() as conn:
        query = select(table).where(*where).order_by(table.c.id)
        return [dict(row._mapping) for row in conn.execute(query)]


def frames(engine: Engine, account: str) -> list[dict[str, Any]]:
    """The ``events`` rows of ``account``."""
    return rows(engine, events, events.c.account_id == account)


def log(engine: Engine, account: str | None = None) -> list[dict[str, Any]]:
    """The ``connection_log`` rows (of ``account``, or of every account)."""
    where = () if account is None else (connection_log.c.account_id == account,)
    return rows(engine, connection_log, *where)


def raws(stored: list[dict[str, Any]]) -> list[str | bytes]:
    """The frames as received (binary ones decoded back to bytes)."""
    return [decode_raw(row["raw_kind"], row["raw"]) for row in stored]


def assert_no_loss_no_duplicates(
    stored: list[dict[str, Any]], day_log: list[str], *, upto: int | None = None
) -> None:
    """Every sequenced frame of the day (up to ``upto``) stored exactly as sent, and no
    session holds any sequence twice (replays across sessions repeat it by design)."""
    sent = {json.loads(frame)["sequence"]: frame for frame in day_log}
    last = max(sent) if upto is None else upto
    by_sequence: dict[int, set[str | bytes]] = {}
    per_session: dict[str, list[int]] = {}
    for row in stored:
        if row["sequence"] is None:
            continue
        by_sequence.setdefault(row["sequence"], set()).add(decode_raw(row["raw_kind"], row["raw"]))
        per_session.setdefault(row["session_id"], []).append(row["sequence"])
    missing = [n for n in range(1, last + 1) if n not in by_sequence]
    assert not missing, f"{len(missing)} sequences never stored, first {missing[:5]}"
    for n in range(1, last + 1):
        assert by_sequence[n] == {sent[n]}, f"sequence {n} stored differently from what was sent"
    for session, seen in per_session.items():
        assert len(seen) == len(set(seen)), f"session {session} stored a sequence twice"
        assert seen == sorted(seen), f"session {session} stored sequences out of order"
