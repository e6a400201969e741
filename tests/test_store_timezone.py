"""The store's trading-day time zone is recorded in the store, once, and every later reader
or writer naming another is refused (exit 2); with ``--db`` the recorded zone is used."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from sqlalchemy import select

from recorder.schema import TRADING_DAY_TIMEZONE, store_meta
from recorder.store import open_engine
from tests.support.cli import cli_env, run
from tests.support.config import SECRET, write_config

recorder_cli = functools.partial(run, "recorder")
query_cli = functools.partial(run, "queries")
DAY = "2024-06-10"


def _config(tmp_path: Path, url: str, zone: str, name: str = "r.toml") -> Path:
    return write_config(tmp_path / name, ["1"], url, recorder={"trading_day_timezone": zone})


def _recorded(url: str) -> list[str]:
    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            where = store_meta.c.name == TRADING_DAY_TIMEZONE
            return list(connection.execute(select(store_meta.c.value).where(where)).scalars())
    finally:
        engine.dispose()


def test_db_upgrade_records_the_zone_once_and_readers_follow_it(
    db_url: str, tmp_path: Path
) -> None:
    london = _config(tmp_path, db_url, "Europe/London")
    first = recorder_cli("db", "upgrade", "--config", london)
    assert first.returncode == 0, first.stderr
    assert "trading-day time zone Europe/London recorded" in first.stdout
    assert "recorded" not in recorder_cli("db", "upgrade", "--config", london).stdout
    assert _recorded(db_url) == ["Europe/London"]

    # --db without --timezone reads the store's days in the store's zone, not New York's.
    gaps = query_cli("gaps", "--db", db_url, "--day", DAY, "--json")
    assert gaps.returncode == 0, gaps.stderr
    assert json.loads(gaps.stdout)["timezone"] == "Europe/London"
    agreeing = query_cli("gaps", "--db", db_url, "--day", DAY, "--timezone", "Europe/London")
    assert agreeing.returncode == 0

    # Another zone, by --timezone or by a configuration: refused, one line, exit 2.
    for command in ("gaps", "audit", "sql"):
        args = ("SELECT 1",) if command == "sql" else ()
        other = query_cli(command, "--db", db_url, "--day", DAY, "--timezone", "UTC", *args)
        assert other.returncode == 2, (command, other.stderr)
        assert "--timezone says trading-day time zone UTC, but the store was recorded in " in (
            other.stderr
        )
        assert "Europe/London" in other.stderr
    new_york = _config(tmp_path, db_url, "America/New_York", "ny.toml")
    by_config = query_cli("audit", "--config", new_york, "--day", DAY)
    assert by_config.returncode == 2
    assert len(by_config.stderr.strip().splitlines()) == 1
    upgrade = recorder_cli("db", "upgrade", "--config", new_york)
    assert upgrade.returncode == 2
    assert "recorded in Europe/London" in upgrade.stderr
    env = {**cli_env(), "STUDIO_CLIENT_SECRET": SECRET}
    refused = recorder_cli("run", "--config", new_york, env=env)
    assert refused.returncode == 2
    assert "recorded in Europe/London" in refused.stderr
    assert _recorded(db_url) == ["Europe/London"]


def test_a_store_without_a_recorded_zone_reads_as_before(sqlite_url: str) -> None:
    assert recorder_cli("db", "upgrade", "--db", sqlite_url).returncode == 0
    assert _recorded(sqlite_url) == []
    utc = query_cli("gaps", "--db", sqlite_url, "--day", DAY, "--timezone", "UTC", "--json")
    assert json.loads(utc.stdout)["timezone"] == "UTC"
    default = query_cli("gaps", "--db", sqlite_url, "--day", DAY, "--json")
    assert json.loads(default.stdout)["timezone"] == "America/New_York"
