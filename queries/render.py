"""Rendering reports: JSON for machines, aligned text tables for people.

Reports are plain dicts and lists built by the analytics modules. JSON renders
``Decimal`` as a string (exact: ``"189.47"``, never a binary float), dates as
``YYYY-MM-DD``, and instants are already ISO-8601 UTC strings with nanoseconds
(:func:`iso_ns`). Nothing here touches a database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

NS_PER_S = 1_000_000_000


def iso_ns(instant_ns: int | None) -> str | None:
    """UTC epoch nanoseconds as ``2024-06-10T14:30:00.123456789Z`` (None stays None)."""
    if instant_ns is None:
        return None
    seconds, nanos = divmod(int(instant_ns), NS_PER_S)
    moment = dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def decimal_text(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``Decimal('40.000000000')`` → ``"40"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def to_json(report: Any) -> str:
    """The report as JSON text (decimals as exact strings)."""
    return json.dumps(report, default=_default, ensure_ascii=False, indent=2)


def cell(value: object) -> str:
    """One value as table text."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An aligned text table (numbers right-aligned); ``(none)`` when there are no rows."""
    texts = [[cell(v) for v in row] for row in rows]
    if not texts:
        return "  (none)"
    numeric = [
        all(_is_number(row[i]) for row in texts if row[i] != "-") for i in range(len(headers))
    ]
    widths = [max(len(h), *(len(row[i]) for row in texts)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        cells = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  " + "  ".join(cells).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, texts)])


def _is_number(text: str) -> bool:
    if len(text) > 1 and text[0] == "0" and text[1].isdigit():
        return False  # an identifier such as account "0042", not a number
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True
