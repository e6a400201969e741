"""Pruning archived trading days from ``events``: the one deletion the database allows.

A row of ``events`` can be deleted only when a row of ``prunes`` covers it (the trigger of
revision 0003, :mod:`recorder.triggers`). :func:`apply` writes those rows and deletes what
they cover in one transaction, after checking — inside it, with the writers of those
accounts held off — that the store still holds exactly the rows that were verified in the
archive (per account and day: first and last id, count, chain hash at the last row).

What is pruned of an account is always a prefix of its chain (every row up to some id):
its remaining rows then chain from one recorded hash, which
:func:`recorder.heads.pruned_tail` gives to whoever continues or checks the chain (the
writer after a restart, ``verify``, signed checkpoints' counts). :func:`prunable` keeps a
day whose rows, for some account, interleave with rows of a day that stays (frames of that
day received after the next day's began): it goes with a later prune, once the day after
it goes too.

Which days the archive holds and whether they verify is the caller's business
(``studio-recorder prune`` asks :mod:`queries.prune`); this module knows only the store.
Errors: :class:`PruneError` (one line naming the day and the account).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select

from .errors import RecorderError
from .heads import PG_CHAIN_LOCKS, chain_lock_key, head_before
from .schema import events, prunes


class PruneError(RecorderError):
    """A prune that cannot go ahead: the store is not what was verified, or a row did not go."""


@dataclass(frozen=True)
class DayRows:
    """One account's rows of one trading day in ``events``."""

    account_id: str
    trading_day: dt.date
    first_id: int
    last_id: int
    row_count: int


@dataclass(frozen=True)
class Kept:
    """A day before the cut that stays in the store this time, and why."""

    trading_day: dt.date
    reason: str


def day_rows(conn: Connection, before: dt.date) -> list[DayRows]:
    """Every account's rows of every day before ``before``, by account then day."""
    query = (
        select(
            events.c.account_id,
            events.c.trading_day,
            func.min(events.c.id),
            func.max(events.c.id),
            func.count(),
        )
        .where(events.c.trading_day < before)
        .group_by(events.c.account_id, events.c.trading_day)
        .order_by(events.c.account_id, events.c.trading_day)
    )
    return [DayRows(a, d, int(f), int(last), int(n)) for a, d, f, last, n in conn.execute(query)]


def prunable(
    conn: Connection, before: dt.date, days: Iterable[dt.date]
) -> tuple[list[dt.date], list[Kept]]:
    """Which of ``days`` (all before ``before``) can go now so that what goes of each account
    is a prefix of its chain; the others, with the reason."""
    rows = day_rows(conn, before)
    floors = dict(
        conn.execute(
            select(events.c.account_id, func.min(events.c.id))
            .where(events.c.trading_day >= before)
            .group_by(events.c.account_id)
        ).all()
    )
    going = set(days)
    kept: list[Kept] = []
    changed = True
    while changed:
        changed = False
        cut = {account: int(first) for account, first in floors.items()}
        for r in rows:
            if r.trading_day not in going:
                cut[r.account_id] = min(cut.get(r.account_id, r.first_id), r.first_id)
        for r in rows:
            if r.trading_day in going and r.last_id > cut.get(r.account_id, r.last_id):
                going.discard(r.trading_day)
                why = f"account {r.account_id}: its frames interleave with a later day's"
                kept.append(Kept(r.trading_day, f"{why} (it goes with that day)"))
                changed = True
    return sorted(going), kept


@dataclass(frozen=True)
class Verified:
    """What the archive holds of one account's day, as verified there: the rows to prune
    must be exactly these."""

    rows: DayRows
    head_last: str
    manifest_sha256: str


def who() -> tuple[str, str]:
    """The operating-system user and host a prune is recorded as made by."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container without /etc/passwd)
        user = f"uid {os.getuid()}"
    return user, socket.gethostname()


def apply(engine: Engine, verified: Sequence[Verified], at_ns: int | None = None) -> int:
    """Write a ``prunes`` row for each of ``verified`` and delete the rows it covers, all in
    one transaction; returns the rows deleted. PruneError (nothing deleted) when the store
    no longer holds exactly the verified rows of a day."""
    at_ns = at_ns or time.time_ns()
    user, host = who()
    accounts = sorted({v.rows.account_id for v in verified})
    deleted = 0
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # hold off the writers of these chains
            conn.execute(PG_CHAIN_LOCKS, {"keys": [chain_lock_key(a) for a in accounts]})
        records = []
        for v in sorted(verified, key=lambda v: (v.rows.account_id, v.rows.first_id)):
            r = v.rows
            records.append({
                "account_id": r.account_id, "trading_day": r.trading_day,
                "first_id": r.first_id, "last_id": r.last_id, "row_count": r.row_count,
                "head_before": head_before(conn, r.account_id, r.first_id),
                "head_last": v.head_last, "manifest_sha256": v.manifest_sha256,
                "at_ns": at_ns, "os_user": user, "host": host,
            })  # fmt: skip
        if records:
            # Written first: SQLite takes its write lock here, so what is read next is final.
            conn.execute(insert(prunes), records)
        for v in verified:
            _check_unchanged(conn, v)
        for v in verified:
            r = v.rows
            result = conn.execute(
                delete(events).where(
                    and_(
                        events.c.account_id == r.account_id,
                        events.c.trading_day == r.trading_day,
                        events.c.id.between(r.first_id, r.last_id),
                    )
                )
            )
            if result.rowcount != r.row_count:
                raise PruneError(
                    f"{r.trading_day} of account {r.account_id}: {result.rowcount} rows deleted, "
                    f"{r.row_count} expected: nothing was pruned"
                )
            deleted += r.row_count
    return deleted


def _check_unchanged(conn: Connection, v: Verified) -> None:
    """PruneError unless the store holds exactly ``v``'s rows of that account and day."""
    r = v.rows
    mine = and_(events.c.account_id == r.account_id, events.c.trading_day == r.trading_day)
    first, last, count = conn.execute(
        select(func.min(events.c.id), func.max(events.c.id), func.count()).where(mine)
    ).one()
    head = conn.execute(select(events.c.chain_hash).where(events.c.id == r.last_id)).scalar()
    if (first, last, count, head) != (r.first_id, r.last_id, r.row_count, v.head_last):
        raise PruneError(
            f"{r.trading_day} of account {r.account_id}: the store changed since it was "
            f"verified in the archive ({count} frames, ids {first}-{last} now; "
            f"{r.row_count} frames, ids {r.first_id}-{r.last_id} verified): nothing was pruned"
        )
