"""Aligned text tables for people: what both command lines print when not asked for JSON.

Pure: values in, text out. Numbers are right-aligned, ``None`` is ``-``, booleans are
``yes``/``no``, decimals keep every digit and no exponent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal


def decimal_text(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``Decimal('40.000000000')`` → ``"40"``."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


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
