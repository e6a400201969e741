"""Rendering reports: JSON for machines, aligned text tables for people.

Reports are plain dicts and lists built by the analytics modules. JSON renders
``Decimal`` as a string (exact: ``"189.47"``, never a binary float), dates as
``YYYY-MM-DD``, and instants are already ISO-8601 UTC strings with nanoseconds
(:func:`iso_ns`). Text tables are :func:`recorder.texttable.table`, which both command
lines use. Nothing here touches a database.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from recorder.instants import iso_ns
from recorder.texttable import cell, decimal_text, table

__all__ = ["cell", "decimal_text", "iso_ns", "table", "to_json"]


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def to_json(report: Any) -> str:
    """The report as JSON text (decimals as exact strings)."""
    return json.dumps(report, default=_default, ensure_ascii=False, indent=2)
