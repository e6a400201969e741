"""Shared fixtures: real databases (SQLite in tmp_path; PostgreSQL when configured)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from sqlalchemy import Engine, text

from recorder.store import normalize_url, open_engine

PG_ENV = "STUDIO_RECORDER_TEST_PG_URL"
PG_SKIP_REASON = f"{PG_ENV} is not set: no PostgreSQL server to test against"


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = open_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = normalize_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: SQLite always, PostgreSQL when configured."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty store (each backend in turn)."""
    from recorder import migrate

    eng = open_engine(db_url)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def recorder_clock() -> trio.testing.MockClock:
    """An autojump clock for tests whose code uses worker threads (the recorder's
    writer, httpx's resolver): it jumps only after 10 ms of real idleness
    (pytest-trio's ``autojump_clock`` jumps at once).

    The recorder commits in worker threads (``trio.to_thread``). With a zero
    threshold, virtual time races through every pending timer while a thread
    works, so a 30 s grace period can "expire" during one 5 ms commit. Ten
    milliseconds of real idleness is far longer than a commit and still lets a
    test cover minutes of virtual time in a second or two.
    """
    return trio.testing.MockClock(autojump_threshold=0.01)
