"""Gap detection on the recorded faulty day (tests/support/simday.py), every number by hand."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from queries.duck import open_store
from queries.errors import QueryError
from queries.gaps import COLUMNS, gaps, has_sequence_gaps
from recorder.appender import Appender
from recorder.records import SHUTDOWN_DETAIL, FrameRecord, LogRecord
from tests.support.simday import AFTER_THE_DAY_NS, DAY, A, B, ny, record

Z = "2024-06-10T"
DAY_START, DAY_END = "2024-06-10T04:00:00.000000000Z", "2024-06-11T04:00:00.000000000Z"


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def day_url(engine: Engine) -> str:
    record(engine)
    return url_of(engine)


def run(url: str, now_ns: int = AFTER_THE_DAY_NS, **kw: Any) -> dict[str, dict[str, Any]]:
    configured = kw.pop("configured", ())
    accounts = kw.pop("accounts", None)
    with open_store(url, day=DAY, accounts=accounts, configured=configured, payload=False,
                    columns=COLUMNS, now_ns=now_ns) as ws:  # fmt: skip
        report = gaps(ws, **kw)
    assert report["trading_day"] == DAY
    return {a["account_id"]: a for a in report["accounts"]}


def spans(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(item[k] for k in ("start", "end", "seconds", "reason") if k in item)
            for item in items]  # fmt: skip


def test_sequence_gaps_ignore_holes_healed_by_a_replay(day_url: str) -> None:
    accounts = run(day_url, silence_s=90)
    a = accounts[A]
    # Distinct 1-11 and 14-18; 39 sequenced frames stored (7 + 8 + 8 + 16).
    assert (a["first_sequence"], a["last_sequence"]) == (1, 18)
    assert (a["distinct_sequences"], a["duplicates"]) == (16, 23)
    # Seq 6 was missed live by A-s1 but replayed by A-s3: not a gap. 12-13 never arrived.
    assert a["sequence_gaps"] == [{"first_missing": 12, "last_missing": 13, "count": 2}]
    b = accounts[B]
    assert (b["first_sequence"], b["last_sequence"], b["distinct_sequences"]) == (1, 4, 4)
    assert b["duplicates"] == 4
    assert b["sequence_gaps"] == []


def test_coverage_gaps_and_their_reasons(day_url: str) -> None:
    accounts = run(day_url, silence_s=90)
    assert spans(accounts[A]["coverage_gaps"]) == [
        (DAY_START, Z + "13:30:00.200000000Z", 34200.2, "not recording"),
        (Z + "13:35:00.020000000Z", Z + "13:36:00.200000000Z", 60.18,
         "reconnecting after: 1000: Auth expired; please reconnect"),
        (Z + "13:40:00.000000000Z", Z + "13:45:00.200000000Z", 300.2, "unclean end"),
        (Z + "14:00:00.000000000Z", DAY_END, 50400.0,
         "not recording since " + Z + "14:00:00.000000000Z"),
    ]  # fmt: skip
    extras = [(g["attempts"], g["rejected_subscribes"], g["after_session"])
              for g in accounts[A]["coverage_gaps"]]  # fmt: skip
    assert extras == [(1, 0, None), (2, 1, "A-s1"), (1, 0, "A-s3"), (0, 0, "A-s4")]
    assert spans(accounts[B]["coverage_gaps"]) == [
        (DAY_START, Z + "13:30:00.100000000Z", 34200.1, "not recording"),
        (Z + "13:33:00.000000000Z", Z + "13:33:01.100000000Z", 1.1,
         "reconnecting after: liveness timeout"),
        (Z + "13:35:00.000000000Z", DAY_END, 51900.0,
         "not recording since " + Z + "13:35:00.000000000Z"),
    ]  # fmt: skip


def test_silences_inside_coverage_only(day_url: str) -> None:
    accounts = run(day_url, silence_s=90)
    # A-s4 heard nothing from 09:47 to 09:55 New York time; everything else is <= 60 s.
    assert accounts[A]["silences"] == [
        {"start": Z + "13:47:00.000000000Z", "end": Z + "13:55:00.000000000Z", "seconds": 480.0}
    ]
    assert accounts[B]["silences"] == []
    # A threshold of 480 s hides it (a silence is longer than the threshold); one just under
    # 60 s shows B's minute-long quiet spells before each close, and nothing else.
    assert run(day_url, silence_s=480)[A]["silences"] == []
    assert spans(run(day_url, silence_s=59.9)[B]["silences"]) == [
        (Z + "13:32:00.000000000Z", Z + "13:33:00.000000000Z", 60.0),
        (Z + "13:34:00.000000000Z", Z + "13:35:00.000000000Z", 60.0),
    ]


def test_silence_threshold_defaults_to_twice_the_liveness_timeout(day_url: str) -> None:
    assert len(run(day_url, liveness_timeout_s=60)[A]["silences"]) == 1  # 120 s < 480 s
    assert run(day_url, liveness_timeout_s=240)[A]["silences"] == []  # 480 s is not > 480 s


def test_today_is_clipped_to_now(day_url: str) -> None:
    accounts = run(day_url, now_ns=ny(9, 57, 0), silence_s=90)
    # A-s4 covers until now: no gap after it; B stopped at 09:35.
    assert spans(accounts[A]["coverage_gaps"])[-1] == (
        Z + "13:40:00.000000000Z",
        Z + "13:45:00.200000000Z",
        300.2,
        "unclean end",
    )
    assert spans(accounts[B]["coverage_gaps"])[-1] == (
        Z + "13:35:00.000000000Z", Z + "13:57:00.000000000Z", 1320.0,
        "not recording since " + Z + "13:35:00.000000000Z",
    )  # fmt: skip


def test_a_running_session_covers_until_now_a_dead_one_ends_uncleanly(engine: Engine) -> None:
    appender = Appender(engine)
    frames = [FrameRecord("9", "live", ny(10, 0, s), ny(10, 0, s) // 10**6, None, "heartbeat",
                          DAY, False, "text", '{"payload":{"type":"heartbeat"}}')
              for s in range(0, 50, 10)]  # fmt: skip
    appender.append(frames, [LogRecord("live", "9", ny(9, 59, 0), "opened"),
                             LogRecord("live", "9", ny(9, 59, 1), "subscribed")])  # fmt: skip
    url = url_of(engine)
    # Last frame 10:00:40; 20 s later the session is alive: covered up to now.
    alive = run(url, now_ns=ny(10, 1, 0), silence_s=90)["9"]["coverage_gaps"]
    assert spans(alive) == [(DAY_START, Z + "13:59:01.000000000Z", 35941.0, "not recording")]
    # 10 minutes later it has been silent past the liveness timeout: it died at 10:00:40.
    dead = run(url, now_ns=ny(10, 10, 40), silence_s=90)["9"]["coverage_gaps"]
    assert spans(dead)[-1] == (Z + "14:00:40.000000000Z", Z + "14:10:40.000000000Z", 600.0,
                               "unclean end")  # fmt: skip


def test_a_deliberate_stop_then_a_restart_is_stopped_not_reconnecting(engine: Engine) -> None:
    log = [
        LogRecord("s1", "9", ny(9, 0, 0), "opened"),
        LogRecord("s1", "9", ny(9, 0, 1), "subscribed"),
        LogRecord("s1", "9", ny(9, 30, 0), "closed", SHUTDOWN_DETAIL),
        LogRecord("s2", "9", ny(9, 45, 0), "opened"),
        LogRecord("s2", "9", ny(9, 45, 1), "subscribed"),
        LogRecord("s2", "9", ny(10, 0, 0), "closed", SHUTDOWN_DETAIL),
    ]
    Appender(engine).append([], log)
    gaps = run(url_of(engine), now_ns=ny(11, 0, 0), silence_s=90)["9"]["coverage_gaps"]
    assert [g["reason"] for g in gaps] == [
        "not recording", "stopped (shutdown)", "not recording since " + Z + "14:00:00.000000000Z",
    ]  # fmt: skip


def test_accounts_scope(day_url: str) -> None:
    assert list(run(day_url, accounts=[B])) == [B]
    # A configured account that recorded nothing: the whole day is a coverage gap.
    silent = run(day_url, configured=[A, B, "777"])["777"]
    assert silent["first_sequence"] is None
    assert silent["distinct_sequences"] == 0
    assert spans(silent["coverage_gaps"]) == [(DAY_START, DAY_END, 86400.0, "not recording")]
    with pytest.raises(QueryError, match="unknown account '31337'"):
        run(day_url, accounts=["31337"])


def test_has_sequence_gaps(day_url: str) -> None:
    with open_store(day_url, day=DAY, payload=False, now_ns=AFTER_THE_DAY_NS) as ws:
        assert has_sequence_gaps(gaps(ws)) is True
    with open_store(day_url, day=DAY, accounts=[B], payload=False) as ws:
        assert has_sequence_gaps(gaps(ws)) is False
