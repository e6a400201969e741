"""``studio-query evening``: one day loaded once, four reports each exactly what the single
command prints with ``--json``, a summary, written atomically, exit 1 when anything needs a
look (on the faulted simulator day of :mod:`tests.support.simday`, SQLite and PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from sqlalchemy import Engine

from queries.evening import REPORTS, SUMMARY_FILE, report_file
from queries.report import REPORT_FILE
from recorder.appender import Appender
from tests.support.cli import run
from tests.support.config import write_config
from tests.support.frames import NOON_NS, frame
from tests.support.simday import DAY, LOST, A, B, record

SINGLE = {  # the single command of each report, as a user runs it for the day
    "verify": ("verify", "--day", DAY),
    "gaps": ("gaps", "--day", DAY),
    "audit": ("audit", "--day", DAY),
    "reconcile": ("reconcile", "--day", DAY),
}


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_each_report_is_the_single_commands_json_and_gaps_need_a_look(
    engine: Engine, tmp_path: Path
) -> None:
    record(engine)
    url, out = _url(engine), tmp_path / "evening"
    result = run("queries", "evening", "--db", url, "--day", DAY, "--out", out)
    assert result.returncode == 1, result.stderr  # the day lost sequences 12 and 13
    assert result.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(report_file(name) for name in REPORTS), SUMMARY_FILE, REPORT_FILE]
    )
    for name in REPORTS:
        single = run("queries", *SINGLE[name], "--db", url, "--json")
        assert single.returncode in (0, 1), single.stderr
        assert (out / report_file(name)).read_text() == single.stdout, name  # byte for byte
        assert (out / report_file(name)).stat().st_mode & 0o777 == 0o600
    summary = (out / SUMMARY_FILE).read_text()
    assert result.stdout.startswith(summary)
    assert summary.startswith(f"Evening of {DAY.isoformat()} (America/New_York): ")
    assert f"{A}: 1 sequence gaps ({len(LOST)} sequences missing)" in summary
    assert f"written to {out}" in result.stdout


def test_a_clean_account_passes_and_a_break_or_a_rerun_replaces_the_evening_whole(
    engine: Engine, tmp_path: Path
) -> None:
    record(engine)
    url, out = _url(engine), tmp_path / "evening"
    config = write_config(tmp_path / "recorder.toml", [A, B], url)
    # The simulated day covers only part of the hours: not what this test is about.
    config.write_text(config.read_text() + "[coverage]\nmax_uncovered_s = 86400\n")
    clean = run("queries", "evening", "--config", config, "--day", DAY, "--account", B,
                "--out", out, "--json")  # fmt: skip
    assert clean.returncode == 0, clean.stdout + clean.stderr
    outcome = json.loads(clean.stdout)
    assert (outcome["clean"], outcome["findings"]) == (True, [])
    assert sorted(outcome["files"]) == sorted(p.name for p in out.iterdir())
    (out / "left-over").write_text("from an earlier evening")
    broker = tmp_path / "broker.csv"
    broker.write_text(f"account_id,symbol,quantity\n{B},ZZZZ,5\n")
    broken = run("queries", "evening", "--config", config, "--day", DAY, "--account", B,
                 "--positions", broker, "--out", out, "--json")  # fmt: skip
    assert broken.returncode == 1
    (finding,) = json.loads(broken.stdout)["findings"]
    assert finding.startswith(f"{B}: ")
    assert finding.endswith(" reconciliation breaks (positions-file)")
    assert not (out / "left-over").exists()  # the directory was replaced as a whole
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broker.write_text("not,a,positions file\n")
    failed = run("queries", "evening", "--db", url, "--day", DAY, "--positions", broker,
                 "--out", out)  # fmt: skip
    assert failed.returncode == 1, failed.stderr  # as reconcile says of a malformed file
    assert failed.stderr.startswith("studio-query: error: ")
    assert failed.stderr.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-evening-")] == []


def test_a_day_whose_chain_has_a_row_of_another_day_in_between(
    engine: Engine, tmp_path: Path
) -> None:
    """The evening hashes the day's rows it read; a stretch of the chain holding a row of
    another day (a late frame) is checked by reading the store, as verify does."""
    late = frame(A, 3, day=DAY + dt.timedelta(days=1), at_ns=NOON_NS + 3 * 10**6)
    rows = [frame(A, 1), frame(A, 2), late, frame(A, 4), frame(B, 1)]
    Appender(engine).append(rows, [])
    url, out = _url(engine), tmp_path / "evening"
    evening = run("queries", "evening", "--db", url, "--day", DAY, "--out", out)
    assert evening.returncode == 1, evening.stderr  # the day's required hours: not recorded
    single = run("queries", "verify", "--db", url, "--day", DAY, "--json")
    assert (out / report_file("verify")).read_text() == single.stdout
    report = json.loads(single.stdout)
    rows_of = {c["account_id"]: c["rows"] for c in report["accounts"]}
    assert rows_of == {A: 4, B: 1}  # the late row is in A's stretch
