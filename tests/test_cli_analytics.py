"""``studio-query gaps|audit|reconcile|verify|sql`` through the console script's ``main()``:
outputs, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import functools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from queries.export import export_day
from recorder import migrate
from recorder.store import open_engine
from tests.support import ROOT
from tests.support.cli import command_paths, documented, one_line_error, run_process
from tests.support.cli import run as run_module
from tests.support.simday import DAY, A, B, record

run = functools.partial(run_module, "queries")


def run_json(*args: str, code: int = 0) -> Any:
    result = run(*args, "--json")
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The recorded faulty day in a SQLite file (read-only for every test here)."""
    path = tmp_path_factory.mktemp("cli") / "store.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    record(engine)
    engine.dispose()
    return f"sqlite:///{path}"


def by_account(report: dict[str, Any]) -> dict[str, Any]:
    return {a["account_id"]: a for a in report["accounts"]}


def test_gaps_json_and_fail_on_gaps(store: str) -> None:
    day = ("--db", store, "--day", "2024-06-10")
    report = run_json("gaps", *day)
    assert report["trading_day"] == "2024-06-10"
    assert report["silence_threshold_s"] == 120
    assert by_account(report)[A]["sequence_gaps"] == [
        {"first_missing": 12, "last_missing": 13, "count": 2}
    ]
    failing = run("gaps", *day, "--fail-on-gaps", "--json")
    assert failing.returncode == 1
    assert json.loads(failing.stdout)["accounts"][1]["account_id"] == A
    assert run("gaps", *day, "--fail-on-gaps", "--account", B).returncode == 0
    human = run("gaps", *day, "--silence-s", "90")
    assert human.returncode == 0
    assert "Account 100000: sequences 1..18, 16 distinct, 23 duplicates" in human.stdout
    assert "unclean end" in human.stdout


def test_audit_and_reconcile(store: str, tmp_path: Path) -> None:
    day = ("--db", store, "--day", "2024-06-10")
    audit = by_account(run_json("audit", *day))
    assert (audit[A]["frames"], audit[A]["chain_ok"], audit[B]["frames"]) == (57, True, 14)
    assert audit[A]["latency_ms"]["p99"] == 25.0
    assert "Audit of 2024-06-10" in run("audit", *day).stdout
    broker = tmp_path / "eod.csv"
    broker.write_text("account_id,symbol,quantity\n0042,SPY,5\n")
    report = run_json("reconcile", *day, "--account", B, "--positions", str(broker))
    spy = report["accounts"][0]["symbols"][0]
    assert (spy["vwap_bought"], spy["start_position"], spy["consistent"]) == ("530.25", "-5", True)
    assert report["accounts"][0]["breaks"] == []
    assert run("reconcile", *day, "--account", B, "--fail-on-breaks").returncode == 0
    breaking = run("reconcile", *day, "--fail-on-breaks")
    assert breaking.returncode == 1
    assert "position-not-explained: MSFT" in breaking.stdout


def test_reconcile_filtered_out_is_not_unrecorded_and_unrecorded_is_a_break(
    store: str, tmp_path: Path
) -> None:
    day = ("--db", store, "--day", "2024-06-10")
    broker = tmp_path / "eod.csv"
    broker.write_text(
        "account_id,symbol,quantity\n0042,SPY,5\n100000,MSFT,1\n999999,AAPL,1000000\n"
    )
    # --account 0042: the other two were left out on purpose: said so, and not a break.
    only = run("reconcile", *day, "--account", B, "--positions", broker, "--fail-on-breaks")
    assert only.returncode == 0, only.stdout
    assert "left out by --account: 100000, 999999" in only.stdout
    assert "no recorded data" not in only.stdout
    filtered = run_json("reconcile", *day, "--account", B, "--positions", str(broker))
    assert filtered["positions_file"]["accounts_filtered_out"] == ["100000", "999999"]
    assert filtered["positions_file"]["accounts_unrecorded"] == []
    # Every account: 999999 holds a million AAPL at the broker and we recorded nothing of it.
    everything = run("reconcile", *day, "--positions", broker, "--fail-on-breaks", "--json")
    assert everything.returncode == 1
    report = by_account(json.loads(everything.stdout))
    assert report["999999"]["breaks"][0]["kind"] == "account-not-recorded"
    assert json.loads(everything.stdout)["positions_file"]["accounts_unrecorded"] == ["999999"]


