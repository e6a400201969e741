"""Which trading day a frame belongs to.

The trading day of a frame is the calendar date of its server timestamp (the
receipt time when the frame has none, or when the server's value is out of any
representable range) in the configured time zone, America/New_York by default:
22:00 New York on 2024-03-22 is 02:00 UTC on 2024-03-23 and belongs to 2024-03-22.
Pure functions only; :class:`TradingDayCache` keeps the hot path to two integer
comparisons per frame.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .instants import INT64_MAX, INT64_MIN, NS_PER_MS, NS_PER_S

#: The trading-day time zone when none is configured: US equities trade in New York.
DEFAULT_TIMEZONE: Final = "America/New_York"

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: The first and last trading days whose every instant, in any time zone (offsets stay
#: within a day) and with a day to spare either side, fits in int64 nanoseconds since 1970
#: — the store's and the exports' receipt times: 1677-09-23 and 2262-04-09.
FIRST_DAY: Final = (_EPOCH + dt.timedelta(microseconds=INT64_MIN // 1000)).date() + dt.timedelta(2)
LAST_DAY: Final = (_EPOCH + dt.timedelta(microseconds=INT64_MAX // 1000)).date() - dt.timedelta(2)


class DayOutOfRange(ValueError):
    """A trading day outside :data:`FIRST_DAY` .. :data:`LAST_DAY`."""


def check_day(day: dt.date) -> dt.date:
    """``day`` itself, or DayOutOfRange (one line) when nanosecond timestamps cannot hold it."""
    if not FIRST_DAY <= day <= LAST_DAY:
        raise DayOutOfRange(
            f"day {day.isoformat()} is outside the days the store can hold "
            f"({FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()})"
        )
    return day


class UnknownZone(ValueError):
    """A time zone name that is not an IANA zone this system knows."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; UnknownZone (a ValueError) with a one-line message if none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownZone(
            f"unknown time zone {name!r}: use an IANA name such as {DEFAULT_TIMEZONE}"
        ) from None


def day_of_ns(instant_ns: int, tz: ZoneInfo) -> dt.date:
    """Calendar date of a UTC epoch instant (nanoseconds) in ``tz``.

    Raises ValueError/OverflowError/OSError when the instant is outside what
    ``datetime`` can represent; :func:`trading_day` handles that.
    """
    seconds = instant_ns // NS_PER_S  # floor: correct for instants before 1970 too
    return dt.datetime.fromtimestamp(seconds, tz).date()


def trading_day(server_ts_ms: int | None, received_at_ns: int, tz: ZoneInfo) -> dt.date:
    """Trading day of a frame: date of ``server_ts_ms`` in ``tz``, else of ``received_at_ns``.

    Never raises for a receipt time taken from the system clock: an absurd server
    timestamp (year 10000, negative millennia) falls back to the receipt time.
    """
    if server_ts_ms is not None:
        try:
            return day_of_ns(server_ts_ms * NS_PER_MS, tz)
        except (ValueError, OverflowError, OSError):
            pass
    return day_of_ns(received_at_ns, tz)


def day_bounds_ns(day: dt.date, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of ``day`` in ``tz`` as UTC epoch nanoseconds (23, 24 or 25 hours long)."""
    start = dt.datetime.combine(day, dt.time(0), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
    return _epoch_ns(start), _epoch_ns(end)


def _epoch_ns(moment: dt.datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


class TradingDayCache:
    """:func:`trading_day` with the current day's bounds cached (same results, fewer calls).

    Not thread-safe; give each task its own.
    """

    __slots__ = ("_day", "_end_ns", "_start_ns", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._start_ns = 0
        self._end_ns = 0
        self._day = dt.date(1970, 1, 1)

    def __call__(self, server_ts_ms: int | None, received_at_ns: int) -> dt.date:
        instant_ns = received_at_ns if server_ts_ms is None else server_ts_ms * NS_PER_MS
        if self._start_ns <= instant_ns < self._end_ns:
            return self._day
        day = trading_day(server_ts_ms, received_at_ns, self.tz)
        start_ns, end_ns = day_bounds_ns(day, self.tz)
        if start_ns <= instant_ns < end_ns:  # false when trading_day fell back to receipt time
            self._day, self._start_ns, self._end_ns = day, start_ns, end_ns
        return day
