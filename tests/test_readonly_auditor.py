"""An auditor who may only read the store: every ``studio-query`` command works for a user
with read permission on the SQLite file and its directory, and nothing else.

The commands run in a forked child that drops to ``nobody`` (the interpreter and the
virtualenv may live where that user cannot go, so the child keeps the parent's loaded
modules: each command is run once as root first, which loads everything lazily imported).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
from sqlalchemy import Engine

from recorder.appender import Appender
from recorder.records import LogRecord
from tests.support.cli import run
from tests.support.frames import DAY, NOON_NS, A, fill
from tests.support.stores import migrated

NOBODY: Final = 65534
COMMANDS: Final = (
    ("verify",),
    ("gaps", "--day", DAY.isoformat()),
    ("audit", "--day", DAY.isoformat()),
    ("reconcile", "--day", DAY.isoformat()),
    ("sql", "--day", DAY.isoformat(), "SELECT count(*) AS n FROM events"),
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")


@pytest.fixture
def readable_store() -> Iterator[Path]:
    """A recorded store in a directory of root's: 0755 directory, 0644 file."""
    directory = Path(tempfile.mkdtemp(prefix="auditor-", dir="/tmp"))
    try:
        directory.chmod(0o755)
        engine = migrated(f"sqlite:///{directory}/store.db")
        log = [LogRecord("s", A, NOON_NS, "opened"), LogRecord("s", A, NOON_NS + 1, "subscribed")]
        Appender(engine).append([fill(A, n) for n in (1, 2, 3)], log)
        engine.dispose()
        (directory / "store.db").chmod(0o644)
        yield directory / "store.db"
    finally:
        shutil.rmtree(directory)


def as_nobody(*args: str) -> tuple[int, str, str]:
    """``studio-query ARGS`` in a forked child running as ``nobody``: (code, stdout, stderr)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.chdir("/")  # the test's own directory may be one nobody cannot enter
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = run("queries", *args)
            answer = [result.returncode, result.stdout, result.stderr]
        except BaseException as exc:
            answer = [99, "", repr(exc)]
        os.write(write_end, json.dumps(answer).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    code, stdout, stderr = json.loads(data)
    return code, stdout, stderr


def _warm(store: Path) -> None:
    """Every command once as root on a copy: loads every lazily imported module and resource."""
    with tempfile.TemporaryDirectory() as directory:
        copy = Path(shutil.copy(store, directory))
        for command in COMMANDS:
            assert run("queries", *command, "--db", f"sqlite:///{copy}").returncode == 0


def test_every_query_command_works_for_a_user_who_can_only_read(readable_store: Path) -> None:
    url = f"sqlite:///{readable_store}"
    _warm(readable_store)
    before = sorted(p.name for p in readable_store.parent.iterdir())
    for command in COMMANDS:
        code, stdout, stderr = as_nobody(*command, "--db", url)
        assert (code, stderr) == (0, ""), command
        assert stdout
    assert "OK" in as_nobody("verify", "--db", url)[1]
    # Nothing was (or could have been) created beside the store.
    assert sorted(p.name for p in readable_store.parent.iterdir()) == before == ["store.db"]


def test_a_store_a_writer_has_open_is_read_too(readable_store: Path, engine_open: None) -> None:
    url = f"sqlite:///{readable_store}"
    code, stdout, stderr = as_nobody("sql", "--db", url, "SELECT count(*) AS n FROM events")
    assert (code, stderr) == (0, "")
    assert "3" in stdout


@pytest.fixture
def engine_open(readable_store: Path) -> Iterator[None]:
    """A writer holds the store open (its -wal and -shm exist, readable like the file)."""
    _warm(readable_store)
    engine: Engine = migrated(f"sqlite:///{readable_store}")
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT count(*) FROM events").fetchall()
        for suffix in ("-wal", "-shm"):
            companion = readable_store.with_name(readable_store.name + suffix)
            assert companion.exists()
            companion.chmod(0o644)
        yield
    engine.dispose()
