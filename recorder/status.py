"""``studio-recorder status``: each account's recording state, read from the store.

Works whether or not a recorder is running (it reads only the tables), so
operators can ask it from any shell. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Final
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select

from .instants import iso_ns
from .presence import Presence
from .schema import connection_log, events
from .texttable import table
from .tradingday import day_bounds_ns, day_of_ns


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    trading_day: str
    last_frame_at: str | None
    last_frame_type: str | None
    last_sequence_today: int | None
    frames_today: int
    session_id: str | None
    #: The last connection_log event of the latest session, "never connected", or
    #: "ended uncleanly (recorder not running)" for a session without ``closed`` whose
    #: recorder no longer holds the store's lock.
    session_state: str
    session_since: str | None
    sessions_today: int
    reconnects_today: int
    last_close_reason: str | None  # the ``closed`` detail of that session (None while open)
    recorder_running: bool | None = None  # a recorder holds this account's lock (None: unknown)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


#: The state of a session whose recorder is gone without journalling its end.
ENDED_UNCLEANLY: Final = "ended uncleanly (recorder not running)"


def account_status(
    conn: Connection, account_id: str, tz: ZoneInfo, now_ns: int, running: bool | None = None
) -> AccountStatus:
    """``running``: whether a recorder holds the lock (None: unknown, state as journalled)."""
    day = day_of_ns(now_ns, tz)
    start_ns, end_ns = day_bounds_ns(day, tz)
    last = conn.execute(
        select(events.c.received_at_ns, events.c.msg_type)
        .where(events.c.account_id == account_id)
        .order_by(events.c.id.desc())
        .limit(1)
    ).first()
    today = conn.execute(
        select(func.count(), func.max(events.c.sequence))
        .where(events.c.account_id == account_id)
        .where(events.c.trading_day == day)
    ).one()
    latest = conn.execute(
        select(connection_log.c.session_id, connection_log.c.event, connection_log.c.at_ns)
        .where(connection_log.c.account_id == account_id)
        .order_by(connection_log.c.id.desc())
        .limit(1)
    ).first()
    opened_today = conn.execute(
        select(func.count())
        .where(connection_log.c.account_id == account_id)
        .where(connection_log.c.event == "opened")
        .where(connection_log.c.at_ns >= start_ns, connection_log.c.at_ns < end_ns)
    ).scalar_one()
    last_close = None
    if latest is not None and latest.event == "closed":
        last_close = conn.execute(
            select(connection_log.c.detail)
            .where(connection_log.c.account_id == account_id)
            .where(connection_log.c.session_id == latest.session_id)
            .where(connection_log.c.event == "closed")
            .order_by(connection_log.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    state = latest.event if latest else "never connected"
    if latest is not None and state != "closed" and running is False:
        state = ENDED_UNCLEANLY
    return AccountStatus(
        account_id=account_id,
        trading_day=day.isoformat(),
        last_frame_at=iso_ns(last.received_at_ns, 3) if last else None,
        last_frame_type=last.msg_type if last else None,
        last_sequence_today=today[1],
        frames_today=int(today[0]),
        session_id=latest.session_id if latest else None,
        session_state=state,
        session_since=iso_ns(latest.at_ns, 3) if latest else None,
        sessions_today=int(opened_today),
        reconnects_today=max(0, int(opened_today) - 1),
        last_close_reason=last_close,
        recorder_running=running,
    )


def store_status(
    engine: Engine,
    accounts: tuple[str, ...],
    tz: ZoneInfo,
    now_ns: int,
    presence: Mapping[str, Presence] | None = None,
) -> list[AccountStatus]:
    """Status of each configured account, in configuration order; ``presence`` says per
    account whether a recorder is running (see :mod:`recorder.presence`)."""
    with engine.connect() as conn:
        return [
            account_status(
                conn, account, tz, now_ns, presence[account].running if presence else None
            )
            for account in accounts
        ]


def render_status(rows: Sequence[AccountStatus]) -> str:
    """The status of each account as a table for people (times UTC)."""
    headers = ["account", "last frame (UTC)", "type", "last seq", "frames today", "session",
               "since (UTC)", "reconnects", "last close"]  # fmt: skip
    cells = [
        [
            r.account_id,
            r.last_frame_at,
            r.last_frame_type,
            r.last_sequence_today,
            r.frames_today,
            r.session_state,
            r.session_since,
            r.reconnects_today,
            r.last_close_reason,
        ]
        for r in rows
    ]
    return table(headers, cells)
