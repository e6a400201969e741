"""``[coverage]``: the hours of a trading day that must be recorded. A weekday on which the
recorder never ran fails ``gaps --fail-on-coverage`` and ``evening``; a holiday or a weekend
has no hours; an early close shortens them; bad settings are one line, exit 2."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from queries.hours import trading_hours
from recorder.config import CoverageSettings
from recorder.errors import ConfigError
from recorder.instants import NS_PER_S
from tests.support.cli import run
from tests.support.config import write_config
from tests.support.simday import DAY, A, B, record
from tests.support.stores import migrated

NY = ZoneInfo("America/New_York")
NEVER_RECORDED = DAY + dt.timedelta(days=1)  # Tuesday 2024-06-11: nothing in the store
SATURDAY = dt.date(2024, 6, 15)


def _ns(day: dt.date, hh: int, mm: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(hh, mm), NY).timestamp()) * NS_PER_S


def test_hours_follow_the_exchange_calendar() -> None:
    rule = CoverageSettings()
    assert trading_hours(DAY, NY, rule).span_ns == (_ns(DAY, 4), _ns(DAY, 20))
    friday = dt.date(2024, 11, 29)  # NYSE closes at 13:00, three hours early
    assert trading_hours(friday, NY, rule).span_ns == (_ns(friday, 4), _ns(friday, 17))
    for holiday in (dt.date(2024, 11, 28), SATURDAY):  # Thanksgiving, a weekend
        hours = trading_hours(holiday, NY, rule)
        assert hours.span_ns is None
        assert hours.uncovered([], _ns(holiday, 23)) == []
    narrow = CoverageSettings(hours="09:30-16:00")
    assert trading_hours(DAY, NY, narrow).span_ns == (_ns(DAY, 9, 30), _ns(DAY, 16))
    with pytest.raises(ConfigError, match=r"\[coverage\] calendar 'NOPE' is not an exchange"):
        trading_hours(DAY, NY, CoverageSettings(calendar="NOPE"))


def _config(tmp_path: Path, url: str, coverage: str = "") -> Path:
    path = write_config(tmp_path / "recorder.toml", [A, B], url)
    path.write_text(path.read_text() + coverage)
    return path


def test_a_weekday_never_recorded_fails_and_a_weekend_does_not(
    engine: Engine, tmp_path: Path
) -> None:
    record(engine)
    config = _config(tmp_path, engine.url.render_as_string(hide_password=False))
    gaps = ("gaps", "--config", config, "--fail-on-coverage", "--json", "--day")
    missed = run("queries", *gaps, NEVER_RECORDED)
    assert missed.returncode == 1, missed.stderr
    report = json.loads(missed.stdout)
    assert report["coverage"]["start"] == "2024-06-11T08:00:00.000000000Z"
    for account in report["accounts"]:
        assert account["uncovered_in_hours_s"] == 16 * 3600
        assert account["uncovered_in_hours"] == [
            {"start": report["coverage"]["start"], "end": report["coverage"]["end"],
             "seconds": 16 * 3600.0}
        ]  # fmt: skip
    assert run("queries", *gaps[:-3], "--day", NEVER_RECORDED).returncode == 0  # not asked to
    weekend = run("queries", *gaps, SATURDAY)
    assert weekend.returncode == 0, weekend.stdout
    assert json.loads(weekend.stdout)["coverage"]["start"] is None
    evening = run("queries", "evening", "--config", config, "--day", NEVER_RECORDED, "--out",
                  tmp_path / "evening")  # fmt: skip
    assert evening.returncode == 1
    assert f"{A}: 57,600 s of the required hours not recorded (at most 60 s)" in evening.stdout


def test_the_recorded_day_is_held_to_max_uncovered_s(engine: Engine, tmp_path: Path) -> None:
    record(engine)
    url = engine.url.render_as_string(hide_password=False)
    strict = run("queries", "gaps", "--config", _config(tmp_path, url), "--day", DAY, "--json")
    accounts = json.loads(strict.stdout)["accounts"]
    worst = max(a["uncovered_in_hours_s"] for a in accounts)
    assert 0 < worst < 16 * 3600
    for a in accounts:  # the uncovered stretches add up to the figure
        assert sum(u["seconds"] for u in a["uncovered_in_hours"]) == a["uncovered_in_hours_s"]
    for allowed, code in ((worst, 0), (worst - 1, 1)):
        config = _config(tmp_path, url, f"[coverage]\nmax_uncovered_s = {allowed}\n")
        result = run("queries", "gaps", "--config", config, "--day", DAY, "--fail-on-coverage")
        assert result.returncode == code, (allowed, result.stdout)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('hours = "20:00-04:00"', "[coverage] hours must end after they start"),
        ('hours = "4 to 8"', "[coverage] hours must be HH:MM-HH:MM"),
        ('calendar = "NOPE"', "[coverage] calendar 'NOPE' is not an exchange calendar"),
        ("max_uncovered_s = -1", "max_uncovered_s"),
    ],
)
def test_bad_coverage_settings_are_one_line_exit_2(
    tmp_path: Path, table: str, message: str
) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    migrated(url).dispose()
    config = _config(tmp_path, url, f"[coverage]\n{table}\n")
    result = run("queries", "gaps", "--config", config, "--day", DAY)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
