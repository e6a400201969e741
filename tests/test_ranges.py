"""Questions across days: ``gaps``, ``audit``, ``reconcile`` and ``verify`` with ``--from``
and ``--to`` answer each day exactly as ``--day`` does — a JSON list of those documents, or
the texts one after the other and the totals — and fail when any day fails."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine

from tests.support.cli import run
from tests.support.simday import DAY, A, record

DAYS = [DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)]


@pytest.mark.parametrize("command", ["gaps", "audit", "reconcile", "verify"])
def test_a_range_is_each_day_as_the_single_day_command_answers_it(
    engine: Engine, command: str
) -> None:
    record(engine)
    url = engine.url.render_as_string(hide_password=False)
    ranged = run("queries", command, "--db", url, "--from", DAYS[0], "--to", DAYS[-1], "--json")
    singles = [run("queries", command, "--db", url, "--day", day, "--json") for day in DAYS]
    assert ranged.returncode == max(s.returncode for s in singles), ranged.stderr
    assert json.loads(ranged.stdout) == [json.loads(s.stdout) for s in singles]
    text = run("queries", command, "--db", url, "--from", DAYS[0], "--to", DAYS[-1]).stdout
    totals = text[text.index("Totals over 3 days") :].splitlines()
    assert any(line.split()[0] == A for line in totals[3:]), totals


def test_a_range_fails_when_any_day_does(engine: Engine) -> None:
    record(engine)
    url = engine.url.render_as_string(hide_password=False)
    quiet = ("--from", DAYS[-1], "--to", DAYS[-1] + dt.timedelta(days=2))
    assert run("queries", "reconcile", "--db", url, *quiet, "--fail-on-breaks").returncode == 0
    failing = run("queries", "reconcile", "--db", url, "--from", DAYS[0], "--to", DAYS[-1],
                  "--fail-on-breaks")  # fmt: skip
    assert failing.returncode == 1
    gaps = run("queries", "gaps", "--db", url, "--from", DAYS[0], "--to", DAYS[-1],
               "--fail-on-gaps")  # fmt: skip
    assert gaps.returncode == 1


def test_sql_over_a_range_sees_those_days_together(engine: Engine) -> None:
    record(engine)
    url = engine.url.render_as_string(hide_password=False)
    query = "SELECT trading_day, count(*) AS n FROM events GROUP BY ALL ORDER BY ALL"
    ranged = run("queries", "sql", "--db", url, "--from", DAYS[0], "--to", DAYS[-1], query,
                 "--json")  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr
    single = run("queries", "sql", "--db", url, "--day", DAY, query, "--json")
    assert json.loads(ranged.stdout) == json.loads(single.stdout) != []
    later = run("queries", "sql", "--db", url, "--from", DAYS[-1], "--to", DAYS[-1], query,
                "--json")  # fmt: skip
    assert json.loads(later.stdout) == []
    count = "SELECT count(DISTINCT session_id) AS n FROM connection_log"
    sessions = run("queries", "sql", "--db", url, "--from", DAYS[0], "--to", DAYS[-1], count,
                   "--json")  # fmt: skip
    assert json.loads(sessions.stdout) == [{"n": 6}]
