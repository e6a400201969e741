import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder import tradingday
from recorder.tradingday import TradingDayCache, day_bounds_ns, trading_day

NY = ZoneInfo("America/New_York")


def ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def test_evening_in_new_york_belongs_to_that_day_not_utc_date() -> None:
    # 22:00 New York on 2024-03-22 is 02:00 UTC on 2024-03-23.
    assert trading_day(ms("2024-03-23T02:00:00+00:00"), 0, NY) == dt.date(2024, 3, 22)


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        ("2024-03-22T23:59:59.999-04:00", dt.date(2024, 3, 22)),  # last ms of the day
        ("2024-03-23T00:00:00.000-04:00", dt.date(2024, 3, 23)),  # first ms of the next
        ("2024-03-10T01:59:59-05:00", dt.date(2024, 3, 10)),  # before spring-forward
        ("2024-03-10T03:00:00-04:00", dt.date(2024, 3, 10)),  # after spring-forward
        ("2024-11-03T01:30:00-04:00", dt.date(2024, 11, 3)),  # first 01:30 (EDT)
        ("2024-11-03T01:30:00-05:00", dt.date(2024, 11, 3)),  # second 01:30 (EST)
        ("2024-11-03T23:59:59-05:00", dt.date(2024, 11, 3)),
        ("2024-11-04T00:00:00-05:00", dt.date(2024, 11, 4)),
    ],
)
def test_day_edges_and_dst(instant: str, expected: dt.date) -> None:
    assert trading_day(ms(instant), 0, NY) == expected


def test_falls_back_to_receipt_time_when_no_or_absurd_server_timestamp() -> None:
    received_ns = ms("2024-06-10T15:00:00+00:00") * 1_000_000
    assert trading_day(None, received_ns, NY) == dt.date(2024, 6, 10)
    assert trading_day(2**62, received_ns, NY) == dt.date(2024, 6, 10)
    assert trading_day(-(2**62), received_ns, NY) == dt.date(2024, 6, 10)


def test_day_bounds_are_23_24_and_25_hours_long() -> None:
    hours = {
        day: (end - start) / 3.6e12
        for day in (dt.date(2024, 3, 10), dt.date(2024, 3, 11), dt.date(2024, 11, 3))
        for start, end in [day_bounds_ns(day, NY)]
    }
    assert hours == {dt.date(2024, 3, 10): 23, dt.date(2024, 3, 11): 24, dt.date(2024, 11, 3): 25}


@given(
    st.integers(min_value=0, max_value=4_102_444_800_000),
    st.sampled_from(["America/New_York", "Europe/London", "Asia/Tokyo", "UTC"]),
)
def test_matches_zoneinfo_and_cache_agrees(server_ms: int, zone: str) -> None:
    tz = ZoneInfo(zone)
    expected = dt.datetime.fromtimestamp(server_ms / 1000, dt.UTC).astimezone(tz).date()
    cache = TradingDayCache(tz)
    assert trading_day(server_ms, 0, tz) == expected
    assert cache(server_ms, 0) == expected
    assert cache(server_ms, 0) == expected  # served from the cached bounds
    start, end = day_bounds_ns(expected, tz)
    assert start <= server_ms * 1_000_000 < end


def test_cache_moves_across_midnight() -> None:
    cache = TradingDayCache(NY)
    assert cache(ms("2024-03-22T23:59:59-04:00"), 0) == dt.date(2024, 3, 22)
    assert cache(ms("2024-03-23T00:00:01-04:00"), 0) == dt.date(2024, 3, 23)
    assert cache(ms("2024-03-22T12:00:00-04:00"), 0) == dt.date(2024, 3, 22)


@pytest.mark.parametrize("name", ["Pacific/Kiritimati", "Etc/GMT+12", "America/New_York", "UTC"])
def test_first_and_last_day_and_their_neighbours_fit_in_int64_nanoseconds(name: str) -> None:
    # The queries read a day plus a day before and two after (connection-log look-ahead, clipped).
    tz = tradingday.zone(name)
    for day in (tradingday.FIRST_DAY - dt.timedelta(1), tradingday.LAST_DAY + dt.timedelta(1)):
        start, end = tradingday.day_bounds_ns(day, tz)
        assert -(2**63) <= start < end <= 2**63 - 1


def test_days_outside_the_range_are_refused_with_one_line() -> None:
    assert tradingday.check_day(tradingday.LAST_DAY) == tradingday.LAST_DAY
    assert (
        dt.date(1677, 9, 23),
        dt.date(2262, 4, 9),
    ) == (tradingday.FIRST_DAY, tradingday.LAST_DAY)
    for day in (tradingday.FIRST_DAY - dt.timedelta(1), dt.date(9999, 12, 31), dt.date(1, 1, 1)):
        with pytest.raises(tradingday.DayOutOfRange, match="outside the days the store can hold"):
            tradingday.check_day(day)
