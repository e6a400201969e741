"""Where an account's chain stands in the store: its head, the row before a given one, and
the end of its pruned prefix (``prunes``, :mod:`recorder.prune`).

After a prune an account's ``events`` chain no longer starts at the genesis hash in the
table: its first remaining row chains from the hash recorded in ``prunes``, and an account
whose every row was pruned continues from there. Everything that continues or checks a
chain asks here, so that no one restarts a pruned chain at the genesis hash (a fork).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, Table, func, select, text

from .chain import GENESIS_HASH
from .schema import events, prunes

#: The PostgreSQL advisory lock key of an account's chain, before the account id.
CHAIN_LOCK_PREFIX: Final = "studio-recorder:chain:"


#: PostgreSQL: the chain locks of every account of ``:keys`` (:func:`chain_lock_key`, in the
#: sorted order given), taken in one statement, held to the end of the transaction.
PG_CHAIN_LOCKS: Final = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(t.key, 0)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(key, n) ORDER BY t.n"
)


def chain_lock_key(account_id: str) -> str:
    """The advisory-lock key that serialises everyone who writes ``account_id``'s chain."""
    return f"{CHAIN_LOCK_PREFIX}{account_id}"


@dataclass(frozen=True)
class PrunedTail:
    """The end of an account's pruned prefix: its last id, the chain hash there, and how
    many rows were pruned in all."""

    last_id: int
    head: str
    row_count: int


def pruned_tail(conn: Connection, account_id: str) -> PrunedTail | None:
    """The end of the account's pruned prefix, or None when nothing of it was pruned."""
    last = conn.execute(
        select(prunes.c.last_id, prunes.c.head_last)
        .where(prunes.c.account_id == account_id)
        .order_by(prunes.c.last_id.desc())
        .limit(1)
    ).first()
    if last is None:
        return None
    total = conn.execute(
        select(func.sum(prunes.c.row_count)).where(prunes.c.account_id == account_id)
    ).scalar_one()
    return PrunedTail(int(last[0]), str(last[1]), int(total))


def stored_head(conn: Connection, account_id: str, table: Table = events) -> str:
    """The chain hash of the account's last stored row of ``table``: the end of its pruned
    prefix when every ``events`` row of it was pruned, the genesis value when it has none."""
    query = (
        select(table.c.chain_hash)
        .where(table.c.account_id == account_id)
        .order_by(table.c.id.desc())
        .limit(1)
    )
    head = conn.execute(query).scalar_one_or_none()
    if head is not None:
        return str(head)
    tail = pruned_tail(conn, account_id) if table is events else None
    return GENESIS_HASH if tail is None else tail.head


def head_before(conn: Connection, account_id: str, first_id: int) -> str:
    """The hash the account's ``events`` row ``first_id`` chains from: its last row before
    it, else the end of its pruned prefix, else the genesis hash."""
    stored = conn.execute(
        select(events.c.chain_hash)
        .where(events.c.account_id == account_id, events.c.id < first_id)
        .order_by(events.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    if stored is not None:
        return str(stored)
    tail = pruned_tail(conn, account_id)
    return tail.head if tail is not None and tail.last_id < first_id else GENESIS_HASH
