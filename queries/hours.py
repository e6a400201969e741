"""The hours of a trading day the recorder must cover (``[coverage]``), and what of them was not.

A day is a trading day when the exchange calendar (``calendar``, e.g. ``XNYS``, from the
exchange-calendars library: holidays and early closes) has a session on it. Its hours are
``hours`` (default ``04:00-20:00``, Clear Street's extended session) in the trading-day
time zone; on a day the exchange opens late or closes early, the hours move by as much
(the day after Thanksgiving, closing 13:00 instead of 16:00, has hours 04:00-17:00). A day
without a session has no hours: nothing of it is required.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo

from recorder.config import CoverageSettings, parse_hours
from recorder.errors import ConfigError
from recorder.instants import NS_PER_S

from .render import iso_ns
from .sessions import clip, complement

#: Days either side of the day the calendar is built for (it needs a little context).
_CALENDAR_MARGIN: Final = dt.timedelta(days=7)


@dataclass(frozen=True)
class TradingHours:
    """The required hours of one day: [start_ns, end_ns), or None on a non-trading day."""

    calendar: str
    max_uncovered_s: float
    span_ns: tuple[int, int] | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"calendar", "start", "end", "max_uncovered_s"}`` (null times on a
        day without a session)."""
        start, end = self.span_ns if self.span_ns else (None, None)
        return {"calendar": self.calendar, "start": iso_ns(start), "end": iso_ns(end),
                "max_uncovered_s": self.max_uncovered_s}  # fmt: skip

    def uncovered(self, covered: list[tuple[int, int]], until_ns: int) -> list[tuple[int, int]]:
        """The stretches of the hours before ``until_ns`` (now) that ``covered`` (merged,
        sorted intervals) leaves out."""
        if self.span_ns is None:
            return []
        start, end = self.span_ns[0], min(self.span_ns[1], until_ns)
        if end <= start:
            return []
        return complement(clip(covered, start, end), start, end)


def intervals(holes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Uncovered stretches as report entries."""
    return [{"start": iso_ns(a), "end": iso_ns(b), "seconds": (b - a) / NS_PER_S} for a, b in holes]


def trading_hours(day: dt.date, tz: ZoneInfo, coverage: CoverageSettings) -> TradingHours:
    """The required hours of ``day`` (dates in ``tz``); ConfigError for an unknown calendar."""
    with warnings.catch_warnings():  # the library's pandas deprecations: nothing for users
        warnings.simplefilter("ignore")
        return _trading_hours(day, tz, coverage)


def _trading_hours(day: dt.date, tz: ZoneInfo, coverage: CoverageSettings) -> TradingHours:
    import exchange_calendars  # only when coverage is asked: it brings pandas

    try:
        calendar = exchange_calendars.get_calendar(
            coverage.calendar,
            start=(day - _CALENDAR_MARGIN).isoformat(),
            end=(day + _CALENDAR_MARGIN).isoformat(),
        )
    except exchange_calendars.errors.InvalidCalendarName:
        raise ConfigError(
            f"[coverage] calendar {coverage.calendar!r} is not an exchange calendar "
            "(e.g. XNYS, XNAS; see exchange-calendars)"
        ) from None
    except (ValueError, exchange_calendars.errors.CalendarError) as exc:
        raise ConfigError(f"[coverage] calendar {coverage.calendar}: {exc}") from None
    rule = TradingHours(coverage.calendar, coverage.max_uncovered_s, None)
    if not calendar.is_session(day.isoformat()):
        return rule
    exchange_tz = ZoneInfo(str(calendar.tz))
    opened = calendar.session_open(day.isoformat()).to_pydatetime().astimezone(exchange_tz)
    closed = calendar.session_close(day.isoformat()).to_pydatetime().astimezone(exchange_tz)
    late = _minutes(opened.time()) - _minutes(calendar.open_times[-1][1])
    early = _minutes(calendar.close_times[-1][1]) - _minutes(closed.time())
    first, last = parse_hours(coverage.hours)
    start = dt.datetime.combine(day, first, tz) + dt.timedelta(minutes=max(0, late))
    end = dt.datetime.combine(day, last, tz) - dt.timedelta(minutes=max(0, early))
    span = (int(start.timestamp()) * NS_PER_S, int(end.timestamp()) * NS_PER_S)
    return TradingHours(coverage.calendar, coverage.max_uncovered_s, span)


def _minutes(at: dt.time) -> int:
    return at.hour * 60 + at.minute