def test_config_gives_store_time_zone_liveness_and_accounts(store: str, tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text(
        '[studio]\naccounts = ["100000", "0042", "777"]\n'
        f'[store]\nurl = "{store}"\n'
        '[recorder]\ntrading_day_timezone = "America/New_York"\nliveness_timeout_s = 240\n'
    )
    report = by_account(run_json("gaps", "--config", str(config), "--day", "2024-06-10"))
    assert sorted(report) == [B, A, "777"]
    assert report["777"]["coverage_gaps"][0]["seconds"] == 86400
    assert report[A]["silences"] == []  # threshold 2 x 240 s: the 480 s silence is not longer
    utc = by_account(run_json("gaps", "--db", store, "--day", "2024-06-10", "--timezone", "UTC"))
    assert utc[B]["coverage_gaps"][0]["start"] == "2024-06-10T00:00:00.000000000Z"


def test_verify_store_and_tampered_copy(store: str, tmp_path: Path) -> None:
    intact = run("verify", "--db", store)
    assert intact.returncode == 0, intact.stderr
    assert "OK" in intact.stdout.splitlines()[0]
    assert run("verify", "--db", store, "--day", "2024-06-10", "--account", B).returncode == 0
    copy = tmp_path / "copy.db"
    source = sqlite3.connect(store.removeprefix("sqlite:///"))
    db = sqlite3.connect(copy)
    source.backup(db)
    source.close()
    db.execute("DROP TRIGGER events_no_update")
    victim = db.execute("SELECT id FROM events WHERE account_id = '0042' AND sequence = 2 "
                        "AND NOT replayed").fetchone()[0]  # fmt: skip
    db.execute("UPDATE events SET raw = replace(raw, '530.25', '530.26') WHERE id = ?", (victim,))
    db.commit()
    db.close()
    for extra in ((), ("--day", "2024-06-10")):
        broken = run("verify", "--db", f"sqlite:///{copy}", *extra)
        assert broken.returncode == 1
        assert f"FAIL account 0042: row {victim}: row changed, removed or reordered" in (
            broken.stdout
        )
    report = run_json("verify", "--db", f"sqlite:///{copy}", code=1)
    assert report["ok"] is False
    bad = by_account(report)[B]
    assert bad["problems"][0]["row_id"] == victim
    assert by_account(report)[A]["ok"] is True


def test_from_export(store: str, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_day(store, DAY, out)
    day = ("--day", "2024-06-10")
    assert run_json("gaps", "--from-export", str(out), *day) == run_json(
        "gaps", "--db", store, *day
    )
    assert run("verify", "--from-export", str(out)).returncode == 0
    events = out / "events" / "trading_day=2024-06-10" / f"{A}.parquet"
    events.write_bytes(events.read_bytes()[:-100])
    broken = run("verify", "--from-export", str(out), *day)
    assert broken.returncode == 1
    assert f"FAIL account {A}: file {events.relative_to(out).as_posix()}" in broken.stdout


def test_sql(store: str) -> None:
    day = ("--db", store, "--day", "2024-06-10")
    csv = run("sql", *day, "--csv", "SELECT symbol, quantity FROM positions ORDER BY symbol")
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout.splitlines() == ["symbol,quantity", "AAPL,110", "MSFT,-30", "SPY,5"]
    rows = run_json("sql", *day, "SELECT count(*) AS n FROM events WHERE account_id = '0042'")
    assert rows == [{"n": 14}]
    table = run("sql", *day, "SELECT 'x' AS a")
    assert table.stdout.splitlines()[-1] == "(1 row)"


@pytest.mark.parametrize("command", command_paths("queries"), ids=" ".join)
def test_commands_are_documented(command: tuple[str, ...]) -> None:
    readme = (ROOT / "README.md").read_text()
    assert documented(readme, "queries", command), f"studio-query {' '.join(command)}"
    assert run(*command, "--help").returncode == 0


def test_console_script_as_a_process_helps_and_turns_usage_errors_into_one_line(
    store: str, tmp_path: Path
) -> None:
    # The tests above call main() in-process; this is main() as the interpreter runs it.
    assert "Usage: studio-query" in run_process("queries", "--help").stdout
    one_line_error(run_process("queries", "gaps", "--db", store, "--bogus", cwd=tmp_path), 2,
                   "No such option '--bogus'")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("gaps", "--day", "2024-13-01"), 2, "impossible date '2024-13-01'"),
        (("audit", "--day", "yesterday"), 2, "bad date 'yesterday'"),
        (("gaps",), 2, "give --day, or --from and --to"),
        (("gaps", "--from", "2024-06-11", "--to", "2024-06-10"), 2, "--to 2024-06-10 is before"),
        (("gaps", "--day", "2024-06-10", "--account", "31337"), 1, "unknown account '31337'"),
        (("verify", "--account", "31337"), 1, "unknown account '31337'"),
        (("sql", "SELEC 1"), 1, "SQL error: Parser Error"),
        (("sql", "SELECT * FROM nowhere"), 1, "SQL error: Catalog Error"),
        (("sql", "--json", "--csv", "SELECT 1"), 2, "give --json or --csv"),
        (("gaps", "--day", "2024-06-10", "--timezone", "Mars/Olympus"), 2, "unknown time zone"),
        (("sql", ""), 2, "empty SQL"),
        (("gaps", "--day", "2024-06-10", "--account", " "), 2, "an account id cannot be blank"),
        (("verify", "--public-key", "not-a-key"), 2, "public key 1: not a verifier key"),
        # Days that nanosecond timestamps cannot hold: a usage error for every command.
        (("gaps", "--day", "9999-12-31"), 2, "outside the days the store can hold"),
        (("audit", "--day", "2300-01-01"), 2, "outside the days the store can hold"),
        (("verify", "--day", "9999-12-31"), 2, "outside the days the store can hold"),
        (("sql", "--day", "1600-01-01", "SELECT 1"), 2, "outside the days the store can hold"),
        (("reconcile", "--day", "1677-09-22", "--positions", "absent.csv"), 2,
         "(1677-09-23 to 2262-04-09)"),
        (("export", "--day", "2262-04-10", "--out", "x"), 2, "outside the days the store can hold"),
        (("gaps", "--day", "2024-06-10", "--silence-s", "0"), 2, "--silence-s"),
        (("reconcile", "--day", "2024-06-10", "--positions", "absent.csv"), 1,
         "positions file not found: absent.csv"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(
    store: str, tmp_path: Path, args: tuple[str, ...], code: int, fragment: str
) -> None:
    one_line_error(run(*args, "--db", store, cwd=tmp_path), code, fragment)


def test_malformed_positions_file(store: str, tmp_path: Path) -> None:
    bad = tmp_path / "eod.csv"
    bad.write_text("account_id,symbol,quantity\n0042,SPY,lots\n")
    one_line_error(run("reconcile", "--db", store, "--day", "2024-06-10", "--positions",
                       str(bad)), 1, "line 2: quantity 'lots' is not a decimal")  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (("gaps", "--db", "sqlite:///absent.db", "--day", "2024-06-10"), 1,
         "database file not found"),
        (("verify", "--db", "sqlite:///absent.db"), 1, "database file not found"),
        (("audit", "--db", "postgresql://postgres@127.0.0.1:1/test", "--day", "2024-06-10"), 1,
         "cannot connect to PostgreSQL"),
        (("gaps", "--db", "not a url", "--day", "2024-06-10"), 2, "not a database URL"),
        (("gaps", "--from-export", "absent", "--day", "2024-06-10"), 1,
         "export directory not found"),
        (("verify", "--from-export", "absent"), 1, "export directory not found"),
        (("gaps", "--db", "sqlite:///x.db", "--from-export", "x", "--day", "2024-06-10"), 2,
         "give one of --config, --db or --from-export"),
        (("gaps", "--day", "2024-06-10"), 2, "pass --config PATH"),
    ],
)  # fmt: skip
def test_bad_sources_are_one_line(
    tmp_path: Path, args: tuple[str, ...], code: int, fragment: str
) -> None:
    one_line_error(run(*args, cwd=tmp_path), code, fragment)


def test_an_empty_file_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    one_line_error(run("audit", "--db", f"sqlite:///{tmp_path}/empty.db", "--day", "2024-06-10"),
                   1, "no recorder schema")  # fmt: skip
