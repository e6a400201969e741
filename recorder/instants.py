"""Time units and instants as text: UTC epoch nanoseconds are how the store keeps time.

Pure, tiny and imported by both packages, so that a unit or a timestamp format has
one definition.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Final

NS_PER_MS: Final = 1_000_000
NS_PER_S: Final = 1_000_000_000
#: The range of the store's integer columns (BIGINT, int64): nanosecond instants and more.
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_EPOCH: Final = dt.datetime(1970, 1, 1)


def iso_ns(instant_ns: int | None, digits: int = 9) -> str | None:
    """UTC epoch nanoseconds as ISO 8601 text: ``2024-06-10T14:30:00.123456789Z``.

    ``digits`` of the fraction are kept (truncated, never rounded up into the next
    second): 9 for reports, 3 for logs and status. Instants before 1970 work too.
    None stays None.
    """
    if instant_ns is None:
        return None
    seconds, nanos = divmod(int(instant_ns), NS_PER_S)
    moment = _EPOCH + dt.timedelta(seconds=seconds)
    fraction = f"{nanos:09d}"[:digits]
    return f"{moment:%Y-%m-%dT%H:%M:%S}{'.' if digits else ''}{fraction}Z"


def ns_from_iso(text: str) -> int:
    """The UTC epoch nanoseconds of an instant written by :func:`iso_ns` (the inverse, for
    any number of fraction digits). ValueError when ``text`` is not such an instant."""
    whole, _, fraction = text.removesuffix("Z").partition(".")
    moment = None
    if text.endswith("Z") and (fraction.isdigit() or not fraction):
        with contextlib.suppress(ValueError):
            moment = dt.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S")
    if moment is None:
        raise ValueError(f"not an ISO 8601 UTC instant: {text!r}")
    seconds = (moment - _EPOCH) // dt.timedelta(seconds=1)
    return seconds * NS_PER_S + int(fraction.ljust(9, "0")[:9])
