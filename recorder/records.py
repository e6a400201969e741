"""What connection tasks hand to the writer: one record per frame or lifecycle event.

Plain, immutable values built on the hot path (one per received frame), so they
are slotted dataclasses with no behaviour beyond turning into insert parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

#: The ``detail`` of a ``closed`` row when the recorder was stopped on purpose (SIGTERM).
SHUTDOWN_DETAIL: Final = "shutdown"


class FrameRecord(NamedTuple):
    """One received frame, ready for ``events`` (the chain hash is added by the writer).

    A named tuple whose fields are, in order, the ``events`` columns between ``id`` and
    ``chain_hash`` (a test holds them to :mod:`recorder.schema`): exactly what the hash
    chain covers (``recorder.chain.CHAIN_FIELDS`` is derived from them). Cheap to build per
    frame, and ``(*record, chain_hash)`` is the row to insert.
    """

    account_id: str
    session_id: str
    received_at_ns: int
    server_ts_ms: int | None
    sequence: int | None
    msg_type: str | None
    trading_day: dt.date
    replayed: bool
    raw_kind: str
    raw: str

    def row(self) -> dict[str, Any]:
        return self._asdict()


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One session lifecycle event, ready for ``connection_log``."""

    session_id: str
    account_id: str
    at_ns: int
    event: str  # one of recorder.schema.CONNECTION_EVENTS
    detail: str | None = None

    def row(self) -> dict[str, Any]:
        """Insert parameters: the fields are the ``connection_log`` columns but ``id``."""
        return dataclasses.asdict(self)


Record = FrameRecord | LogRecord


def stamped_ns(record: Record) -> int:
    """When ``record`` was taken (UTC epoch ns): a frame's receipt, a log row's event."""
    return record.received_at_ns if isinstance(record, FrameRecord) else record.at_ns
