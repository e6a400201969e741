"""Query inputs: account ids and dates are bound parameters, never spliced into SQL, and an
account id cannot make an export write outside ``--out``."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select

from queries.cli import cli as query_cli
from recorder import migrate
from recorder.appender import Appender
from recorder.records import LogRecord
from recorder.schema import events
from recorder.store import open_engine
from tests.support.cli import run
from tests.support.frames import DAY as TRADING_DAY
from tests.support.frames import NOON_NS, A, fill

DAY = TRADING_DAY.isoformat()  # a command-line argument

HOSTILE = [
    "' OR 1=1 --",
    '"; DROP TABLE events; --',
    "x') OR ('1'='1",
    "../../x",
    "a/b",
    "..",
    "~/x",
]


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("hostile") / "store.db"
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    migrate.upgrade(engine)
    accounts = [A, *HOSTILE, "nul\x00id"]
    appender = Appender(engine)
    for account in accounts:
        appender.append(
            [fill(account, n) for n in (1, 2, 3)],
            [LogRecord(f"s-{account}", account, NOON_NS, "opened"),
             LogRecord(f"s-{account}", account, NOON_NS + 1, "subscribed"),
             LogRecord(f"s-{account}", account, NOON_NS + 10**9, "closed", "shutdown")],
        )  # fmt: skip
    engine.dispose()
    return url


def _store_intact(url: str) -> None:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"events", "connection_log"} <= tables
        assert con.execute("SELECT count(*) FROM events").fetchone() == (3 * (2 + len(HOSTILE)),)
    finally:
        con.close()


@pytest.mark.parametrize("account", HOSTILE)
def test_hostile_account_ids_are_parameters_in_every_query_command(
    hostile_store: str, account: str
) -> None:
    # In-process (the same click commands as the processes run), for speed.
    def query(*args: str) -> Result:
        return CliRunner().invoke(query_cli, [*args[:1], "--db", hostile_store, *args[1:]])

    selector = ("--account", account, "--json")
    gaps = query("gaps", "--day", DAY, *selector)
    audit = query("audit", "--day", DAY, *selector)
    reconcile = query("reconcile", "--day", DAY, *selector)
    verify = query("verify", *selector)
    sql = query(
        "sql", "--day", DAY, *selector,
        "SELECT DISTINCT account_id FROM events UNION SELECT DISTINCT account_id "
        "FROM connection_log",
    )  # fmt: skip
    for result in (gaps, audit, reconcile, verify, sql):
        assert result.exit_code == 0, (result.output, result.exception)
    assert [r["account_id"] for r in json.loads(sql.stdout)] == [account]
    for result in (gaps, audit, reconcile):
        report = json.loads(result.stdout)
        assert [a["account_id"] for a in report["accounts"]] == [account]
    assert [a["account_id"] for a in json.loads(verify.stdout)["accounts"]] == [account]
    assert json.loads(verify.stdout)["ok"] is True
    audited = json.loads(audit.stdout)["accounts"][0]
    assert (audited["frames"], audited["sessions"]) == (3, 1)  # its own rows, nobody else's
    _store_intact(hostile_store)


def test_hostile_account_ids_and_dates_cannot_escape_the_export_directory(
    hostile_store: str, tmp_path: Path
) -> None:
    out = tmp_path / "a" / "b" / "out"
    for account in HOSTILE:
        result = run("queries", "export", "--db", hostile_store, "--day", DAY,
                     "--account", account, "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
    everything = run("queries", "export", "--db", hostile_store, "--day", DAY, "--out", str(out))
    assert everything.returncode == 0, everything.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written
    for path in written:
        assert path.resolve().is_relative_to(out.resolve()), path
    files = {p.name for p in (out / "events" / f"trading_day={DAY}").iterdir()}
    assert files == {
        "100000.parquet",
        "%27%20OR%201%3D1%20--.parquet",
        "%22%3B%20DROP%20TABLE%20events%3B%20--.parquet",
        "%2E.%2F..%2Fx.parquet",  # a leading . is encoded too: not a hidden file
        "a%2Fb.parquet",
        "%2E%2E.parquet",
        "x%27%29%20OR%20%28%271%27%3D%271.parquet",
        "%7E%2Fx.parquet",
        "nul%00id.parquet",
    }
    manifest = json.loads((out / "manifest" / f"trading_day={DAY}.json").read_text())
    assert set(manifest["accounts"]) == {A, *HOSTILE, "nul\x00id"}
    # The export reads back with every id intact, and verifies.
    check = run("queries", "verify", "--from-export", str(out), "--json")
    assert check.returncode == 0, check.stderr
    assert {a["account_id"] for a in json.loads(check.stdout)["accounts"]} == set(
        manifest["accounts"]
    )
    _store_intact(hostile_store)


def test_hostile_dates_are_refused_in_one_line(hostile_store: str, tmp_path: Path) -> None:
    days = ["2024-06-10' OR 1=1 --", "2024-06-10; DROP TABLE events", "../../2024-06-10",
            "2024-06-10\n", "２０２４-06-10", "x"]  # fmt: skip
    commands = (
        "export",
        "gaps",
        "audit",
        "reconcile",
        "sql",
        "verify",
    )  # one parser; each command once
    for day, command in zip(days, commands, strict=True):
        extra = ["--out", str(tmp_path / "out")] if command == "export" else []
        extra += ["SELECT 1"] if command == "sql" else []
        result = run("queries", command, "--db", hostile_store, "--day", day, *extra)
        assert result.returncode == 2, (command, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert "expected YYYY-MM-DD" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
    _store_intact(hostile_store)


def test_hostile_account_ids_are_parameters_on_every_backend(engine: Engine) -> None:
    """The same through each store backend's own placeholders (``?`` / ``$n``)."""
    accounts = [A, "' OR 1=1 --", '"; DROP TABLE events; --']
    appender = Appender(engine)
    for account in accounts:
        appender.append(
            [fill(account, n) for n in (1, 2)],
            [LogRecord(f"s-{account}", account, NOON_NS, "opened")],
        )
    url = engine.url.render_as_string(hide_password=False)
    for account in accounts[1:]:
        for command in ("sql", "audit", "verify"):
            args = [command, "--db", url, "--account", account, "--json"]
            if command != "verify":
                args += ["--day", DAY]
            if command == "sql":
                args.append("SELECT account_id, count(*) AS n FROM events GROUP BY account_id")
            result = CliRunner().invoke(query_cli, args)
            assert result.exit_code == 0, (result.output, result.exception)
            document = json.loads(result.output)
            rows = document if command == "sql" else document["accounts"]
            assert [r["account_id"] for r in rows] == [account]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 6
