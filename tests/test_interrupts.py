"""Ctrl-C on the command line: ``interrupted; nothing was changed`` and exit 130, whether it
lands while the program is still importing its libraries or in the middle of an export —
and then the previous export is byte-identical."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from recorder.appender import Appender
from recorder.interrupts import INTERRUPTED_EXIT, NOTHING_CHANGED
from recorder.records import LogRecord
from tests.support import ROOT
from tests.support.cli import cli_env, run
from tests.support.frames import DAY, NOON_NS, A, fill
from tests.support.stores import migrated

SCRIPTS = Path(sys.executable).parent


#: Extension modules the command line loads while importing its libraries (any one will do).
LIBRARIES = ("sqlalchemy", "duckdb", "pyarrow", "msgspec", "cryptography", "psycopg")


def interrupt_while_importing(command: list[str], *, until: float = 30) -> tuple[int, str]:
    """Start ``command``, send SIGINT once it is loading its libraries' extension modules
    (its ``/proc/PID/maps`` shows one): its exit code and stderr."""
    process = subprocess.Popen(
        command, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + until
    while not any(name in maps.read_text() for name in LIBRARIES):
        assert process.poll() is None, "finished before it was interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=until)
    return process.returncode, stderr


@pytest.mark.parametrize("program", ["studio-query", "studio-recorder"])
def test_an_interrupt_while_importing_is_one_line_and_130(program: str) -> None:
    # The command line loads DuckDB/pyarrow/SQLAlchemy first (about a second).
    code, stderr = interrupt_while_importing([str(SCRIPTS / program), "--help"])
    assert (code, stderr) == (INTERRUPTED_EXIT, f"{program}: {NOTHING_CHANGED}\n")


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


#: Sessions other than this one waiting for a lock in a query on ``events``.
_WAITING_FOR_EVENTS = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND pid <> pg_backend_pid() AND query ILIKE '%events%'"
)


@pytest.mark.postgres
def test_an_interrupted_export_changes_nothing(pg_url: str, tmp_path: Path) -> None:
    engine = migrated(pg_url)
    try:
        log = [LogRecord("s", A, NOON_NS, "opened"), LogRecord("s", A, NOON_NS + 1, "subscribed")]
        Appender(engine).append([fill(A, n) for n in range(1, 20)], log)
        out = tmp_path / "export"
        first = run("queries", "export", "--db", pg_url, "--day", DAY, "--out", out)
        assert first.returncode == 0, first.stderr
        before = _digest(out)
        Appender(engine).append([fill(A, n) for n in range(20, 40)], [])  # the next export differs
        command = [str(SCRIPTS / "studio-query"), "export", "--db", pg_url, "--day", str(DAY),
                   "--out", str(out)]  # fmt: skip
        with engine.connect() as locker:
            locker.execute(text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))  # the read waits
            process = subprocess.Popen(
                command, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            with engine.connect() as watcher:  # imported, connected, waiting for the table
                waiting = text(_WAITING_FOR_EVENTS)
                deadline = time.monotonic() + 60
                while not watcher.execute(waiting).scalar_one():
                    watcher.rollback()  # pg_stat_activity is a snapshot per transaction
                    assert process.poll() is None, process.communicate()
                    assert time.monotonic() < deadline, "the export never waited for the table"
                    time.sleep(0.1)
            assert process.poll() is None
            process.send_signal(signal.SIGINT)
            time.sleep(0.5)
            locker.rollback()  # the read returns into Python, which raises KeyboardInterrupt
        stdout, stderr = process.communicate(timeout=60)
        assert stderr == f"studio-query: {NOTHING_CHANGED}\n"
        assert process.returncode == INTERRUPTED_EXIT
        assert "exported" not in stdout
        assert _digest(out) == before
        assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]
    finally:
        engine.dispose()  # also when an assertion failed: no connection left to the GC


def test_the_packages_load_their_public_names_on_first_use() -> None:
    import queries
    import recorder

    for package in (recorder, queries):
        lazy = package._LAZY  # type: ignore[attr-defined]
        assert set(lazy) == set(package.__all__) - {"__version__"}
        for name in package.__all__:
            assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = recorder.nothing  # type: ignore[attr-defined]
