"""``report.html`` of ``studio-query evening``, opened in a real headless Chromium from a
``file://`` URL: not blank, no network request, every account, the timeline with the
outage and the sequence gap marked, every chart; on a faulted and on a clean day."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from queries.charts import RECORDED_COLOUR
from queries.evening import REPORTS, report_file
from queries.gaps import is_outage
from queries.report import REPORT_FILE
from tests.support.browser import has_colour, inked, open_page
from tests.support.cli import run
from tests.support.config import write_config
from tests.support.simday import DAY, LOST, A, B, record
from tests.support.stores import migrated

pytestmark = pytest.mark.timeout(180)


def _key(dom: str, account: str) -> str:
    """The id of the account's section: its charts' ids start with it."""
    found = re.search(rf'<section class="account" id="([\w-]+)" data-account="{account}">', dom)
    assert found, f"no section for account {account}"
    return found.group(1)


def test_the_report_of_a_faulted_and_of_a_clean_day_in_chromium(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    record(migrated(url))
    config = write_config(tmp_path / "recorder.toml", [A, B], url)
    faulted = tmp_path / "faulted"
    result = run("queries", "evening", "--config", config, "--day", DAY, "--out", faulted)
    assert result.returncode == 1, result.stderr

    page = open_page(faulted / REPORT_FILE, tmp_path / "chromium-faulted", height=2400)
    assert page.requests == []
    assert inked(page.screenshot) > 0.05  # text, tables and charts, not a white page
    assert has_colour(page.screenshot, RECORDED_COLOUR)  # the charts were drawn
    dom = page.dom
    assert "<h1>Evening of 2024-06-10</h1>" in dom
    assert "2024-06-10 (America/New_York)" in dom
    assert url in dom  # the store
    gaps = json.loads((faulted / "gaps.json").read_text())
    for account in (A, B):
        key = _key(dom, account)
        assert f'<a href="#{key}">{account}</a>' in dom  # its line in the accounts table
        for chart in (f"{key}-frames", f"{key}-latency"):
            assert re.search(rf'<div class="chart" id="{chart}"><svg\b', dom), chart
        assert f'id="{key}-recorded"' in dom  # its lane of the timeline
        entry = next(g for g in gaps["accounts"] if g["account_id"] == account)
        outages = [g for g in entry["coverage_gaps"] if is_outage(g["reason"])]
        assert (f'id="{key}-outage"' in dom) == bool(outages), account
    key = _key(dom, A)
    assert f'id="{key}-seqgaps"' in dom
    assert f"seq {LOST[0]}–{LOST[-1]}" in dom
    assert f'id="detail-{key}-outage"' in dom  # the day's detail, where the outage shows
    assert '<tr class="break"><td>order-fill-mismatch</td>' in dom
    for name in REPORTS:  # the footer matches the page to the JSON files beside it
        digest = hashlib.sha256((faulted / report_file(name)).read_bytes()).hexdigest()
        assert f'<td>{report_file(name)}</td><td class="hash">{digest}</td>' in dom

    # The clean day: account 0042, whose day was whole (the hours rule relaxed: the
    # simulated day covers only half an hour).
    config.write_text(config.read_text() + "[coverage]\nmax_uncovered_s = 86400\n")
    clean = tmp_path / "clean"
    result = run("queries", "evening", "--config", config, "--day", DAY, "--account", B,
                 "--out", clean)  # fmt: skip
    assert result.returncode == 0, result.stdout
    page = open_page(clean / REPORT_FILE, tmp_path / "chromium-clean")
    assert page.requests == []
    assert inked(page.screenshot) > 0.05
    assert '<p class="verdict clean">All clean</p>' in page.dom
    assert f'data-account="{B}"' in page.dom
    assert f'data-account="{A}"' not in page.dom
    assert 'class="break"' not in page.dom


def test_a_page_that_fetches_is_caught(tmp_path: Path) -> None:
    """The network check of :func:`open_page` sees what a page asks for."""
    page = tmp_path / "fetching.html"
    page.write_text('<!DOCTYPE html><p>x</p><img src="http://127.0.0.1:9/probe.png">')
    assert open_page(page, tmp_path / "chromium").requests == ["http://127.0.0.1:9/probe.png"]


def test_fifty_accounts_make_one_page(tmp_path: Path) -> None:
    """With many accounts the timeline has a lane each, every account its section, and the
    findings fold away behind the accounts table."""
    from recorder.appender import Appender
    from recorder.records import LogRecord
    from tests.support.frames import NOON_NS, frame

    url = f"sqlite:///{tmp_path / 'store.db'}"
    appender = Appender(migrated(url))
    accounts = [f"{700000 + i}" for i in range(50)]
    for k, account in enumerate(accounts):
        start = NOON_NS - 3 * 3600 * 10**9 + k * 60 * 10**9
        session = f"s-{account}"
        frames = [frame(account, n, at_ns=start + n * 10**9, session_id=session)
                  for n in range(1, 30) if not (k == 7 and n == 12)]  # fmt: skip
        logs = [LogRecord(session, account, start, "opened"),
                LogRecord(session, account, start + 1, "subscribed"),
                LogRecord(session, account, start + 60 * 10**9, "closed", "shutdown")]  # fmt: skip
        appender.append(frames, logs)
    out = tmp_path / "evening"
    result = run("queries", "evening", "--db", url, "--day", DAY, "--out", out)
    assert result.returncode == 1
    html = (out / REPORT_FILE).read_text()
    for account in accounts:
        assert html.count(f'data-account="{account}"') == 1
        assert html.count(f">{account}</text>") == 2  # a lane in the timeline and its detail
    assert html.count("-seqgaps") == 2  # account 700007, in both timelines
    assert "<details><summary>every finding</summary>" in html
    assert len(html) < 5_000_000


def test_labels_from_frame_data_are_text_not_markup(tmp_path: Path) -> None:
    """An account id with markup and message types that look like math or start with "_"
    are shown as written: escaped in the HTML, not parsed as TeX, kept in the legend."""
    from recorder.appender import Appender
    from tests.support.frames import frame

    url = f"sqlite:///{tmp_path / 'store.db'}"
    hostile = '<b onclick="x">7</b>'
    frames = [frame(hostile, 1, msg_type="x$\\frac$"), frame(hostile, 2, msg_type="_under"),
              frame(hostile, 3, msg_type="order-update")]  # fmt: skip
    Appender(migrated(url)).append(frames, [])
    out = tmp_path / "evening"
    result = run("queries", "evening", "--db", url, "--day", DAY, "--out", out)
    assert result.returncode == 1, result.stderr  # the required hours, not a crash
    html = (out / REPORT_FILE).read_text()
    assert hostile not in html
    assert "&lt;b onclick=&quot;x&quot;&gt;7&lt;/b&gt;" in html
    assert "x$\\frac$ (1)" in html
    assert "_under (1)" in html
